//! AWS Lambda entry point (feature `lambda`): the public router behind API Gateway, configured
//! from `VITALCORE_*` environment variables (PostgreSQL on RDS, archive on S3). The admin
//! routes are not in it: run `vitalcore-server serve` on a private host (its admin listener)
//! against the same database and bucket. API Gateway sets `X-Forwarded-For`, so the template
//! sets `VITALCORE_TRUST_FORWARDED_FOR=true` for the enrollment limit per client IP.

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
