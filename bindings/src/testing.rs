//! Exports that exist only in test builds (feature `testing`): they let the Kotlin and
//! Python suites prove that a panic inside Rust reaches them as an exception.

use crate::offload::offload;
use crate::VitalcoreError;

/// Panics on the calling thread. uniffi catches it: Kotlin sees `InternalException`,
/// Python `InternalError`, Swift a thrown error; the process lives on.
#[uniffi::export]
pub fn debug_panic(message: String) -> Result<(), VitalcoreError> {
    panic!("{message}")
}

/// Panics on an offload worker; arrives as `VitalcoreError.Internal`.
#[uniffi::export]
pub async fn debug_panic_async(message: String) -> Result<(), VitalcoreError> {
    offload(move || -> Result<(), VitalcoreError> { panic!("{message}") }).await?
}

/// Nanoseconds per [`crate::Session::push_samples_f64le`] call made from Rust, in the same
/// library build the host benchmarks load: the native share of a push, so that a host's
/// per-call figure minus this one is what crossing the FFI costs. Each of `rounds` rounds
/// opens a fresh `kind` session on `engine`, pushes `samples` `per_round` times as
/// contiguous batches on `channel` at `rate_hz`, and cancels it (a check holds at most
/// 600 s); returns the per-call time of every round.
#[uniffi::export]
pub fn debug_native_push_ns(
    engine: std::sync::Arc<crate::Engine>,
    kind: crate::CheckKind,
    channel: String,
    rate_hz: f64,
    samples: Vec<u8>,
    rounds: u32,
    per_round: u32,
) -> Result<Vec<f64>, VitalcoreError> {
    let batch_s = (samples.len() / 8) as f64 / rate_hz;
    let mut out = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let session = engine.start_check(kind)?;
        let t0 = std::time::Instant::now();
        for k in 0..per_round {
            // The same owned arguments the FFI hands over (a lifted String and Vec<u8>).
            session.push_samples_f64le(
                channel.clone(),
                f64::from(k) * batch_s,
                rate_hz,
                samples.clone(),
            )?;
        }
        out.push(t0.elapsed().as_nanos() as f64 / f64::from(per_round.max(1)));
        session.cancel()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Key;
    impl crate::KeyProvider for Key {
        fn root_key(&self) -> Result<Vec<u8>, VitalcoreError> {
            Ok(vec![5; 32])
        }
    }

    #[test]
    fn native_push_timing_pushes_for_real_and_reports_every_round() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = crate::Engine::open(
            crate::EngineConfig::new(dir.path().to_string_lossy().into_owned()),
            std::sync::Arc::new(Key),
        )
        .expect("open");
        let samples: Vec<u8> = (0..1000)
            .flat_map(|i| (f64::from(i) / 100.0).sin().to_le_bytes())
            .collect();
        let kind = crate::CheckKind::EcgRhythm;
        let ns = debug_native_push_ns(engine.clone(), kind, "ecg".into(), 1000.0, samples, 3, 20)
            .expect("timed");
        assert_eq!(ns.len(), 3);
        assert!(ns.iter().all(|t| t.is_finite() && *t > 0.0), "{ns:?}");
        // The pushes are validated like any other: a torn f64 is refused, not timed.
        let err = debug_native_push_ns(engine, kind, "ecg".into(), 1000.0, vec![0; 12], 1, 1)
            .expect_err("torn sample");
        assert!(
            matches!(err, VitalcoreError::InvalidInput { .. }),
            "{err:?}"
        );
    }
}
