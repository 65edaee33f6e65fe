//! Model registry: signed upload, ETag / If-None-Match, artifact, staged rollout, and the
//! production rule that a signing key is never invented.

use axum::http::{header, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use vitalcore_protocol::*;
use vitalcore_server::config::Mode;
use vitalcore_server::signing;
use vitalcore_server::{AppState, Config};

use crate::common::*;

fn manifest(version: &str) -> ModelManifest {
    ModelManifest {
        schema: MANIFEST_SCHEMA,
        name: "rhythm-ppg".into(),
        version: version.parse().unwrap(),
        task: Task::Classification,
        input: InputSpec::Features {
            feature_set: "v1".into(),
            features: vec![FeatureInput {
                name: "rmssd".into(),
                unit: "ms".into(),
                mean: 40.0,
                scale: 20.0,
            }],
        },
        outputs: OutputSpec {
            output_name: "probabilities".into(),
            labels: vec!["regular".into(), "irregular".into()],
            threshold: Some(0.5),
        },
        min_sdk_version: "0.1.0".parse().unwrap(),
        artifact: ArtifactRef {
            sha256: String::new(),
            length: 0,
        },
        published_at: 1_790_000_000,
        expires_at: 1_900_000_000,
        self_test: None,
    }
}

async fn upload(
    app: &TestApp,
    version: &str,
    artifact: &[u8],
    rollout: i64,
) -> (StatusCode, Vec<u8>) {
    let body = serde_json::json!({
        "manifest": manifest(version),
        "artifact_base64": B64.encode(artifact),
        "rollout_percent": rollout,
    });
    let (s, _, b) = app
        .send(json_post("/v1/admin/models", Some(ADMIN_TOKEN), &body))
        .await;
    (s, b)
}

#[tokio::test]
async fn upload_is_signed_and_served_with_etag_and_artifact() {
    let app = TestApp::new(Backend::Sqlite).await;
    let onnx = b"\x08\x07fake-onnx-bytes-for-the-registry".to_vec();
    let body =
        serde_json::json!({ "manifest": manifest("1.0.0"), "artifact_base64": B64.encode(&onnx) });
    let (s, _, _) = app
        .send(json_post("/v1/admin/models", Some("not-admin"), &body))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = upload(&app, "1.0.0", &onnx, 100).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    let signed: SignedManifest = serde_json::from_slice(&b).unwrap();
    let signer = app.state.signer.as_ref().unwrap();
    assert_eq!(
        signed.signatures[0].key_id,
        signing::key_id_of(signer.public_key())
    );
    let m = signing::verify(&signed, signer.public_key()).unwrap();
    assert_eq!(m.artifact.length, onnx.len() as u64);
    assert_eq!(m.artifact.sha256, vitalcore_server::auth::sha256_hex(&onnx));
    // A tampered payload does not verify.
    let mut forged = signed.clone();
    forged.payload = B64.encode(b"{\"schema\":1}");
    assert!(signing::verify(&forged, signer.public_key()).is_err());

    let dev = app.enroll().await;
    let (s, _, _) = app.send(get("/v1/models/rhythm-ppg/manifest", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, h, body) = app
        .send(get("/v1/models/rhythm-ppg/manifest", Some(&dev.credential)))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<SignedManifest>(&body).unwrap(),
        signed
    );
    let etag = h.get(header::ETAG).unwrap().to_str().unwrap().to_owned();
    let req = axum::http::Request::get("/v1/models/rhythm-ppg/manifest")
        .header(header::AUTHORIZATION, format!("Bearer {}", dev.credential))
        .header(header::IF_NONE_MATCH, &etag)
        .body(axum::body::Body::empty())
        .unwrap();
    let (s, h, body) = app.send(req).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(h.get(header::ETAG).unwrap().to_str().unwrap(), etag);

    let (s, _, art) = app
        .send(get(
            "/v1/models/rhythm-ppg/versions/1.0.0/artifact",
            Some(&dev.credential),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(art, onnx);
    let (s, _, _) = app
        .send(get(
            "/v1/models/rhythm-ppg/versions/9.9.9/artifact",
            Some(&dev.credential),
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = app
        .send(get("/v1/models/unknown/manifest", Some(&dev.credential)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Same or older version: refused. New version: new ETag.
    assert_eq!(
        upload(&app, "1.0.0", &onnx, 100).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        upload(&app, "0.9.0", &onnx, 100).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        upload(&app, "1.1.0", b"other-bytes", 100).await.0,
        StatusCode::CREATED
    );
    let (_, h2, _) = app
        .send(get("/v1/models/rhythm-ppg/manifest", Some(&dev.credential)))
        .await;
    assert_ne!(h2.get(header::ETAG).unwrap().to_str().unwrap(), etag);
}

#[tokio::test]
async fn manifest_with_wrong_artifact_hash_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let mut m = manifest("1.0.0");
    m.artifact = ArtifactRef {
        sha256: "ab".repeat(32),
        length: 3,
    };
    let body = serde_json::json!({ "manifest": m, "artifact_base64": B64.encode(b"xyz") });
    let (s, _, b) = app
        .send(json_post("/v1/admin/models", Some(ADMIN_TOKEN), &body))
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert!(app
        .state
        .store
        .models("rhythm-ppg")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn staged_rollout_is_deterministic_and_grows_monotonically() {
    let app = TestApp::new(Backend::Sqlite).await;
    assert_eq!(
        upload(&app, "1.0.0", b"v1", 100).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        upload(&app, "2.0.0", b"v2", 30).await.0,
        StatusCode::CREATED
    );
    let mut devices = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..120 {
        let e = app.enroll().await;
        devices.push(e.credential);
        ids.push(e.device_id);
    }
    // The documented bucket, computed here independently of the server: sha256 of
    // "rollout\0{name}\0{version}\0{device id}", first 8 bytes big-endian, mod 100. A device
    // gets a staged version exactly when its bucket is below the percentage.
    let bucket = |id: &str| -> u64 {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            format!("rollout\0rhythm-ppg\02.0.0\0{id}").as_bytes(),
        );
        u64::from_be_bytes(d.as_ref()[..8].try_into().unwrap()) % 100
    };
    let want_at =
        |percent: u64| -> Vec<bool> { ids.iter().map(|id| bucket(id) < percent).collect() };
    let version_of = |body: &[u8]| -> String {
        let s: SignedManifest = serde_json::from_slice(body).unwrap();
        let m: ModelManifest = serde_json::from_slice(&B64.decode(s.payload).unwrap()).unwrap();
        m.version.to_string()
    };
    let mut at30 = Vec::new();
    for d in &devices {
        let (_, _, b1) = app
            .send(get("/v1/models/rhythm-ppg/manifest", Some(d)))
            .await;
        let (_, _, b2) = app
            .send(get("/v1/models/rhythm-ppg/manifest", Some(d)))
            .await;
        assert_eq!(
            version_of(&b1),
            version_of(&b2),
            "a device always lands in the same bucket"
        );
        at30.push(version_of(&b1) == "2.0.0");
    }
    let n30 = at30.iter().filter(|x| **x).count();
    assert_eq!(
        at30,
        want_at(30),
        "exactly the devices whose bucket is below 30"
    );
    assert!(
        (15..=60).contains(&n30),
        "about 30% of 120 devices get 2.0.0, got {n30}"
    );

    let (s, _, _) = app
        .send(json_post(
            "/v1/admin/models/rhythm-ppg/versions/2.0.0/rollout",
            Some(ADMIN_TOKEN),
            &serde_json::json!({ "percent": 60 }),
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mut n60 = 0;
    let mut at60 = Vec::new();
    for (d, had) in devices.iter().zip(&at30) {
        let (_, _, b) = app
            .send(get("/v1/models/rhythm-ppg/manifest", Some(d)))
            .await;
        let new = version_of(&b) == "2.0.0";
        assert!(
            new || !had,
            "raising the percentage never takes the new model away"
        );
        n60 += usize::from(new);
        at60.push(new);
    }
    assert_eq!(
        at60,
        want_at(60),
        "exactly the devices whose bucket is below 60"
    );
    assert!(
        n60 > n30 && (45..=100).contains(&n60),
        "about 60% get 2.0.0, got {n60}"
    );

    let (s, _, _) = app
        .send(json_post(
            "/v1/admin/models/rhythm-ppg/versions/2.0.0/rollout",
            Some(ADMIN_TOKEN),
            &serde_json::json!({ "percent": 100 }),
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for d in &devices {
        let (_, _, b) = app
            .send(get("/v1/models/rhythm-ppg/manifest", Some(d)))
            .await;
        assert_eq!(version_of(&b), "2.0.0");
    }
}

#[tokio::test]
async fn production_mode_never_generates_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..test_config(dir.path())
    };
    assert_eq!(cfg.mode, Mode::Production, "production is the default");
    let state = AppState::open(cfg).await.unwrap();
    assert!(state.signer.is_none());
    assert!(!dir.path().join("dev-signing-key.pk8").exists());
    let app = TestApp {
        router: vitalcore_server::router(state.clone()),
        admin: vitalcore_server::admin_router(state.clone()),
        state,
        dir,
    };
    let (s, b) = upload(&app, "1.0.0", b"x", 100).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&b).contains("not_configured"));

    let dev_dir = tempfile::tempdir().unwrap();
    let dev_cfg = Config {
        mode: Mode::Dev,
        ..test_config(dev_dir.path())
    };
    let dev_state = AppState::open(dev_cfg).await.unwrap();
    assert!(
        dev_state.signer.is_some(),
        "explicit dev mode may create one"
    );
    assert!(dev_dir.path().join("dev-signing-key.pk8").exists());
}
