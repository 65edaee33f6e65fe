//! AWS Lambda entry point (feature `lambda`): the same router behind API Gateway, configured
//! from `VITALCORE_*` environment variables (PostgreSQL on RDS, archive on S3).

use vitalcore_server::{router, AppState, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .init();
    let mut cfg = Config::default();
    cfg.apply_env(|k| std::env::var(k).ok())?;
    // Lambda's only writable folder; used only if no database/bucket is configured.
    cfg.data_dir = std::env::temp_dir().join("vitalcore-data");
    let state = AppState::open(cfg).await?;
    lambda_http::run(router(state)).await
}
