//! Integration tests, one binary (one link) for all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Each named `async fn(Backend)` of the calling module becomes two tests, `<name>::sqlite`
/// and `<name>::postgres`. Defined before the modules that use it.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::common::Backend::Postgres).await
            }
        }
    )*};
}

mod common;

mod storage_sqlite {
    vitalcore_server::store_conformance_tests!(async {
        let (store, dir) = crate::common::sqlite_store().await;
        // The temp dir must outlive the test; leaking one small folder per test is fine.
        std::mem::forget(dir);
        store
    });
}

mod storage_postgres {
    vitalcore_server::store_conformance_tests!(crate::common::pg_store());
}

mod batches;
mod data_access;
mod faults;
mod fuzz;
mod models;
mod openapi;
mod region;
mod s3;
mod server;
// The Lambda adapter's binary exists only with its feature (`cargo test --all-features`).
#[cfg(feature = "lambda")]
mod lambda;
mod trust;
