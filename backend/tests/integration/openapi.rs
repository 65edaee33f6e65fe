//! The served OpenAPI document equals the checked-in `backend/openapi.json`, and documents
//! exactly the routes the router declares.

use std::collections::BTreeSet;

use axum::http::StatusCode;

use crate::common::*;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[tokio::test]
async fn served_document_equals_the_checked_in_file() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (s, _, body) = app.send(get("/v1/openapi.json", None)).await;
    assert_eq!(s, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("VITALCORE_BLESS").is_some() {
        std::fs::write(CHECKED_IN, &pretty).unwrap();
    }
    let file = std::fs::read_to_string(CHECKED_IN).expect("backend/openapi.json is checked in");
    assert_eq!(
        pretty, file,
        "backend/openapi.json is stale: rerun this test with VITALCORE_BLESS=1 and commit the file"
    );
}

#[test]
fn every_router_route_is_documented_and_every_documented_route_exists() {
    let source = include_str!("../../src/routes/mod.rs");
    let mut routed = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).unwrap().to_owned();
        let after = chunk.split_once(',').unwrap().1.trim_start();
        let method = after.split('(').next().unwrap().trim().to_owned();
        routed.insert((method, path));
    }
    let documented: BTreeSet<(String, String)> = vitalcore_server::openapi::operations()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert!(routed.len() >= 15, "parsed the router: {routed:?}");
    assert_eq!(routed, documented);
}

#[tokio::test]
async fn documented_routes_answer_and_unknown_ones_get_a_json_404() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (method, path) in vitalcore_server::openapi::operations() {
        let uri = path.replace("{name}", "m").replace("{version}", "1.0.0");
        let req = axum::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let (s, _, body) = app.send(req).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            !String::from_utf8_lossy(&body).contains("\"error\":\"not_found\"")
                || uri.contains("/models/"),
            "{method} {uri}"
        );
    }
    let (s, _, body) = app.send(get("/v1/nope", None)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("not_found"));
}
