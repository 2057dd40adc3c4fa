//! The order producer's HTTP API: `POST /orders` validates an order and sends it to the main
//! queue; `GET /health` answers that the function is up. The same [`router`] serves behind API
//! Gateway (through `lambda_http`) and locally (through `axum::serve`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dlq_healer_core::message::OutgoingMessage;
use dlq_healer_core::ports::QueueSender;
use dlq_healer_demo::validate_order_request;
use serde_json::json;
use std::sync::Arc;

/// The largest order body accepted: SQS's classic message size limit, 256 KiB.
pub const MAX_ORDER_BYTES: usize = 256 * 1024;

/// Bodies above this are refused while they are read, before they are buffered whole.
const READ_LIMIT: usize = 2 * MAX_ORDER_BYTES;

#[derive(Clone)]
struct Producer {
    sender: Arc<dyn QueueSender>,
    queue_url: Arc<str>,
}

/// The producer's routes, sending accepted orders to `queue_url` through `sender`.
pub fn router(sender: Arc<dyn QueueSender>, queue_url: impl Into<String>) -> Router {
    let state = Producer {
        sender,
        queue_url: Arc::from(queue_url.into()),
    };
    Router::new()
        .route("/orders", post(create_order))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn create_order(
    State(producer): State<Producer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(None);
        }
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    if body.len() > MAX_ORDER_BYTES {
        return too_large(Some(body.len()));
    }
    let order = match validate_order_request(&body) {
        Ok(order) => order,
        Err(invalid) => return error(StatusCode::BAD_REQUEST, invalid.to_string()),
    };
    let message = OutgoingMessage::new("order", body.to_vec());
    let sent = producer
        .sender
        .send(&producer.queue_url, std::slice::from_ref(&message))
        .await
        .and_then(|mut results| {
            results.pop().unwrap_or_else(|| {
                Err(dlq_healer_core::ports::PortError::retryable(
                    "send",
                    &producer.queue_url,
                    "the queue returned no result",
                ))
            })
        });
    match sent {
        Ok(message_id) => {
            tracing::info!(order_id = order.order_id, %message_id, "order queued");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "message_id": message_id, "order_id": order.order_id })),
            )
                .into_response()
        }
        Err(port_error) => {
            tracing::error!(order_id = order.order_id, error = %port_error, "could not queue the order");
            let status = if port_error.retryable {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            // The queue's address and the SDK's words stay in the log: callers are the public.
            let advice = if port_error.retryable {
                "could not queue the order; try again later"
            } else {
                "could not queue the order"
            };
            error(status, advice)
        }
    }
}

fn too_large(size: Option<usize>) -> Response {
    let size = size.map_or_else(
        || format!("more than {READ_LIMIT}"),
        |size| size.to_string(),
    );
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the order is {size} bytes; at most {MAX_ORDER_BYTES} bytes are accepted"),
    )
}
