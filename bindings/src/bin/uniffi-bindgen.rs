//! The bindings generator, pinned to the same uniffi version as the library it reads.
//!
//! `cargo run -p vitalcore-ffi --features cli --bin uniffi-bindgen -- generate --library
//! target/debug/libvitalcore_ffi.so --language kotlin --out-dir OUT`

fn main() {
    uniffi::uniffi_bindgen_main()
}
