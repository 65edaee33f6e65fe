//! The signed model lifecycle on real bundles: a real ONNX model, real Ed25519 signatures, a
//! real trust-state file. Every refusal has its own error and leaves the old model serving.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use support::{model_bytes, OrtRef, Rng};
use vitalcore::inference::{FeatureVector, InferenceError};
use vitalcore::models::{
    sha256_hex, sign_manifest, FileTrustStore, ModelError, ModelRegistry, PublisherKey,
    TrustStore as _,
};
use vitalcore_protocol::manifest::{
    ArtifactRef, FeatureInput, InputSpec, ModelManifest, ModelVersion, OutputSpec, SelfTest,
    SignedManifest, Task, MANIFEST_SCHEMA,
};

const NOW: i64 = 1_800_000_000;

struct Publisher {
    pkcs8: Vec<u8>,
    key: PublisherKey,
}

fn publisher() -> Publisher {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .expect("key generation")
        .as_ref()
        .to_vec();
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("fresh key parses");
    let key = PublisherKey::from_bytes(pair.public_key().as_ref()).expect("32-byte key");
    Publisher { pkcs8, key }
}

/// The 16 feature-set-v1 names the test MLP's columns are bound to.
fn features_v1_16() -> Vec<FeatureInput> {
    vitalcore::signal::FEATURES_V1
        .iter()
        .take(16)
        .map(|f| FeatureInput {
            name: f.name.into(),
            unit: f.unit.into(),
            mean: 0.0,
            scale: 1.0,
        })
        .collect()
}

fn manifest(version: &str, artifact: &[u8]) -> ModelManifest {
    let self_input = Rng::new(3).vec(16, 1.0);
    // The known answer comes from ONNX Runtime, not from the code under test.
    let expected = OrtRef::new(artifact).run(&[1, 16], &self_input, "probabilities");
    ModelManifest {
        schema: MANIFEST_SCHEMA,
        name: "test-mlp".into(),
        version: version.parse().expect("valid version"),
        task: Task::Classification,
        input: InputSpec::Features {
            feature_set: "v1".into(),
            features: features_v1_16(),
        },
        outputs: OutputSpec {
            output_name: "probabilities".into(),
            labels: vec!["negative".into(), "positive".into()],
            threshold: Some(0.5),
        },
        min_sdk_version: ModelVersion::new(0, 1, 0),
        artifact: ArtifactRef {
            sha256: sha256_hex(artifact),
            length: artifact.len() as u64,
        },
        published_at: NOW - 3600,
        expires_at: NOW + 86_400,
        self_test: Some(SelfTest {
            input: self_input,
            expected,
            tolerance: 1e-5,
        }),
    }
}

fn sign(p: &Publisher, m: &ModelManifest) -> SignedManifest {
    sign_manifest(
        &serde_json::to_vec(m).expect("manifest serializes"),
        &p.pkcs8,
    )
    .expect("signing works")
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: FileTrustStore,
    publisher: Publisher,
    registry: ModelRegistry,
    artifact: Vec<u8>,
}

/// A registry with version 1.0.0 of the test MLP installed.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileTrustStore::in_dir(dir.path());
    let publisher = publisher();
    let registry = ModelRegistry::new(vec![publisher.key.clone()], Box::new(store.clone()));
    let artifact = model_bytes("mlp16");
    let m = manifest("1.0.0", &artifact);
    registry
        .install(&sign(&publisher, &m), &artifact, NOW)
        .expect("a valid bundle installs");
    Fixture {
        _dir: dir,
        store,
        publisher,
        registry,
        artifact,
    }
}

fn input() -> FeatureVector {
    let mut v = FeatureVector::current();
    for (i, f) in features_v1_16().iter().enumerate() {
        v.insert(f.name.clone(), (i as f64 - 8.0) / 5.0);
    }
    v
}

/// The previous model still serves, and the trusted state on disk still names it.
fn assert_still_serving(f: &Fixture, version: &str) {
    let p = f
        .registry
        .predict(&input())
        .expect("old model still predicts");
    assert_eq!(p.model_version.to_string(), version);
    let state = f.store.load().expect("trust state readable");
    assert_eq!(state.models["test-mlp"].version.to_string(), version);
}

#[test]
fn valid_bundle_installs_and_predictions_carry_name_and_version() {
    let f = fixture();
    let p = f.registry.predict(&input()).expect("predicts");
    assert_eq!(p.model_name, "test-mlp");
    assert_eq!(p.model_version, ModelVersion::new(1, 0, 0));
    assert_eq!(p.values.len(), 2);
    assert!(p.label.is_some());
    let m2 = manifest("1.1.0", &f.artifact);
    f.registry
        .install(&sign(&f.publisher, &m2), &f.artifact, NOW)
        .expect("newer version installs");
    assert_still_serving(&f, "1.1.0");
}

#[test]
fn tampered_manifest_is_refused() {
    let f = fixture();
    let m = manifest("2.0.0", &f.artifact);
    let mut env = sign(&f.publisher, &m);
    // Same signature over a different payload: an attacker raising the version.
    let mut forged = m.clone();
    forged.version = "9.0.0".parse().expect("valid");
    let good = sign(&f.publisher, &forged);
    env.payload = good.payload;
    let err = f.registry.install(&env, &f.artifact, NOW).unwrap_err();
    assert!(matches!(err, ModelError::BadSignature), "{err:?}");
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn bundle_signed_by_an_unpinned_key_is_refused() {
    let f = fixture();
    let other = publisher();
    let err = f
        .registry
        .install(
            &sign(&other, &manifest("2.0.0", &f.artifact)),
            &f.artifact,
            NOW,
        )
        .unwrap_err();
    assert!(matches!(err, ModelError::UntrustedKey), "{err:?}");
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn truncated_artifact_is_refused_before_parsing() {
    let f = fixture();
    let env = sign(&f.publisher, &manifest("2.0.0", &f.artifact));
    let err = f
        .registry
        .install(&env, &f.artifact[..f.artifact.len() - 100], NOW)
        .unwrap_err();
    assert!(
        matches!(err, ModelError::ArtifactLength { expected, got } if got + 100 == expected),
        "{err:?}"
    );
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn altered_artifact_of_the_same_length_is_refused() {
    let f = fixture();
    let env = sign(&f.publisher, &manifest("2.0.0", &f.artifact));
    let mut altered = f.artifact.clone();
    let mid = altered.len() / 2;
    altered[mid] ^= 0x01;
    let err = f.registry.install(&env, &altered, NOW).unwrap_err();
    assert!(matches!(err, ModelError::ArtifactHash), "{err:?}");
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn older_or_equal_version_is_refused() {
    let f = fixture();
    for v in ["0.9.0", "1.0.0", "1.0.0-rc.1"] {
        let err = f
            .registry
            .install(
                &sign(&f.publisher, &manifest(v, &f.artifact)),
                &f.artifact,
                NOW,
            )
            .unwrap_err();
        assert!(matches!(err, ModelError::Rollback { .. }), "{v}: {err:?}");
    }
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn rollback_is_refused_after_a_restart() {
    let f = fixture();
    let m2 = manifest("2.0.0", &f.artifact);
    f.registry
        .install(&sign(&f.publisher, &m2), &f.artifact, NOW)
        .expect("2.0.0 installs");
    // A fresh process over the same data directory.
    let again = ModelRegistry::new(vec![f.publisher.key.clone()], Box::new(f.store.clone()));
    let old = sign(&f.publisher, &manifest("1.0.0", &f.artifact));
    let err = again.install(&old, &f.artifact, NOW).unwrap_err();
    assert!(matches!(err, ModelError::Rollback { .. }), "{err:?}");
    assert!(again.active().is_none());
    // The trusted bundle itself is restored; the same version with another payload is not.
    let same_env = sign(&f.publisher, &m2);
    again
        .restore(&same_env, &f.artifact, NOW)
        .expect("trusted bundle restores");
    let mut other = m2.clone();
    other.outputs.threshold = Some(0.9);
    let err = again
        .restore(&sign(&f.publisher, &other), &f.artifact, NOW)
        .unwrap_err();
    assert!(matches!(err, ModelError::Rollback { .. }), "{err:?}");
}

#[test]
fn expired_manifest_is_refused() {
    let f = fixture();
    let mut m = manifest("2.0.0", &f.artifact);
    m.expires_at = NOW - 1;
    let err = f
        .registry
        .install(&sign(&f.publisher, &m), &f.artifact, NOW)
        .unwrap_err();
    assert!(matches!(err, ModelError::Expired), "{err:?}");
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn mismatched_feature_set_is_refused() {
    let f = fixture();
    let mut m = manifest("2.0.0", &f.artifact);
    m.input = InputSpec::Features {
        feature_set: "v2".into(),
        features: features_v1_16(),
    };
    let err = f
        .registry
        .install(&sign(&f.publisher, &m), &f.artifact, NOW)
        .unwrap_err();
    assert!(
        matches!(err, ModelError::IncompatibleInputs(InferenceError::UnknownFeatureSet(ref s)) if s == "v2"),
        "{err:?}"
    );
    // A unit that differs from the feature set's is refused the same way.
    let mut m = manifest("2.0.0", &f.artifact);
    if let InputSpec::Features { features, .. } = &mut m.input {
        features[0].unit = "Hz".into();
    }
    let err = f
        .registry
        .install(&sign(&f.publisher, &m), &f.artifact, NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::IncompatibleInputs(InferenceError::UnitMismatch { .. })
        ),
        "{err:?}"
    );
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn newer_sdk_requirement_is_refused() {
    let f = fixture();
    let mut m = manifest("2.0.0", &f.artifact);
    m.min_sdk_version = ModelVersion::new(99, 0, 0);
    let err = f
        .registry
        .install(&sign(&f.publisher, &m), &f.artifact, NOW)
        .unwrap_err();
    assert!(matches!(err, ModelError::SdkTooOld { .. }), "{err:?}");
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn unloadable_onnx_is_refused() {
    let f = fixture();
    // Correctly signed and hashed, but not a model tract can load.
    for bad in [
        b"definitely not an onnx protobuf".to_vec(),
        model_bytes("zipmap"),
    ] {
        let mut m = manifest("2.0.0", &f.artifact);
        m.artifact = ArtifactRef {
            sha256: sha256_hex(&bad),
            length: bad.len() as u64,
        };
        m.self_test = None;
        let err = f
            .registry
            .install(&sign(&f.publisher, &m), &bad, NOW)
            .unwrap_err();
        assert!(matches!(err, ModelError::Unloadable(_)), "{err:?}");
    }
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn failing_self_test_is_refused() {
    let f = fixture();
    let mut m = manifest("2.0.0", &f.artifact);
    if let Some(t) = m.self_test.as_mut() {
        t.expected[0] += 0.01;
    }
    let err = f
        .registry
        .install(&sign(&f.publisher, &m), &f.artifact, NOW)
        .unwrap_err();
    assert!(matches!(err, ModelError::SelfTestFailed), "{err:?}");
    assert_still_serving(&f, "1.0.0");
}

#[test]
fn in_flight_prediction_finishes_on_the_old_model() {
    let f = fixture();
    let held = f.registry.active().expect("active model");
    f.registry
        .install(
            &sign(&f.publisher, &manifest("2.0.0", &f.artifact)),
            &f.artifact,
            NOW,
        )
        .expect("installs");
    assert_eq!(
        held.predict(&input())
            .expect("old still runs")
            .model_version
            .to_string(),
        "1.0.0"
    );
    assert_still_serving(&f, "2.0.0");
}

#[test]
fn concurrent_predictions_during_swaps_never_fail_or_go_back() {
    let f = Arc::new(fixture());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let f = Arc::clone(&f);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut last = ModelVersion::new(0, 0, 0);
                let newest = ModelVersion::new(1, 5, 0);
                let mut n = 0u64;
                // Each worker runs until the swaps are over AND it has itself predicted with the
                // newest model (a fixed sleep lost that race on a loaded host); the deadline
                // turns a model that never becomes visible into a failure, not a hang.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !(stop.load(Ordering::Relaxed) && last == newest) {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the newest model never served this worker (last {last})"
                    );
                    let p = f
                        .registry
                        .predict(&input())
                        .expect("prediction during swap");
                    assert!(
                        p.model_version >= last,
                        "went back from {last} to {}",
                        p.model_version
                    );
                    last = p.model_version;
                    n += 1;
                }
                (n, last)
            })
        })
        .collect();
    for minor in 1..=5 {
        let m = manifest(&format!("1.{minor}.0"), &f.artifact);
        f.registry
            .install(&sign(&f.publisher, &m), &f.artifact, NOW)
            .expect("install during predictions");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let (n, last) = w.join().expect("worker did not panic");
        assert!(n > 0);
        assert_eq!(last.to_string(), "1.5.0");
    }
}

mod untrusted_envelopes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary envelopes from the network are refused with an error, never a panic and
        /// never an activation.
        #[test]
        fn arbitrary_envelopes_are_refused(
            payload in ".{0,200}",
            key_id in "[0-9a-f]{0,16}",
            sig in ".{0,100}",
            artifact in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let p = publisher();
            let dir = tempfile::tempdir().expect("temp dir");
            let registry = ModelRegistry::new(vec![p.key.clone()], Box::new(FileTrustStore::in_dir(dir.path())));
            let env = SignedManifest {
                payload,
                signatures: vec![vitalcore_protocol::manifest::ManifestSignature { key_id, sig }],
            };
            prop_assert!(registry.install(&env, &artifact, NOW).is_err());
            prop_assert!(registry.active().is_none());
        }
    }
}
