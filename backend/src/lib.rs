//! `vitalcore-server`: the minimal backend.
//!
//! [`router`] builds the public API for a given [`AppState`] and [`admin_router`] the admin
//! plane (test them with `tower::ServiceExt::oneshot`); [`serve`] runs a router on a listener
//! until a shutdown future
//! resolves, letting in-flight requests (batches included) finish. The process holds no
//! per-request state, so capacity grows by running more copies against one database and one
//! object store.
#![warn(missing_docs)]

use std::future::Future;

pub mod archive;
pub mod auth;
pub mod config;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod signing;
pub mod state;
pub mod storage;

pub use config::Config;
pub use routes::{admin_router, router};
pub use state::AppState;

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting connections and
/// returns once every in-flight request has been answered. Handlers see the peer address
/// (`ConnectInfo<SocketAddr>`), which the enrollment rate limit is keyed by.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
