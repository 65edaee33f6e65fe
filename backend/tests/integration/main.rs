//! Integration tests, one binary (one link) for all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
