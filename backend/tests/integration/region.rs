//! `GET /v1/region`: the signed region statement devices verify before uploading.

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ED25519};
use vitalcore_protocol::{region_statement_message, RegionStatement};
use vitalcore_server::signing;

use crate::common::{get, test_config, Backend, TestApp};

fn verifies(s: &RegionStatement, public_key: &[u8]) -> bool {
    let sig = B64.decode(&s.sig).unwrap();
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&region_statement_message(&s.region, &s.nonce), &sig)
        .is_ok()
}

#[tokio::test]
async fn statement_names_the_configured_region_and_is_signed_over_the_nonce() {
    let app = TestApp::with_config(Backend::Sqlite, |c| c.region = "us".into()).await;
    let public = app.state.signer.as_ref().unwrap().public_key().to_vec();
    let nonce = "5a".repeat(16);
    let (s, _, body) = app
        .send(get(&format!("/v1/region?nonce={nonce}"), None))
        .await;
    assert_eq!(s, StatusCode::OK);
    let st: RegionStatement = serde_json::from_slice(&body).unwrap();
    assert_eq!(st.region, "us");
    assert_eq!(st.nonce, nonce);
    assert_eq!(st.key_id, signing::key_id_of(&public));
    assert!(verifies(&st, &public));

    // The signature binds region and nonce: changing either breaks it.
    let other_region = RegionStatement {
        region: "eu".into(),
        ..st.clone()
    };
    assert!(!verifies(&other_region, &public));
    let other_nonce = RegionStatement {
        nonce: "5b".repeat(16),
        ..st.clone()
    };
    assert!(!verifies(&other_nonce, &public));
    // And a key the device did not pin does not vouch for it.
    let other = signing::Signer::load_or_create_dev(&app.dir.path().join("other.pk8"))
        .unwrap()
        .0;
    assert!(!verifies(&st, other.public_key()));
}

#[tokio::test]
async fn malformed_or_missing_nonce_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    for uri in [
        "/v1/region".to_owned(),
        "/v1/region?nonce=".to_owned(),
        format!("/v1/region?nonce={}", "ab".repeat(15)),
        format!("/v1/region?nonce={}", "ab".repeat(65)),
        format!("/v1/region?nonce={}", "AB".repeat(16)),
        format!("/v1/region?nonce={}", "zz".repeat(16)),
    ] {
        let (s, _, body) = app.send(get(&uri, None)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert!(
            String::from_utf8_lossy(&body).contains("\"invalid\""),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn without_a_signing_key_no_statement_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let state = vitalcore_server::AppState::open(test_config(dir.path()))
        .await
        .unwrap();
    assert!(state.signer.is_none(), "production mode invents no key");
    let app = TestApp {
        router: vitalcore_server::router(state.clone()),
        admin: vitalcore_server::admin_router(state.clone()),
        state,
        dir,
    };
    let (s, _, body) = app
        .send(get(&format!("/v1/region?nonce={}", "01".repeat(16)), None))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("not_configured"));
}
