//! SqsQueue and SqsSender against the emulator: the shared queue and redrive contracts, SQS's
//! limits, queue resolution by URL, ARN and name, and batch splitting.

mod common;

use aws_sdk_sqs::types::QueueAttributeName;
use dlq_healer_aws::{AwsClients, SqsQueue, SqsSender};
use dlq_healer_core::contract::{self, QueueCapabilities};
use dlq_healer_core::message::{Attribute, OutgoingMessage};
use dlq_healer_core::ports::{MessageSource, QueueSender};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

async fn create_queue(clients: &AwsClients, name: &str) -> String {
    let mut request = clients.sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    request
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url")
}

async fn queue_arn(clients: &AwsClients, url: &str) -> String {
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn")
}

/// A main queue redriving to a DLQ after `max_receive_count` deliveries: (main URL, DLQ URL).
async fn redrive_pair(clients: &AwsClients, name: &str, fifo: bool) -> (String, String) {
    let suffix = if fifo { ".fifo" } else { "" };
    let dlq = create_queue(clients, &format!("{name}-dlq{suffix}")).await;
    let dlq_arn = queue_arn(clients, &dlq).await;
    let policy = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#);
    let mut request = clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}{suffix}"))
        .attributes(QueueAttributeName::RedrivePolicy, policy);
    if fifo {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let main = request
        .send()
        .await
        .expect("create main queue")
        .queue_url
        .expect("queue url");
    (main, dlq)
}

fn sleep(by: chrono::Duration) {
    std::thread::sleep(by.to_std().unwrap_or(Duration::ZERO));
}

#[tokio::test]
async fn sqs_passes_the_queue_contract() {
    let clients = common::clients().await;
    let url = create_queue(&clients, &common::unique("contract")).await;
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    let sender = SqsSender::new(clients.sqs.clone());
    contract::queue_contract(&sender, &source, &url, &sleep, QueueCapabilities::SQS).await;
}

#[tokio::test]
async fn sqs_passes_the_redrive_contract() {
    let clients = common::clients().await;
    let (main, dlq) = redrive_pair(&clients, &common::unique("redrive"), false).await;
    let source = SqsQueue::new(clients.sqs.clone(), &main);
    let dead = SqsQueue::new(clients.sqs.clone(), &dlq);
    let sender = SqsSender::new(clients.sqs.clone());
    // The emulator does not set DeadLetterQueueSourceArn, so that capability stays off.
    contract::redrive_contract(&sender, &source, &main, &dead, 2, QueueCapabilities::SQS).await;
}

#[tokio::test]
async fn sqs_fifo_passes_the_redrive_contract() {
    let clients = common::clients().await;
    let (main, dlq) = redrive_pair(&clients, &common::unique("redrive"), true).await;
    let source = SqsQueue::new(clients.sqs.clone(), &main);
    assert!(source.is_fifo());
    let dead = SqsQueue::new(clients.sqs.clone(), &dlq);
    let sender = SqsSender::new(clients.sqs.clone());
    contract::redrive_contract(&sender, &source, &main, &dead, 2, QueueCapabilities::SQS).await;
}

fn tagged(entry_id: &str, body: &str) -> OutgoingMessage {
    let mut message = OutgoingMessage::new(entry_id, body.as_bytes().to_vec());
    message
        .attributes
        .insert("tag".into(), Attribute::string(entry_id));
    message
}

async fn receive_all(source: &SqsQueue, count: usize) -> Vec<dlq_healer_core::ReceivedMessage> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= count {
            break;
        }
        got.extend(source.receive(10, Duration::ZERO).await.expect("receive"));
    }
    got
}

#[tokio::test]
async fn more_than_ten_attributes_is_an_entry_error_and_nothing_is_sent() {
    let clients = common::clients().await;
    let url = create_queue(&clients, &common::unique("attrs")).await;
    let sender = SqsSender::new(clients.sqs.clone());
    let mut crowded = tagged("crowded", "{}");
    for i in 0..10 {
        crowded
            .attributes
            .insert(format!("extra{i}"), Attribute::string("v"));
    }
    let mut full = tagged("full", "{}");
    for i in 0..9 {
        full.attributes
            .insert(format!("extra{i}"), Attribute::string("v"));
    }
    let results = sender
        .send(&url, &[crowded, full])
        .await
        .expect("the call succeeds");
    let refused = results[0].as_ref().expect_err("11 attributes are refused");
    assert!(!refused.retryable, "{refused}");
    assert!(
        refused.message.contains("11 attributes") && refused.message.contains("at most 10"),
        "{refused}"
    );
    assert!(
        results[1].is_ok(),
        "10 attributes are fine: {:?}",
        results[1]
    );
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    let got = receive_all(&source, 2).await;
    assert_eq!(got.len(), 1, "only the message with 10 attributes arrives");
    assert_eq!(got[0].attributes.len(), 10);
}

#[tokio::test]
async fn an_unknown_queue_is_a_permanent_error_by_url_name_and_arn() {
    let clients = common::clients().await;
    let known = create_queue(&clients, &common::unique("known")).await;
    let missing_name = common::unique("missing");
    let missing_url = format!(
        "{}/{}",
        known.rsplit_once('/').map_or("", |(base, _)| base),
        missing_name
    );
    let missing_arn = format!("arn:aws:sqs:us-east-1:123456789012:{missing_name}");
    let sender = SqsSender::new(clients.sqs.clone());
    for queue in [
        missing_url.as_str(),
        missing_name.as_str(),
        missing_arn.as_str(),
    ] {
        match sender.send(queue, &[tagged("m", "{}")]).await {
            Err(error) => {
                assert!(!error.retryable, "{queue}: {error}");
                assert!(error.message.contains("exists"), "{queue}: {error}");
            }
            Ok(results) => assert!(
                results
                    .iter()
                    .all(|r| r.as_ref().is_err_and(|e| !e.retryable)),
                "{queue}: {results:?}"
            ),
        }
    }
    let source = SqsQueue::new(clients.sqs.clone(), &missing_url);
    let error = source
        .receive(1, Duration::ZERO)
        .await
        .expect_err("receiving from a missing queue fails");
    assert!(!error.retryable, "{error}");
}

#[tokio::test]
async fn a_queue_tells_its_visibility_timeout_and_a_missing_one_fails() {
    let clients = common::clients().await;
    let url = create_queue(&clients, &common::unique("visibility")).await;
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    assert_eq!(
        source.visibility_timeout().await,
        Ok(Some(Duration::from_secs(30))),
        "SQS's default"
    );
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "7")
        .send()
        .await
        .expect("set the visibility timeout");
    assert_eq!(
        source.visibility_timeout().await,
        Ok(Some(Duration::from_secs(7)))
    );
    clients
        .sqs
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete the queue");
    let error = source
        .visibility_timeout()
        .await
        .expect_err("a deleted queue has no visibility timeout");
    assert!(!error.retryable, "{error}");
}

#[tokio::test]
async fn queues_are_resolved_by_arn_and_name_once() {
    let (clients, counter) = common::counted_clients().await;
    let name = common::unique("resolve");
    let url = create_queue(&clients, &name).await;
    let arn = queue_arn(&clients, &url).await;
    let sender = SqsSender::new(clients.sqs.clone());
    assert_eq!(sender.resolve(&url).await, Ok(url.clone()));
    assert_eq!(sender.resolve(&name).await, Ok(url.clone()));
    assert_eq!(sender.resolve(&arn).await, Ok(url.clone()));
    counter.reset();
    for queue in [&name, &arn, &url] {
        let results = sender
            .send(queue, &[tagged(queue, "{}")])
            .await
            .expect("send");
        assert!(results[0].is_ok(), "{queue}: {results:?}");
    }
    let counts = counter.snapshot();
    assert_eq!(
        counts.operations.get("SQS.GetQueueUrl"),
        None,
        "cached: {counts:?}"
    );
    assert_eq!(counts.operations.get("SQS.SendMessageBatch"), Some(&3));
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    let got = receive_all(&source, 3).await;
    let tags: BTreeSet<String> = got
        .iter()
        .filter_map(|m| {
            m.attributes
                .get("tag")
                .and_then(|a| a.as_str())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        tags,
        BTreeSet::from([name.clone(), arn.clone(), url.clone()])
    );
}

#[tokio::test]
async fn large_batches_are_split_by_count_and_payload_and_mapped_back_in_order() {
    let (clients, counter) = common::counted_clients().await;
    let url = create_queue(&clients, &common::unique("split")).await;
    let sender = SqsSender::new(clients.sqs.clone());

    // 23 small messages: three calls of 10, 10 and 3, one bad entry in the middle.
    let mut small: Vec<OutgoingMessage> = (0..23)
        .map(|i| tagged(&format!("s{i}"), &format!("{{\"i\":{i}}}")))
        .collect();
    small[12].body = vec![0xff];
    counter.reset();
    let results = sender.send(&url, &small).await.expect("send");
    assert_eq!(results.len(), 23);
    assert_eq!(
        counter.snapshot().operations.get("SQS.SendMessageBatch"),
        Some(&3)
    );
    assert!(
        results[12]
            .as_ref()
            .is_err_and(|e| !e.retryable && e.message.contains("UTF-8"))
    );
    let ids: BTreeMap<String, String> = results
        .iter()
        .zip(&small)
        .filter_map(|(r, m)| r.as_ref().ok().map(|id| (id.clone(), m.entry_id.clone())))
        .collect();
    assert_eq!(ids.len(), 22);

    // Received messages carry the tag of the entry whose id was returned for them.
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    let got = receive_all(&source, 22).await;
    assert_eq!(got.len(), 22);
    for message in &got {
        let tag = message.attributes.get("tag").and_then(|a| a.as_str());
        assert_eq!(
            tag,
            ids.get(&message.message_id).map(String::as_str),
            "ids mapped back to entries"
        );
    }
    let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    counter.reset();
    let deleted = source.delete(&handles).await.expect("delete");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    assert_eq!(
        counter.snapshot().operations.get("SQS.DeleteMessageBatch"),
        Some(&3)
    );

    // Five messages of 400 kB: at most two per call under the 1 MiB payload limit.
    let big: Vec<OutgoingMessage> = (0..5)
        .map(|i| OutgoingMessage::new(format!("b{i}"), vec![b'a' + i as u8; 400_000]))
        .collect();
    counter.reset();
    let results = sender.send(&url, &big).await.expect("send");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        counter.snapshot().operations.get("SQS.SendMessageBatch"),
        Some(&3)
    );
    let got = receive_all(&source, 5).await;
    let bodies: BTreeSet<u8> = got.iter().map(|m| m.body[0]).collect();
    assert_eq!(bodies, (0..5).map(|i| b'a' + i).collect());
    assert!(got.iter().all(|m| m.body.len() == 400_000));
    let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
    source.delete(&handles).await.expect("delete");
}

#[tokio::test]
async fn invalid_receipt_handles_are_permanent_entry_errors_in_input_order() {
    let clients = common::clients().await;
    let url = create_queue(&clients, &common::unique("handles")).await;
    let sender = SqsSender::new(clients.sqs.clone());
    let sent = sender
        .send(&url, &[tagged("a", "{}"), tagged("b", "{}")])
        .await
        .expect("send");
    assert!(sent.iter().all(Result::is_ok));
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    let got = receive_all(&source, 2).await;
    assert_eq!(got.len(), 2);
    let handles = vec![
        got[0].receipt_handle.clone(),
        "not-a-receipt-handle".to_string(),
        String::new(),
        got[1].receipt_handle.clone(),
    ];
    let retimed = source
        .change_visibility(&[
            (handles[1].clone(), 30),
            (handles[0].clone(), 30),
            (handles[3].clone(), 50_000),
        ])
        .await
        .expect("change visibility");
    assert!(
        retimed[0].as_ref().is_err_and(|e| !e.retryable),
        "{retimed:?}"
    );
    assert!(retimed[1].is_ok(), "{retimed:?}");
    assert!(
        retimed[2]
            .as_ref()
            .is_err_and(|e| e.message.contains("12 hours")),
        "{retimed:?}"
    );
    let deleted = source.delete(&handles).await.expect("delete");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    assert!(
        deleted[1].as_ref().is_err_and(|e| !e.retryable),
        "{deleted:?}"
    );
    assert!(
        deleted[2].as_ref().is_err_and(|e| !e.retryable),
        "{deleted:?}"
    );
    assert!(deleted[3].is_ok(), "{deleted:?}");
}

#[tokio::test]
async fn receive_maps_attributes_and_system_attributes_and_clamps_its_limits() {
    let clients = common::clients().await;
    let url = create_queue(&clients, &format!("{}.fifo", common::unique("attrs"))).await;
    let sender = SqsSender::new(clients.sqs.clone());
    let mut message = tagged("a", "{\"order\":1}");
    message.attributes.insert(
        "blob".into(),
        Attribute {
            data_type: "Binary".into(),
            string_value: None,
            binary_value: Some(vec![0, 159, 146, 150]),
        },
    );
    message.attributes.insert(
        "amount".into(),
        Attribute {
            data_type: "Number.cents".into(),
            string_value: Some("1299".into()),
            binary_value: None,
        },
    );
    message.group_id = Some("customer-7".into());
    message.deduplication_id = Some("dedup-1".into());
    message.delay_seconds = 5; // ignored on FIFO queues
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let sent = sender
        .send(&url, std::slice::from_ref(&message))
        .await
        .expect("send");
    assert!(sent[0].is_ok(), "{sent:?}");
    let source = SqsQueue::new(clients.sqs.clone(), &url);
    assert!(source.is_fifo());
    // Over SQS's maxima (10 messages, 20 s): clamped, not refused; returns at once.
    let got = source
        .receive(50, Duration::from_secs(60))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert_eq!(got.body, message.body);
    assert_eq!(got.attributes, message.attributes);
    assert_eq!(got.group_id.as_deref(), Some("customer-7"));
    assert_eq!(got.receive_count, 1);
    assert_eq!(got.redrive_source, None);
    let sent_at = got.sent_at.expect("sent timestamp");
    assert!(sent_at > before && sent_at < chrono::Utc::now() + chrono::Duration::seconds(5));
    source
        .delete(std::slice::from_ref(&got.receipt_handle))
        .await
        .expect("delete");
    assert!(
        source
            .receive(0, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_error() {
    common::emulator(); // credentials and region for the SDK
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port(); // released again: nothing listens there
    let settings = dlq_healer_aws::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        ..Default::default()
    };
    let clients = AwsClients::connect(&settings, None).await;
    let url = format!("http://127.0.0.1:{port}/123456789012/nowhere");
    let error = SqsQueue::new(clients.sqs.clone(), &url)
        .receive(1, Duration::ZERO)
        .await
        .expect_err("nothing listens");
    assert!(error.retryable, "{error}");
    let error = SqsSender::new(clients.sqs.clone())
        .send(&url, &[tagged("a", "{}")])
        .await
        .expect_err("nothing listens");
    assert!(error.retryable, "{error}");
}
