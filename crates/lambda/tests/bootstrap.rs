//! The bootstrap binaries run for real: each is spawned as Lambda would start it, polls a Runtime
//! API on loopback for hand-built events, and talks to the AWS emulator.

mod common;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use common::runtime_api::{Bootstrap, Reply, RuntimeApi};
use serde_json::{Value, json};
use std::time::Duration;

const ACCOUNT: &str = "123456789012";
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

fn arn_of(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

async fn create_queue(clients: &dlq_healer_aws::AwsClients, name: &str) -> String {
    clients
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

fn sqs_record(id: &str, body: &str, source_arn: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("handle-{id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795773600000"},
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": "us-east-1"
    })
}

/// The response of the one invocation, or a panic with the function's output.
async fn response_of(api: &mut RuntimeApi, function: Bootstrap, request_id: &str) -> Value {
    let reply = api.reply(REPLY_TIMEOUT).await;
    let output = function.stop();
    match reply {
        Some(Reply::Response {
            request_id: id,
            body,
        }) if id == request_id => body,
        other => panic!(
            "expected the response to {request_id}, got {other:?}; the function printed:\n{output}"
        ),
    }
}

const GOOD_ORDER: &str =
    r#"{"order_id":7,"user":"u-7","amount_cents":900,"items":[{"sku":"SKU-7","quantity":1}]}"#;
const TRUNCATED_ORDER: &str = r#"{"order_id":8,"user":"u-8","amou"#;

#[tokio::test]
async fn the_consumer_binary_dead_letters_a_bad_order_and_acknowledges_the_batch() {
    let endpoint = dlq_healer_testkit::emulator().endpoint.clone();
    let clients = common::clients().await;
    let main = common::unique("orders");
    let dlq = common::unique("orders-dlq");
    create_queue(&clients, &main).await;
    let dlq_url = create_queue(&clients, &dlq).await;
    let mut api = RuntimeApi::start().await;
    let function = Bootstrap::spawn(
        env!("CARGO_BIN_EXE_consumer"),
        &api,
        &endpoint,
        &[("DLQ_URL", &dlq_url)],
    );

    let request_id = api.invoke(json!({"Records": [
        sqs_record("good", GOOD_ORDER, &arn_of(&main)),
        sqs_record("bad", TRUNCATED_ORDER, &arn_of(&main)),
    ]}));
    let body = response_of(&mut api, function, &request_id).await;

    assert_eq!(body, json!({"batchItemFailures": []}));
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&dlq_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].body.as_deref(), Some(TRUNCATED_ORDER));
    let context = messages[0].message_attributes.as_ref().unwrap()["dlq-context"]
        .string_value
        .clone()
        .unwrap();
    let context: Value = serde_json::from_str(&context).unwrap();
    assert_eq!(context["error"]["type"], "JSONDecodeError");
    assert_eq!(context["source"], arn_of(&main));
    assert_eq!(context["consumer"], "dlq-healer-test");
}

fn http_api_event(method: &str, path: &str, body: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "orders.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "orders",
            "domainName": "orders.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "orders",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bootstrap-test"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "27/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795773600000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn the_producer_binary_answers_api_gateway_and_queues_valid_orders() {
    let endpoint = dlq_healer_testkit::emulator().endpoint.clone();
    let clients = common::clients().await;
    let main_url = create_queue(&clients, &common::unique("orders")).await;
    let mut api = RuntimeApi::start().await;
    let function = Bootstrap::spawn(
        env!("CARGO_BIN_EXE_producer"),
        &api,
        &endpoint,
        &[("MAIN_QUEUE_URL", &main_url)],
    );

    let mut responses = Vec::new();
    for (method, path, body) in [
        ("POST", "/orders", GOOD_ORDER),
        ("POST", "/orders", TRUNCATED_ORDER),
        ("GET", "/health", ""),
    ] {
        let request_id = api.invoke(http_api_event(method, path, body));
        match api.reply(REPLY_TIMEOUT).await {
            Some(Reply::Response {
                request_id: id,
                body,
            }) if id == request_id => responses.push(body),
            other => {
                let output = function.stop();
                panic!("{method} {path}: got {other:?}; the function printed:\n{output}");
            }
        }
    }
    function.stop();

    let json_body = |response: &Value| -> Value {
        serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap()
    };
    assert_eq!(responses[0]["statusCode"], 202, "{}", responses[0]);
    let message_id = json_body(&responses[0])["message_id"].clone();
    assert_eq!(responses[1]["statusCode"], 400, "{}", responses[1]);
    assert!(json_body(&responses[1])["error"].is_string());
    assert_eq!(responses[2]["statusCode"], 200);

    let received = clients
        .sqs
        .receive_message()
        .queue_url(&main_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body.as_deref(), Some(GOOD_ORDER));
    assert_eq!(
        Some(messages[0].message_id.clone().unwrap()),
        message_id.as_str().map(String::from)
    );
}

/// The SQS event the mapping would deliver for messages received from `queue`.
fn event_of(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let system: serde_json::Map<String, Value> = m
                .attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), Value::String(v)))
                .collect();
            let attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(name, a)| {
                    (
                        name,
                        json!({"stringValue": a.string_value, "stringListValues": [],
                               "binaryListValues": [], "dataType": a.data_type}),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": system,
                "messageAttributes": attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn context(error_type: &str, message: &str, source: &str) -> String {
    json!({"v": 1, "error": {"type": error_type, "message": message},
           "source": source, "consumer": "orders-consumer", "failed_at": "2026-11-27T10:15:01Z"})
    .to_string()
}

#[tokio::test]
async fn the_healer_binary_archives_requeues_and_reports_what_it_could_not_handle() {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let endpoint = dlq_healer_testkit::emulator().endpoint.clone();
    let clients = common::clients().await;
    let main = common::unique("orders");
    let dlq = common::unique("orders-dlq");
    let main_url = create_queue(&clients, &main).await;
    let dlq_url = create_queue(&clients, &dlq).await;
    let bucket = common::unique("archive");
    clients
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let topic = clients
        .sns
        .create_topic()
        .name(common::unique("alerts"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let table = common::create_ledger_table(&clients.dynamodb).await;

    // Two dead letters as a consumer in any language writes them: a validation failure and a
    // timeout, each with its dlq-context.
    for (body, error_type, message) in [
        (
            r#"{"order_id":1,"user":null}"#,
            "ValidationError",
            "user: Field required",
        ),
        (
            GOOD_ORDER,
            "TimeoutError",
            "Task timed out after 30.00 seconds",
        ),
    ] {
        clients
            .sqs
            .send_message()
            .queue_url(&dlq_url)
            .message_body(body)
            .message_attributes(
                "dlq-context",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(context(error_type, message, &main_url))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&dlq_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 2);
    let mut event = event_of(&received, &arn_of(&dlq));
    // A record the mapping could never deliver: no receipt handle. It must be reported.
    event["Records"]
        .as_array_mut()
        .unwrap()
        .push(sqs_record("broken", "{}", &arn_of(&dlq)));
    event["Records"][2]
        .as_object_mut()
        .unwrap()
        .remove("receiptHandle");

    let mut api = RuntimeApi::start().await;
    let function = Bootstrap::spawn(
        env!("CARGO_BIN_EXE_healer"),
        &api,
        &endpoint,
        &[
            ("MAIN_QUEUE_URL", &main_url),
            ("ARCHIVE_BUCKET", &bucket),
            ("FAILED_TABLE", &table),
            ("ALERT_TOPIC_ARN", &topic),
            ("LOG_LEVEL", "INFO"),
        ],
    );
    let request_id = api.invoke(event);
    let reply = api.reply(REPLY_TIMEOUT).await;
    let output = function.stop();
    let body = match reply {
        Some(Reply::Response {
            request_id: id,
            body,
        }) if id == request_id => body,
        other => panic!("expected the response, got {other:?}; the function printed:\n{output}"),
    };

    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": "broken"}]}),
        "{output}"
    );
    // The timeout is back on the main queue with its heal state, after a backoff of at most
    // two seconds.
    let requeued = clients
        .sqs
        .receive_message()
        .queue_url(&main_url)
        .wait_time_seconds(5)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(requeued.len(), 1, "{output}");
    assert_eq!(requeued[0].body.as_deref(), Some(GOOD_ORDER));
    let healed: Value = serde_json::from_str(
        requeued[0].message_attributes.as_ref().unwrap()["dlq-context"]
            .string_value
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(healed["heal"]["attempts"], 1);
    assert_eq!(healed["heal"]["last_class"], "timeout");
    // The validation failure is archived in S3, under its class.
    let objects = clients
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .contents
        .unwrap_or_default();
    assert_eq!(objects.len(), 1, "{output}");
    let key = objects[0].key.clone().unwrap();
    assert!(key.starts_with("archive/validation/"), "{key}");
    let object = clients
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let record: Value =
        serde_json::from_slice(object.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(record["class"], "validation", "{record}");
    // Both decisions are in the ledger, and the metrics went out as EMF lines on stdout.
    let items = clients
        .dynamodb
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert!(items.len() >= 2, "{items:?}");
    assert!(output.contains("\"_aws\""), "no EMF line in:\n{output}");
}

#[tokio::test]
async fn the_healer_binary_fails_init_naming_the_missing_variable() {
    let endpoint = dlq_healer_testkit::emulator().endpoint.clone();
    let mut api = RuntimeApi::start().await;
    let function = Bootstrap::spawn(
        env!("CARGO_BIN_EXE_healer"),
        &api,
        &endpoint,
        &[
            ("MAIN_QUEUE_URL", "http://127.0.0.1:1/q"),
            ("ARCHIVE_BUCKET", "b"),
        ],
    );
    // The runtime never asks for an event; the process exits with the reason.
    let reply = api.reply(Duration::from_secs(3)).await;
    let output = function.stop();
    assert!(!matches!(reply, Some(Reply::Response { .. })), "{reply:?}");
    assert!(output.contains("FAILED_TABLE"), "{output}");
}
