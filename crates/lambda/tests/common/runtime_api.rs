//! A Lambda Runtime API on a loopback port, enough to run a bootstrap binary for real: it hands
//! out queued events on `GET /2018-06-01/runtime/invocation/next` with the request id, deadline
//! and function ARN headers, and collects what the function posts to `.../response`,
//! `.../error` and `/runtime/init/error`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// What the function posted back.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `POST /runtime/invocation/{id}/response`.
    Response {
        /// The request id.
        request_id: String,
        /// The body, as JSON.
        body: serde_json::Value,
    },
    /// `POST /runtime/invocation/{id}/error`.
    Error {
        /// The request id.
        request_id: String,
        /// The error document.
        body: String,
    },
    /// `POST /runtime/init/error`.
    InitError(String),
}

#[derive(Clone)]
struct Shared {
    events: Arc<Mutex<mpsc::UnboundedReceiver<(String, serde_json::Value)>>>,
    replies: mpsc::UnboundedSender<Reply>,
}

/// A running Runtime API.
pub struct RuntimeApi {
    /// `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    events: mpsc::UnboundedSender<(String, serde_json::Value)>,
    replies: mpsc::UnboundedReceiver<Reply>,
    next_id: AtomicU64,
}

const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:dlq-healer-test";

async fn next(State(shared): State<Shared>) -> Response {
    let mut events = shared.events.lock().await;
    let Some((request_id, event)) = events.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 60_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", request_id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        FUNCTION_ARN.parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
            .parse()
            .unwrap(),
    );
    (headers, axum::Json(event)).into_response()
}

async fn response(
    State(shared): State<Shared>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
    let _ = shared.replies.send(Reply::Response { request_id, body });
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Shared>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let body = String::from_utf8_lossy(&body).into_owned();
    let _ = shared.replies.send(Reply::Error { request_id, body });
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let _ = shared.replies.send(Reply::InitError(
        String::from_utf8_lossy(&body).into_owned(),
    ));
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    /// Start serving on a free loopback port.
    pub async fn start() -> RuntimeApi {
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        let shared = Shared {
            events: Arc::new(Mutex::new(event_rx)),
            replies: reply_tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RuntimeApi {
            address,
            events: event_tx,
            replies: reply_rx,
            next_id: AtomicU64::new(1),
        }
    }

    /// Queue an event; returns its request id.
    pub fn invoke(&self, event: serde_json::Value) -> String {
        let request_id = format!(
            "8476a536-e9f4-11e8-9739-{:012}",
            self.next_id.fetch_add(1, Ordering::SeqCst)
        );
        self.events.send((request_id.clone(), event)).unwrap();
        request_id
    }

    /// The next reply, or `None` after `timeout`.
    pub async fn reply(&mut self, timeout: Duration) -> Option<Reply> {
        tokio::time::timeout(timeout, self.replies.recv())
            .await
            .ok()
            .flatten()
    }
}

/// A bootstrap binary running against a [`RuntimeApi`]; killed when dropped.
pub struct Bootstrap {
    child: Child,
    log: std::path::PathBuf,
}

impl Bootstrap {
    /// Run `binary` as Lambda would: the Runtime API address, the function's identity, the
    /// emulator's credentials and endpoint, and the function's own variables in `env`.
    pub fn spawn(
        binary: &str,
        api: &RuntimeApi,
        endpoint: &str,
        env: &[(&str, &str)],
    ) -> Bootstrap {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "dlq-healer-test")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/dlq-healer-test")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]0123")
            .envs(dlq_healer_testkit::aws_env())
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("LOG_LEVEL", "DEBUG")
            .stdin(Stdio::null());
        // A file, not a pipe: nobody reads a pipe while the function runs, and a full one
        // would block it.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "dlq-healer-bootstrap-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let file = std::fs::File::create(&log).unwrap();
        command
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        for (name, value) in env {
            command.env(name, value);
        }
        Bootstrap {
            child: command.spawn().expect("the bootstrap binary runs"),
            log,
        }
    }

    /// Stop the function and return what it printed (logs and metrics lines).
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        output
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
