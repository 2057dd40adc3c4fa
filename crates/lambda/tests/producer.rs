//! The producer's router, driven with `oneshot` requests as API Gateway or a local client would.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dlq_healer_core::ports::SystemClock;
use dlq_healer_core::testing::MemoryQueues;
use dlq_healer_lambda::producer::{MAX_ORDER_BYTES, router};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

fn queues() -> Arc<MemoryQueues> {
    let queues = MemoryQueues::new(Arc::new(SystemClock));
    queues.create("orders");
    queues
}

async fn call(app: axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/orders")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

const ORDER: &str =
    r#"{"order_id":42,"user":"u-1","amount_cents":1999,"items":[{"sku":"SKU-1","quantity":2}]}"#;

#[tokio::test]
async fn a_valid_order_is_queued_and_accepted_with_its_message_id() {
    let queues = queues();
    let (status, body) = call(router(queues.clone(), "orders"), post(ORDER)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let stored = queues.messages("orders");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        body,
        json!({"message_id": stored[0].message_id, "order_id": 42})
    );
    assert_eq!(stored[0].message.body, ORDER.as_bytes());
}

#[tokio::test]
async fn bad_orders_get_400_with_a_json_error_and_are_not_queued() {
    let queues = queues();
    for bad in [
        "{",
        "not json",
        r#"{"order_id":1,"user":"u","amount_cents":5,"items":[]}"#,
        r#"{"order_id":1,"user":"u","amount_cents":5,"items":[{"sku":"a","quantity":0}]}"#,
        "",
    ] {
        let (status, body) = call(router(queues.clone(), "orders"), post(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with("invalid order"), "{error}");
    }
    assert!(queues.messages("orders").is_empty());
}

#[tokio::test]
async fn orders_over_256_kib_get_413() {
    let queues = queues();
    let padding = "x".repeat(MAX_ORDER_BYTES);
    let big = format!(
        r#"{{"order_id":1,"user":"{padding}","amount_cents":5,"items":[{{"sku":"a","quantity":1}}]}}"#
    );
    let (status, body) = call(router(queues.clone(), "orders"), post(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("262144"), "{body}");
    // Far over the limit: refused while reading, still with a JSON error.
    let huge = vec![b' '; 4 * MAX_ORDER_BYTES];
    let (status, body) = call(router(queues.clone(), "orders"), post(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body["error"],
        "the order is more than 524288 bytes; at most 262144 bytes are accepted"
    );
    // Exactly at the limit is fine.
    let fill = MAX_ORDER_BYTES - ORDER.len();
    let at_limit = format!("{ORDER}{}", " ".repeat(fill));
    assert_eq!(at_limit.len(), MAX_ORDER_BYTES);
    let (status, _) = call(router(queues.clone(), "orders"), post(at_limit)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(queues.messages("orders").len(), 1);
}

#[tokio::test]
async fn a_queue_outage_is_503_and_a_missing_queue_502() {
    let queues = queues();
    queues.fail_send.set(true);
    let (status, body) = call(router(queues.clone(), "orders"), post(ORDER)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("could not queue"));
    queues.fail_send.set(false);
    let (status, body) = call(router(queues.clone(), "no-such-queue"), post(ORDER)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // The public answer names neither the queue nor what the queue said.
    assert_eq!(body["error"], "could not queue the order", "{body}");
}

#[tokio::test]
async fn health_answers_ok_and_unknown_routes_404() {
    let app = router(queues(), "orders");
    let (status, body) = call(
        app.clone(),
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    let response = app
        .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
