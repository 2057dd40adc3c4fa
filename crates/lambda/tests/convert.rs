//! SQS event records to core messages.

use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use dlq_healer_lambda::convert::{RecordError, batch_response, received_message};
use serde_json::json;

#[test]
fn a_record_keeps_its_attributes_and_system_facts() {
    let binary = [0u8, 159, 255, 10];
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": "{\"order_id\": 7}",
        "attributes": {
            "ApproximateReceiveCount": "3",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
            "DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:123456789012:orders",
            "MessageGroupId": "customer-9"
        },
        "messageAttributes": {
            "dlq-context": {"stringValue": "{\"v\":1}", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "priority": {"stringValue": "5", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
            "weight": {"stringValue": "2.5", "dataType": "Number.float"},
            "signature": {"binaryValue": base64::engine::general_purpose::STANDARD.encode(binary),
                          "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
            "untyped": {"binaryValue": "AQI="}
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders-dlq",
        "awsRegion": "us-east-1"
    }]}))
    .unwrap();

    let message = received_message(0, &event.records[0]).unwrap();

    assert_eq!(message.message_id, "059f36b4-87a3-44ab-83d2-661975830a7d");
    assert_eq!(message.receipt_handle, "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a");
    assert_eq!(message.body, b"{\"order_id\": 7}");
    assert_eq!(message.receive_count, 3);
    assert_eq!(
        message.sent_at,
        Some(Utc.timestamp_millis_opt(1_545_082_649_183).unwrap())
    );
    assert_eq!(
        message.redrive_source.as_deref(),
        Some("arn:aws:sqs:us-east-1:123456789012:orders")
    );
    assert_eq!(message.group_id.as_deref(), Some("customer-9"));

    let attributes = &message.attributes;
    assert_eq!(attributes.len(), 5);
    assert_eq!(attributes["dlq-context"].as_str(), Some("{\"v\":1}"));
    assert_eq!(attributes["priority"].data_type, "Number");
    assert_eq!(attributes["priority"].as_str(), Some("5"));
    assert_eq!(attributes["weight"].data_type, "Number.float");
    assert_eq!(attributes["signature"].data_type, "Binary");
    assert_eq!(
        attributes["signature"].binary_value.as_deref(),
        Some(&binary[..])
    );
    assert_eq!(attributes["signature"].string_value, None);
    assert_eq!(attributes["untyped"].data_type, "Binary");
    assert_eq!(
        attributes["untyped"].binary_value.as_deref(),
        Some(&[1u8, 2][..])
    );
}

#[test]
fn a_bare_record_gets_safe_defaults_and_records_without_ids_are_errors() {
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m", "receiptHandle": "r", "attributes": {"ApproximateReceiveCount": "many", "SentTimestamp": "yesterday"}},
        {"messageId": "m2"},
        {"receiptHandle": "r3", "messageAttributes": null, "attributes": null}
    ]}))
    .unwrap();
    let message = received_message(0, &event.records[0]).unwrap();
    assert_eq!(message.receive_count, 1);
    assert_eq!(message.sent_at, None);
    assert!(message.body.is_empty());
    assert!(message.attributes.is_empty());
    assert_eq!(message.redrive_source, None);

    let error = received_message(1, &event.records[1]).unwrap_err();
    assert_eq!(error.item_identifier(), "m2");
    assert!(error.to_string().contains("receiptHandle"));
    let error = received_message(2, &event.records[2]).unwrap_err();
    assert_eq!(error, RecordError::NoMessageId { index: 2 });
    assert_eq!(error.item_identifier(), "");
}

#[test]
fn the_response_has_lambdas_field_names() {
    let response = batch_response(["a", "b"]);
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]})
    );
}
