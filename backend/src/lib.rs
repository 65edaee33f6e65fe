//! `vitalcore-server`: the minimal backend.
//!
//! [`router`] builds the whole API for a given [`AppState`] (test it with
//! `tower::ServiceExt::oneshot`); [`serve`] runs a router on a listener until a shutdown future
//! resolves, letting in-flight requests (batches included) finish. The process holds no
//! per-request state, so capacity grows by running more copies against one database and one
//! object store.
#![warn(missing_docs)]

use std::future::Future;

pub mod archive;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod signing;
pub mod state;
pub mod storage;

pub use config::Config;
pub use routes::router;
pub use state::AppState;

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting connections and
/// returns once every in-flight request has been answered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
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
