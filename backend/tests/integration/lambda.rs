//! The Lambda adapter (`vitalcore-lambda`, feature `lambda`) answering real API Gateway HTTP
//! API events (payload format 2.0, what `deploy/template.yaml`'s `HttpApi` sends) through the
//! Lambda Runtime API, emulated here on 127.0.0.1: the binary polls `invocation/next`, gets an
//! event, posts its response, exactly as on AWS. On PostgreSQL: enroll, upload a gzip batch
//! (base64 body, as API Gateway encodes binary), fetch a model manifest (published by an
//! in-process node on the same database, as the trainer would through a server). Cold start:
//! process start to the first `invocation/next` (init), and to the first answer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::sync::{mpsc, Mutex, Notify};
use vitalcore_server::archive::Archive;
use vitalcore_server::storage::{PostgresStore, Store as _};

use crate::common::*;

#[derive(Default)]
struct Emulator {
    queue: Mutex<VecDeque<(String, serde_json::Value)>>,
    ready: Notify,
    first_poll: Mutex<Option<Instant>>,
}

type Answers = mpsc::UnboundedSender<(String, Result<serde_json::Value, String>)>;

async fn next(State((emu, _)): State<(Arc<Emulator>, Answers)>) -> (HeaderMap, String) {
    emu.first_poll.lock().await.get_or_insert_with(Instant::now);
    loop {
        if let Some((id, event)) = emu.queue.lock().await.pop_front() {
            let mut h = HeaderMap::new();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            h.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().unwrap(),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-1:123456789012:function:vitalcore"
                    .parse()
                    .unwrap(),
            );
            h.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".parse().unwrap(),
            );
            return (h, event.to_string());
        }
        emu.ready.notified().await;
    }
}

async fn respond(
    State((_, tx)): State<(Arc<Emulator>, Answers)>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = tx.send((id, serde_json::from_str(&body).map_err(|e| e.to_string())));
    StatusCode::ACCEPTED
}

async fn error(
    State((_, tx)): State<(Arc<Emulator>, Answers)>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = tx.send((id, Err(body)));
    StatusCode::ACCEPTED
}

async fn init_error(State((_, tx)): State<(Arc<Emulator>, Answers)>, body: String) -> StatusCode {
    let _ = tx.send(("init".into(), Err(body)));
    StatusCode::ACCEPTED
}

/// An API Gateway HTTP API (payload 2.0) event.
fn event(
    method: &str,
    path: &str,
    headers: serde_json::Value,
    body: Option<&[u8]>,
    binary: bool,
) -> serde_json::Value {
    let body = body.map(|b| {
        if binary {
            B64.encode(b)
        } else {
            String::from_utf8(b.to_vec()).unwrap()
        }
    });
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "vcapi",
            "domainName": "vcapi.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "vcapi",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "vitalcore-sdk"},
            "requestId": "req",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Dec/2026:23:00:00 +0000",
            "timeEpoch": 1_796_684_400_000u64
        },
        "body": body,
        "isBase64Encoded": binary && body.is_some(),
    })
}

struct Lambda {
    emu: Arc<Emulator>,
    answers: mpsc::UnboundedReceiver<(String, Result<serde_json::Value, String>)>,
    n: usize,
}

impl Lambda {
    /// Invokes the function with `event`; the API Gateway response's status, headers, body.
    async fn invoke(&mut self, event: serde_json::Value) -> (u16, serde_json::Value, Vec<u8>) {
        self.n += 1;
        let id = format!("inv-{}", self.n);
        self.emu.queue.lock().await.push_back((id.clone(), event));
        self.emu.ready.notify_waiters();
        self.emu.ready.notify_one();
        let (got, res) = tokio::time::timeout(Duration::from_secs(30), self.answers.recv())
            .await
            .expect("the function answered within 30 s")
            .unwrap();
        assert_eq!(got, id);
        let r = res.unwrap_or_else(|e| panic!("the function reported an error: {e}"));
        let body = r["body"].as_str().unwrap_or("");
        let body = if r["isBase64Encoded"].as_bool() == Some(true) {
            B64.decode(body).unwrap()
        } else {
            body.as_bytes().to_vec()
        };
        (
            r["statusCode"].as_u64().unwrap() as u16,
            r["headers"].clone(),
            body,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_answers_api_gateway_events_on_postgres() {
    // One schema: the in-process node publishes the model, the function serves it.
    let schema = unique_schema();
    let store = PostgresStore::connect_in_schema(&pg_url(), &schema, 4, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(&dir.path().join("archive")).unwrap();
    let node = TestApp::from_parts(dir, Arc::new(store.clone()), archive, |_| {});
    let artifact = b"not an onnx model, only bytes to serve".to_vec();
    let manifest = serde_json::json!({
        "schema": 1, "name": "rhythm-ppg", "version": "1.0.0", "task": "classification",
        "input": {"kind": "features", "feature_set": "v1",
                  "features": [{"name": "rmssd", "unit": "ms", "mean": 40.0, "scale": 20.0}]},
        "outputs": {"output_name": "probabilities", "labels": ["regular", "irregular"], "threshold": 0.5},
        "min_sdk_version": "0.1.0", "artifact": {"sha256": "", "length": 0},
        "published_at": 1_790_000_000u64, "expires_at": 1_900_000_000u64,
    });
    let (s, _, b) = node
        .send(json_post(
            "/v1/admin/models",
            Some(ADMIN_TOKEN),
            &serde_json::json!({"manifest": manifest, "artifact_base64": B64.encode(&artifact)}),
        ))
        .await;
    assert!(
        s.is_success(),
        "publish: {s} {}",
        String::from_utf8_lossy(&b)
    );

    // The Runtime API.
    let emu = Arc::new(Emulator::default());
    let (tx, answers) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state((emu.clone(), tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tmp = tempfile::tempdir().unwrap();
    let db_url = format!("{}?options=-c%20search_path%3D{schema}", pg_url());
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vitalcore-lambda"))
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "vitalcore")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/vitalcore")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("VITALCORE_DATABASE_URL", &db_url)
        .env("VITALCORE_ENROLLMENT_TOKENS", ENROLL_TOKEN)
        .env("VITALCORE_DB_MAX_CONNECTIONS", "2")
        .env_remove("VITALCORE_S3_BUCKET")
        .env("TMPDIR", tmp.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lambda = Lambda {
        emu: emu.clone(),
        answers,
        n: 0,
    };

    // Enroll (JSON body, not base64).
    let enroll = serde_json::json!({"enrollment_token": ENROLL_TOKEN}).to_string();
    let (s, _, b) = lambda
        .invoke(event(
            "POST",
            "/v1/enroll",
            serde_json::json!({"content-type": "application/json"}),
            Some(enroll.as_bytes()),
            false,
        ))
        .await;
    let first_answer = started.elapsed();
    let init = emu
        .first_poll
        .lock()
        .await
        .map(|t| t.duration_since(started))
        .unwrap();
    assert_eq!(s, 201, "enroll: {}", String::from_utf8_lossy(&b));
    let credential = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();

    // Upload a gzip batch: API Gateway hands binary bodies over base64-encoded.
    let batch = gzip(&body_json(&sample_batch(
        "lambda-batch-000001",
        "lambda-subject",
        20,
    )));
    let headers = serde_json::json!({
        "content-type": "application/json", "content-encoding": "gzip",
        "authorization": format!("Bearer {credential}"),
    });
    let t = Instant::now();
    let (s, _, b) = lambda
        .invoke(event(
            "POST",
            "/v1/batches",
            headers.clone(),
            Some(&batch),
            true,
        ))
        .await;
    let warm = t.elapsed();
    assert!(
        s == 200 || s == 201,
        "batch: {s} {}",
        String::from_utf8_lossy(&b)
    );
    let first: serde_json::Value = serde_json::from_slice(&b).unwrap();
    // The same batch again (a retry): the same answer, stored once.
    let (s, _, b) = lambda
        .invoke(event("POST", "/v1/batches", headers, Some(&batch), true))
        .await;
    assert!(s == 200 || s == 201, "retry: {s}");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b).unwrap(),
        first
    );
    let c = store.counts().await.unwrap();
    assert_eq!((c.devices, c.batches, c.records), (1, 1, 20));

    // The model manifest, as a device reads it.
    let (s, h, b) = lambda
        .invoke(event(
            "GET",
            "/v1/models/rhythm-ppg/manifest",
            serde_json::json!({"authorization": format!("Bearer {credential}")}),
            None,
            false,
        ))
        .await;
    assert_eq!(s, 200, "manifest: {}", String::from_utf8_lossy(&b));
    let env: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(
        !env["signatures"].as_array().unwrap().is_empty(),
        "a signed envelope: {env}"
    );
    assert!(
        h.get("etag").is_some() || h.get("ETag").is_some(),
        "served with an ETag: {h}"
    );
    // An unknown route is a JSON 404 through the adapter too.
    let (s, _, _) = lambda
        .invoke(event("GET", "/v1/nope", serde_json::json!({}), None, false))
        .await;
    assert_eq!(s, 404);

    eprintln!(
        "lambda: cold start {} ms to init (first invocation/next), {} ms to the first answer \
         (enroll); a warm batch upload of 20 records {} ms (debug build)",
        init.as_millis(),
        first_answer.as_millis(),
        warm.as_millis()
    );
    assert!(first_answer < Duration::from_secs(20));
    let _ = child.start_kill();
    let _ = child.wait().await;
}
