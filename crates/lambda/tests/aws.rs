//! The AWS wiring on the emulator: finding the DLQ from the event source ARN.

mod common;

use dlq_healer_core::ports::MessageSource;
use dlq_healer_lambda::aws::SqsDlqResolver;
use dlq_healer_lambda::event_dlq::EventSourceDlq;
use std::sync::Arc;

#[tokio::test]
async fn without_dlq_url_parking_finds_the_queue_from_the_event_source_arn() {
    let clients = common::clients().await;
    let name = common::unique("dlq");
    let url = clients
        .sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    clients
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let handle = received[0].receipt_handle.clone().unwrap();

    let dlq = EventSourceDlq::new(Arc::new(SqsDlqResolver::new(clients.sqs.clone())));
    let before = dlq.change_visibility(&[(handle.clone(), 600)]).await;
    assert!(before.is_err(), "no event yet, so no queue: {before:?}");
    dlq.enter(Some(&format!("arn:aws:sqs:us-east-1:123456789012:{name}")));
    let results = dlq.change_visibility(&[(handle, 600)]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(!dlq.is_fifo());

    dlq.enter(Some("arn:aws:sqs:us-east-1:123456789012:no-such-queue"));
    let error = dlq
        .change_visibility(&[("h".into(), 60)])
        .await
        .unwrap_err();
    assert!(!error.retryable, "{error}");
}
