//! `vitalcore-server`: the minimal backend (router, storage, model registry).
#![warn(missing_docs)]
