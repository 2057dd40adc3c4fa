//! provision against the emulator: everything is created with the promised shape, and running
//! it again changes nothing and returns the same resources.

mod common;

use aws_sdk_dynamodb::types::{BillingMode, KeyType, TimeToLiveStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use dlq_healer_aws::ledger_schema;
use dlq_healer_aws::{AwsClients, SetupError, provision};

async fn queue_attributes(
    clients: &AwsClients,
    url: &str,
) -> std::collections::HashMap<QueueAttributeName, String> {
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default()
}

#[tokio::test]
async fn provision_is_idempotent_and_creates_the_promised_shapes() {
    let clients = common::clients().await;
    let prefix = common::unique("Setup");
    let first = provision(&clients, &prefix).await.expect("provision");
    let second = provision(&clients, &prefix).await.expect("provision again");
    assert_eq!(first, second, "a second run returns the same resources");

    assert!(first.dlq_url.ends_with(&format!("{prefix}-dlq")));
    assert!(first.main_queue_url.ends_with(&format!("{prefix}-orders")));
    assert_eq!(first.bucket, format!("{prefix}-archive").to_lowercase());
    assert_eq!(first.table, format!("{prefix}-ledger"));
    assert!(first.topic_arn.ends_with(&format!(":{prefix}-alerts")));
    let env = first.env_lines();
    assert_eq!(env.len(), 5);
    assert_eq!(env[0], format!("MAIN_QUEUE_URL={}", first.main_queue_url));
    assert_eq!(env[2], format!("ARCHIVE_BUCKET={}", first.bucket));

    // The DLQ keeps messages 14 days; the main queue redrives to it after 5 receives.
    let dlq = queue_attributes(&clients, &first.dlq_url).await;
    assert_eq!(
        dlq.get(&QueueAttributeName::MessageRetentionPeriod)
            .map(String::as_str),
        Some("1209600")
    );
    let dlq_arn = dlq.get(&QueueAttributeName::QueueArn).expect("DLQ ARN");
    let main = queue_attributes(&clients, &first.main_queue_url).await;
    let policy: serde_json::Value = serde_json::from_str(
        main.get(&QueueAttributeName::RedrivePolicy)
            .expect("a redrive policy"),
    )
    .expect("the redrive policy is JSON");
    assert_eq!(policy["deadLetterTargetArn"], dlq_arn.as_str());
    let max = &policy["maxReceiveCount"];
    assert!(max == 5 || max == "5", "{policy}");

    // The topic exists.
    clients
        .sns
        .get_topic_attributes()
        .topic_arn(&first.topic_arn)
        .send()
        .await
        .expect("the topic exists");

    // The bucket is encrypted by default and blocks public access.
    let encryption = clients
        .s3
        .get_bucket_encryption()
        .bucket(&first.bucket)
        .send()
        .await
        .expect("bucket encryption");
    let algorithm = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_string());
    assert_eq!(algorithm.as_deref(), Some("AES256"));
    let block = clients
        .s3
        .get_public_access_block()
        .bucket(&first.bucket)
        .send()
        .await
        .expect("public access block");
    let block = block
        .public_access_block_configuration()
        .expect("a public access block");
    assert_eq!(block.block_public_acls(), Some(true));
    assert_eq!(block.restrict_public_buckets(), Some(true));

    // The table: on demand, (pk, sk), the class/time index, TTL on expires_at.
    let table = clients
        .dynamodb
        .describe_table()
        .table_name(&first.table)
        .send()
        .await
        .expect("describe table");
    let table = table.table().expect("a table");
    let keys: Vec<(&str, &KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(
        keys,
        [
            (ledger_schema::PARTITION_KEY, &KeyType::Hash),
            (ledger_schema::SORT_KEY, &KeyType::Range)
        ]
    );
    assert_eq!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let index = table
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(ledger_schema::CLASS_TIME_INDEX))
        .expect("the class/time index");
    let index_keys: Vec<(&str, &KeyType)> = index
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(
        index_keys,
        [
            (ledger_schema::CLASS_ATTRIBUTE, &KeyType::Hash),
            (ledger_schema::TIME_ATTRIBUTE, &KeyType::Range)
        ]
    );
    let ttl = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(&first.table)
        .send()
        .await
        .expect("describe TTL");
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some(ledger_schema::TTL_ATTRIBUTE));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn provision_converges_a_queue_created_without_its_redrive_policy() {
    let clients = common::clients().await;
    let prefix = common::unique("converge");
    let url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{prefix}-orders"))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url");
    let resources = provision(&clients, &prefix).await.expect("provision");
    assert_eq!(resources.main_queue_url, url);
    let main = queue_attributes(&clients, &url).await;
    assert!(
        main.contains_key(&QueueAttributeName::RedrivePolicy),
        "{main:?}"
    );
}

#[tokio::test]
async fn bad_prefixes_are_refused_before_any_call() {
    let (clients, counter) = common::counted_clients().await;
    let error = provision(&clients, "orders_prod")
        .await
        .expect_err("refused");
    assert!(matches!(error, SetupError::InvalidPrefix { .. }), "{error}");
    assert!(error.to_string().contains("'_'"), "{error}");
    assert_eq!(counter.snapshot().total_operations(), 0);
}
