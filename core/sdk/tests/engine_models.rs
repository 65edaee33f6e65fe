//! The engine serving real models: the bundled default on a real recording, a signed update
//! installed, used and restored after a restart, and refused updates that leave the old model
//! serving. Real ONNX files, real Ed25519 signatures, real files in the data directory.

mod engine_support;

use std::path::{Path, PathBuf};

use engine_support::*;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use vitalcore::models::{sign_manifest, ModelError};
use vitalcore::{
    CheckKind, CheckResult, Config, EngineError, ModelInfo, PredictionOutcome, SampleBatch,
    Vitalcore,
};

fn repo_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn shipped(file: &str) -> Vec<u8> {
    std::fs::read(repo_models().join(file)).expect("shipped model file")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

struct Publisher {
    pkcs8: Vec<u8>,
    hex: String,
}

fn publisher() -> Publisher {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .expect("key generation")
        .as_ref()
        .to_vec();
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("fresh key parses");
    Publisher {
        hex: hex::encode(pair.public_key().as_ref()),
        pkcs8,
    }
}

/// The shipped `rhythm-ppg` manifest re-versioned and re-signed by `p` (the artifact, and so
/// its sha256, length and self-test, unchanged), as the backend would publish an update.
fn bundle(p: &Publisher, version: &str, expires_in_s: i64) -> (Vec<u8>, Vec<u8>) {
    let mut m: serde_json::Value =
        serde_json::from_slice(&shipped("rhythm-ppg.manifest.json")).expect("manifest json");
    m["version"] = version.into();
    m["published_at"] = (now() - 60).into();
    m["expires_at"] = (now() + expires_in_s).into();
    let envelope = sign_manifest(&serde_json::to_vec(&m).expect("json"), &p.pkcs8).expect("sign");
    (
        serde_json::to_vec(&envelope).expect("envelope json"),
        shipped("rhythm-ppg.onnx"),
    )
}

/// 60 s of real fingertip PPG (heartpy data3): good quality, every input of the model present.
fn check(engine: &Vitalcore) -> CheckResult {
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_60s()))
        .expect("push");
    s.finish().expect("finish")
}

fn served_by(r: &CheckResult) -> (String, String) {
    match &r.check.prediction {
        PredictionOutcome::Predicted {
            model_name,
            model_version,
            outputs,
        } => {
            let labels: Vec<&str> = outputs.keys().map(String::as_str).collect();
            assert_eq!(labels, ["irregular", "regular"]);
            let total: f64 = outputs.values().sum();
            assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
            (model_name.clone(), model_version.clone())
        }
        other => panic!("expected a prediction, got {other:?}"),
    }
}

fn info(version: &str) -> Option<ModelInfo> {
    Some(ModelInfo {
        name: "rhythm-ppg".into(),
        version: version.into(),
    })
}

#[test]
fn bundled_default_model_predicts_offline_with_provenance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    assert_eq!(engine.active_model(), info("1.0.0"));
    let r = check(&engine);
    assert_eq!(served_by(&r), ("rhythm-ppg".into(), "1.0.0".into()));

    // 24.8 s of real fingertip PPG: every input of the model is defined on a check this short.
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_100hz()))
        .expect("push");
    let short = s.finish().expect("finish");
    assert_eq!(served_by(&short), ("rhythm-ppg".into(), "1.0.0".into()));

    // An app that lets every check past the quality gate (its right) and a check with no
    // clean beat: the model's inputs are missing, and that is said, not guessed.
    let open_dir = tempfile::tempdir().expect("tempdir");
    let permissive = Vitalcore::open(
        Config::new(open_dir.path()).cardiac_quality_policy(
            vitalcore::signal::quality::QualityPolicy {
                min_usable_fraction: 0.0,
                min_clean_beats: 0,
                min_clean_stretch_s: 0.0,
            },
        ),
        &keys(),
    )
    .expect("open");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<f64> = (0..1500)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect();
    let s = permissive.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, noise))
        .expect("push");
    match s.finish().expect("finish").check.prediction {
        PredictionOutcome::FeaturesUnavailable { missing } => {
            assert!(missing.contains(&"hr_mean".to_string()), "{missing:?}")
        }
        other => panic!("expected FeaturesUnavailable, got {other:?}"),
    }

    let off = tempfile::tempdir().expect("tempdir");
    let bare =
        Vitalcore::open(Config::new(off.path()).builtin_model(false), &keys()).expect("open");
    assert_eq!(bare.active_model(), None);
    assert_eq!(check(&bare).check.prediction, PredictionOutcome::NoModel);
}

#[test]
fn signed_update_is_used_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = publisher();
    let config = || Config::new(dir.path()).model_public_keys(vec![p.hex.clone()]);
    let engine = Vitalcore::open(config(), &keys()).expect("open");
    let (envelope, artifact) = bundle(&p, "2.0.0", 86_400);
    assert_eq!(
        engine.install_model(&envelope, &artifact).expect("install"),
        info("2.0.0").expect("some")
    );
    assert_eq!(served_by(&check(&engine)).1, "2.0.0");
    drop(engine);

    // Restart: the cached update serves again, ahead of the older bundled default.
    let engine = Vitalcore::open(config(), &keys()).expect("reopen");
    assert_eq!(engine.active_model(), info("2.0.0"));
    assert_eq!(served_by(&check(&engine)).1, "2.0.0");
    // The same bundle again is not newer: refused as a rollback, 2.0.0 still serving.
    assert!(matches!(
        engine.install_model(&envelope, &artifact),
        Err(EngineError::Model(ModelError::Rollback { .. }))
    ));
    assert_eq!(engine.active_model(), info("2.0.0"));
}

#[test]
fn refused_updates_leave_the_old_model_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = publisher();
    let stranger = publisher();
    let engine = Vitalcore::open(
        Config::new(dir.path()).model_public_keys(vec![pinned.hex.clone()]),
        &keys(),
    )
    .expect("open");
    let (good_envelope, artifact) = bundle(&pinned, "1.1.0", 86_400);

    let mut tampered = artifact.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let mut altered_envelope: serde_json::Value =
        serde_json::from_slice(&good_envelope).expect("json");
    let payload = altered_envelope["payload"]
        .as_str()
        .expect("payload")
        .to_owned();
    // Another valid base64 payload under the same signature.
    altered_envelope["payload"] = format!("{}AAAA", &payload[..payload.len() - 4]).into();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "wrong key",
            bundle(&stranger, "1.1.0", 86_400).0,
            artifact.clone(),
        ),
        (
            "altered payload",
            serde_json::to_vec(&altered_envelope).expect("json"),
            artifact.clone(),
        ),
        ("tampered artifact", good_envelope.clone(), tampered),
        (
            "truncated artifact",
            good_envelope.clone(),
            artifact[..artifact.len() - 10].to_vec(),
        ),
        (
            "older version",
            bundle(&pinned, "0.9.0", 86_400).0,
            artifact.clone(),
        ),
        ("expired", bundle(&pinned, "1.2.0", -10).0, artifact.clone()),
        (
            "not an envelope",
            b"{\"hello\": 1}".to_vec(),
            artifact.clone(),
        ),
    ];
    for (what, envelope, artifact) in cases {
        let err = engine.install_model(&envelope, &artifact).expect_err(what);
        let ok = matches!(
            (what, &err),
            ("wrong key", EngineError::Model(ModelError::UntrustedKey))
                | (
                    "altered payload",
                    EngineError::Model(ModelError::BadSignature)
                )
                | (
                    "tampered artifact",
                    EngineError::Model(ModelError::ArtifactHash)
                )
                | (
                    "truncated artifact",
                    EngineError::Model(ModelError::ArtifactLength { .. })
                )
                | (
                    "older version",
                    EngineError::Model(ModelError::Rollback { .. })
                )
                | ("expired", EngineError::Model(ModelError::Expired))
                | (
                    "not an envelope",
                    EngineError::Model(ModelError::Malformed(_))
                )
        );
        assert!(ok, "{what}: unexpected error {err:?}");
        assert_eq!(engine.active_model(), info("1.0.0"), "{what}");
        assert_eq!(served_by(&check(&engine)).1, "1.0.0", "{what}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("models"))
            .expect("models dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pending") || n.starts_with("active"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    // The good bundle still installs afterwards.
    engine
        .install_model(&good_envelope, &artifact)
        .expect("good bundle installs");
    assert_eq!(engine.active_model(), info("1.1.0"));
}
