//! Creating the AWS resources of one deployment, idempotently: running [`provision`] again
//! changes nothing and returns the same [`Resources`]. What the SAM template declares for a real
//! deployment, for emulators, demos and tests.
//!
//! For a prefix `p`: the DLQ `p-dlq` (14 days retention), the main queue `p-orders` redriving to
//! it after 5 receives, the SNS topic `p-alerts`, the S3 bucket `p-archive` (default encryption,
//! public access blocked) and the DynamoDB ledger table `p-ledger` laid out as
//! [`crate::ledger_schema`] says.

use crate::AwsClients;
use crate::ledger_schema::{
    CLASS_ATTRIBUTE, CLASS_TIME_INDEX, PARTITION_KEY, SORT_KEY, TIME_ATTRIBUTE, TTL_ATTRIBUTE,
    table_name,
};
use crate::retry::port_error;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::collections::HashMap;
use std::time::Duration;

/// How long the DLQ keeps messages: 14 days, SQS's maximum.
pub const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;

/// Deliveries of a message on the main queue before SQS moves it to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The longest prefix: the bucket name `<prefix>-archive` must fit S3's 63 characters.
pub const MAX_PREFIX_LEN: usize = 40;

/// What provisioning could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The prefix cannot name every resource.
    #[error(
        "the resource prefix {prefix:?} is not usable: {reason}; use 1 to {MAX_PREFIX_LEN} letters, digits and hyphens, starting and ending with a letter or digit"
    )]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An AWS call failed.
    #[error(
        "could not {action} {resource}: {message}; check the credentials, region and endpoint, then run provisioning again (it is idempotent)"
    )]
    Aws {
        /// What was being done, e.g. `create queue`.
        action: String,
        /// The resource it was done to.
        resource: String,
        /// What AWS said.
        message: String,
        /// Whether running again later may succeed by itself.
        retryable: bool,
    },
    /// A resource exists but is not shaped as this version expects.
    #[error(
        "{resource} exists but {detail}; delete it (or choose another prefix) and run provisioning again"
    )]
    Mismatch {
        /// The resource.
        resource: String,
        /// How it differs.
        detail: String,
    },
}

impl SetupError {
    fn aws<E>(action: &str, resource: &str, error: &SdkError<E, HttpResponse>) -> SetupError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let port = port_error(action, resource, error);
        SetupError::Aws {
            action: action.to_string(),
            resource: resource.to_string(),
            message: port.message,
            retryable: port.retryable,
        }
    }

    fn missing(action: &str, resource: &str, what: &str) -> SetupError {
        SetupError::Aws {
            action: action.to_string(),
            resource: resource.to_string(),
            message: format!("the answer had no {what}"),
            retryable: true,
        }
    }
}

/// What [`provision`] created (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// The main queue's URL (`MAIN_QUEUE_URL`).
    pub main_queue_url: String,
    /// The DLQ's URL (`DLQ_URL`).
    pub dlq_url: String,
    /// The archive bucket (`ARCHIVE_BUCKET`).
    pub bucket: String,
    /// The ledger table (`FAILED_TABLE`).
    pub table: String,
    /// The alert topic's ARN (`ALERT_TOPIC_ARN`).
    pub topic_arn: String,
}

impl Resources {
    /// `NAME=value` lines in the original design's environment variable names, for a `.env` file
    /// or a shell.
    pub fn env_lines(&self) -> Vec<String> {
        vec![
            format!("MAIN_QUEUE_URL={}", self.main_queue_url),
            format!("DLQ_URL={}", self.dlq_url),
            format!("ARCHIVE_BUCKET={}", self.bucket),
            format!("FAILED_TABLE={}", self.table),
            format!("ALERT_TOPIC_ARN={}", self.topic_arn),
        ]
    }
}

fn check_prefix(prefix: &str) -> Result<(), SetupError> {
    let invalid = |reason: &str| SetupError::InvalidPrefix {
        prefix: prefix.to_string(),
        reason: reason.to_string(),
    };
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid(&format!("it is {} characters long", prefix.len())));
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(invalid(&format!(
            "{bad:?} is not allowed in queue and bucket names"
        )));
    }
    if prefix.starts_with('-') || prefix.ends_with('-') {
        return Err(invalid("it starts or ends with a hyphen"));
    }
    Ok(())
}

/// Create (or find) every resource of the deployment named by `prefix`. Idempotent: running it
/// again succeeds and returns the same [`Resources`].
pub async fn provision(clients: &AwsClients, prefix: &str) -> Result<Resources, SetupError> {
    check_prefix(prefix)?;
    let dlq_url = ensure_queue(
        clients,
        &format!("{prefix}-dlq"),
        HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )]),
    )
    .await?;
    let dlq_arn = queue_arn(clients, &dlq_url).await?;
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    })
    .to_string();
    let main_queue_url = ensure_queue(
        clients,
        &format!("{prefix}-orders"),
        HashMap::from([(QueueAttributeName::RedrivePolicy, redrive_policy)]),
    )
    .await?;
    let topic_arn = ensure_topic(clients, &format!("{prefix}-alerts")).await?;
    let bucket = format!("{prefix}-archive").to_lowercase();
    ensure_bucket(clients, &bucket).await?;
    let table = table_name(prefix);
    ensure_table(clients, &table).await?;
    Ok(Resources {
        main_queue_url,
        dlq_url,
        bucket,
        table,
        topic_arn,
    })
}

/// Create a queue with `attributes`; when it exists with other attributes, set them.
async fn ensure_queue(
    clients: &AwsClients,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, SetupError> {
    let created = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    match created {
        Ok(output) => output
            .queue_url
            .ok_or_else(|| SetupError::missing("create queue", name, "queue URL")),
        Err(error) if queue_exists(&error) => {
            let url = clients
                .sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| SetupError::aws("find queue", name, &e))?
                .queue_url
                .ok_or_else(|| SetupError::missing("find queue", name, "queue URL"))?;
            clients
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| SetupError::aws("set the attributes of queue", name, &e))?;
            Ok(url)
        }
        Err(error) => Err(SetupError::aws("create queue", name, &error)),
    }
}

/// Whether CreateQueue failed because the queue exists with other attributes (the JSON protocol
/// may report the query protocol's code `QueueAlreadyExists` instead of the modelled one).
fn queue_exists(
    error: &SdkError<aws_sdk_sqs::operation::create_queue::CreateQueueError, HttpResponse>,
) -> bool {
    error.as_service_error().is_some_and(|e| {
        e.is_queue_name_exists()
            || e.code().map(crate::retry::bare_code) == Some("QueueAlreadyExists")
    })
}

async fn queue_arn(clients: &AwsClients, url: &str) -> Result<String, SetupError> {
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| SetupError::aws("read the ARN of queue", url, &e))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| SetupError::missing("read the ARN of queue", url, "QueueArn"))
}

async fn ensure_topic(clients: &AwsClients, name: &str) -> Result<String, SetupError> {
    clients
        .sns
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| SetupError::aws("create topic", name, &e))?
        .topic_arn
        .ok_or_else(|| SetupError::missing("create topic", name, "topic ARN"))
}

async fn ensure_bucket(clients: &AwsClients, bucket: &str) -> Result<(), SetupError> {
    let mut request = clients.s3.create_bucket().bucket(bucket);
    // us-east-1 is the default location and must not be named.
    if let Some(region) = clients.s3.config().region().map(|r| r.as_ref().to_string())
        && region != "us-east-1"
    {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(error) => return Err(SetupError::aws("create bucket", bucket, &error)),
    }
    let default_encryption = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| SetupError::missing("encrypt bucket", bucket, &e.to_string()))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default_encryption)
                .build(),
        )
        .build()
        .map_err(|e| SetupError::missing("encrypt bucket", bucket, &e.to_string()))?;
    clients
        .s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|e| SetupError::aws("set default encryption of bucket", bucket, &e))?;
    clients
        .s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| SetupError::aws("block public access to bucket", bucket, &e))?;
    Ok(())
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, SetupError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| SetupError::missing("describe table key", name, &e.to_string()))
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, SetupError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| SetupError::missing("describe table attribute", name, &e.to_string()))
}

async fn ensure_table(clients: &AwsClients, table: &str) -> Result<(), SetupError> {
    let index = GlobalSecondaryIndex::builder()
        .index_name(CLASS_TIME_INDEX)
        .key_schema(key(CLASS_ATTRIBUTE, KeyType::Hash)?)
        .key_schema(key(TIME_ATTRIBUTE, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| SetupError::missing("describe index", CLASS_TIME_INDEX, &e.to_string()))?;
    let created = clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PARTITION_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(SORT_KEY, ScalarAttributeType::N)?)
        .attribute_definitions(attribute(CLASS_ATTRIBUTE, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(TIME_ATTRIBUTE, ScalarAttributeType::S)?)
        .key_schema(key(PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(SORT_KEY, KeyType::Range)?)
        .global_secondary_indexes(index)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => return Err(SetupError::aws("create table", table, &error)),
    }
    wait_until_active(clients, table).await?;
    let ttl = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| SetupError::aws("read the TTL of table", table, &e))?;
    let ttl = ttl.time_to_live_description();
    let status = ttl.and_then(|d| d.time_to_live_status());
    let attribute = ttl.and_then(|d| d.attribute_name());
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            if attribute == Some(TTL_ATTRIBUTE) => {}
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
            return Err(SetupError::Mismatch {
                resource: format!("table {table}"),
                detail: format!(
                    "its TTL attribute is {:?}, not {TTL_ATTRIBUTE:?}",
                    attribute.unwrap_or_default()
                ),
            });
        }
        _ => {
            let specification = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(|e| SetupError::missing("enable TTL on table", table, &e.to_string()))?;
            clients
                .dynamodb
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(specification)
                .send()
                .await
                .map_err(|e| SetupError::aws("enable TTL on table", table, &e))?;
        }
    }
    Ok(())
}

/// Wait for a new table to become active (immediate on emulators, seconds on AWS), and check
/// that an existing one has the layout of [`crate::ledger_schema`].
async fn wait_until_active(clients: &AwsClients, table: &str) -> Result<(), SetupError> {
    for _ in 0..120 {
        let described = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| SetupError::aws("describe table", table, &e))?;
        let description = described
            .table()
            .ok_or_else(|| SetupError::missing("describe table", table, "table description"))?;
        let keys: Vec<(&str, &KeyType)> = description
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type()))
            .collect();
        if keys != [(PARTITION_KEY, &KeyType::Hash), (SORT_KEY, &KeyType::Range)] {
            return Err(SetupError::Mismatch {
                resource: format!("table {table}"),
                detail: format!(
                    "its key is {keys:?}, not ({PARTITION_KEY} HASH, {SORT_KEY} RANGE)"
                ),
            });
        }
        if !description
            .global_secondary_indexes()
            .iter()
            .any(|i| i.index_name() == Some(CLASS_TIME_INDEX))
        {
            return Err(SetupError::Mismatch {
                resource: format!("table {table}"),
                detail: format!("it has no index {CLASS_TIME_INDEX}"),
            });
        }
        if description.table_status() == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(SetupError::Aws {
        action: "wait for table".into(),
        resource: table.into(),
        message: "it did not become ACTIVE within 2 minutes".into(),
        retryable: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_name_every_resource() {
        assert!(check_prefix("dlq-healer-dev").is_ok());
        assert!(check_prefix("Demo1").is_ok());
        for bad in ["", "-x", "x-", "a_b", "a.b", &"x".repeat(41)] {
            let error = check_prefix(bad).expect_err(bad);
            assert!(
                error.to_string().contains("letters, digits and hyphens"),
                "{error}"
            );
        }
    }

    #[test]
    fn env_lines_use_the_original_names() {
        let resources = Resources {
            main_queue_url: "u1".into(),
            dlq_url: "u2".into(),
            bucket: "b".into(),
            table: "t".into(),
            topic_arn: "arn".into(),
        };
        assert_eq!(
            resources.env_lines(),
            [
                "MAIN_QUEUE_URL=u1",
                "DLQ_URL=u2",
                "ARCHIVE_BUCKET=b",
                "FAILED_TABLE=t",
                "ALERT_TOPIC_ARN=arn"
            ]
        );
    }
}
