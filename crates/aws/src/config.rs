//! Building the SDK clients once, from the standard AWS chain (region, credentials,
//! `AWS_ENDPOINT_URL`) with an optional endpoint override for emulators, and counting the calls
//! they make.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one attempt of a call may take, unless set: a call that hangs (a connection that
/// never answers) fails instead of holding its batch, and a worker's loop, for ever.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest call timeout a setting may give, in seconds.
pub const MAX_CALL_TIMEOUT_SECONDS: u64 = 300;

/// The longest SQS holds a receive open waiting for messages (its long poll), added to the
/// attempt timeout of SQS calls.
const LONGEST_POLL: Duration = Duration::from_secs(20);

/// Where the clients connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region; the standard chain (`AWS_REGION`, profile) when absent.
    pub region: Option<String>,
    /// Endpoint override, e.g. an emulator's `http://127.0.0.1:5000`; the SDK also honours
    /// `AWS_ENDPOINT_URL` by itself.
    pub endpoint_url: Option<String>,
    /// How long one attempt of a call may take ([`DEFAULT_CALL_TIMEOUT`] when absent or 0). An
    /// attempt that takes longer is abandoned and retried as the SDK retries; a call whose
    /// attempts all time out fails as retryable, and its messages stay in the DLQ.
    pub call_timeout: Option<Duration>,
    /// Whether the SQS client long-polls (`run`'s receives wait up to 20 s for messages): its
    /// attempts then get 20 s more than `call_timeout`. The Lambda functions never receive.
    pub long_polls: bool,
}

/// The SDK's timeouts for calls whose attempts may take `attempt`: connecting takes at most 5 s
/// of it, and a call with its retries at most three times it.
fn timeouts(attempt: Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(5)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3)
        .build()
}

/// Counts SDK operations (one per call the code makes) and attempts (one per HTTP request,
/// retries included), by `Service.Operation`.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<CallCounts>>,
}

/// A snapshot of a [`CallCounter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Operations by `Service.Operation`.
    pub operations: BTreeMap<String, u64>,
    /// HTTP attempts by `Service.Operation` (more than operations when the SDK retried).
    pub attempts: BTreeMap<String, u64>,
    /// What the service bills, by `Service.Operation`, for operations that bill per item or per
    /// size rather than per call (one count per operation, retries not included):
    /// `DynamoDB.BatchWriteItem` and `DynamoDB.PutItem`: write request units, one per started KiB
    /// of each item (item size as DynamoDB counts it: attribute names plus values);
    /// `DynamoDB.BatchGetItem`: keys asked for (a strongly consistent read of an item under
    /// 4 KiB is one read request unit, found or not); `SNS.PublishBatch`: entries (each is billed
    /// as one publish). Other operations have no entry here.
    pub units: BTreeMap<String, u64>,
}

impl CallCounts {
    /// All operations.
    pub fn total_operations(&self) -> u64 {
        self.operations.values().sum()
    }

    /// All attempts.
    pub fn total_attempts(&self) -> u64 {
        self.attempts.values().sum()
    }
}

impl CallCounter {
    /// The counts so far.
    pub fn snapshot(&self) -> CallCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Start again from zero.
    pub fn reset(&self) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = CallCounts::default();
    }

    fn bump(&self, cfg: &ConfigBag, attempt: bool) {
        let name = operation_name(cfg);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let map = if attempt {
            &mut counts.attempts
        } else {
            &mut counts.operations
        };
        *map.entry(name).or_default() += 1;
    }
}

fn operation_name(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map(|m| format!("{}.{}", m.service(), m.name()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// DynamoDB's size of an attribute value: strings and binaries by length, numbers by digits,
/// lists and maps by their members plus 3 bytes, booleans and nulls 1 byte.
fn dynamodb_value_size(value: &Value) -> usize {
    let Some(object) = value.as_object() else {
        return 0;
    };
    object
        .iter()
        .map(|(kind, inner)| match (kind.as_str(), inner) {
            ("S" | "B" | "N", Value::String(text)) => text.len(),
            ("BOOL" | "NULL", _) => 1,
            ("L" | "SS" | "NS" | "BS", Value::Array(items)) => {
                3 + items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => text.len(),
                        other => dynamodb_value_size(other),
                    })
                    .sum::<usize>()
            }
            ("M", Value::Object(members)) => {
                3 + members
                    .iter()
                    .map(|(name, value)| name.len() + dynamodb_value_size(value))
                    .sum::<usize>()
            }
            _ => 0,
        })
        .sum()
}

/// Write request units of one DynamoDB item (JSON wire form): one per started KiB.
fn write_units(item: &Value) -> u64 {
    let size: usize = item.as_object().map_or(0, |attributes| {
        attributes
            .iter()
            .map(|(name, value)| name.len() + dynamodb_value_size(value))
            .sum()
    });
    size.div_ceil(1024).max(1) as u64
}

/// The billed units of one serialized request, for the operations listed on
/// [`CallCounts::units`].
fn billed_units(operation: &str, body: &[u8]) -> Option<u64> {
    match operation {
        "DynamoDB.BatchWriteItem" | "DynamoDB.BatchGetItem" | "DynamoDB.PutItem" => {
            let request: Value = serde_json::from_slice(body).ok()?;
            match operation {
                "DynamoDB.PutItem" => Some(write_units(request.get("Item")?)),
                "DynamoDB.BatchWriteItem" => Some(
                    request
                        .get("RequestItems")?
                        .as_object()?
                        .values()
                        .filter_map(Value::as_array)
                        .flatten()
                        .map(|write| write.pointer("/PutRequest/Item").map_or(1, write_units))
                        .sum(),
                ),
                _ => Some(
                    request
                        .get("RequestItems")?
                        .as_object()?
                        .values()
                        .filter_map(|table| table.get("Keys")?.as_array())
                        .map(|keys| keys.len() as u64)
                        .sum(),
                ),
            }
        }
        // Query protocol: one `...Entries.member.N.Id=` field per entry.
        "SNS.PublishBatch" => {
            let text = std::str::from_utf8(body).ok()?;
            Some(
                text.split('&')
                    .filter(|field| {
                        field.starts_with("PublishBatchRequestEntries.member.")
                            && field.contains(".Id=")
                    })
                    .count() as u64,
            )
        }
        _ => None,
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "dlq-healer-call-counter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.bump(cfg, false);
        Ok(())
    }

    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = operation_name(cfg);
        let body = context.request().body().bytes();
        if let Some(units) = body.and_then(|body| billed_units(&name, body)) {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            *counts.units.entry(name).or_default() += units;
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.bump(cfg, true);
        Ok(())
    }
}

/// The four SDK clients, built once (at Lambda init, or at worker start) and shared.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// S3 (path-style addressing when an endpoint override is set, as emulators need).
    pub s3: aws_sdk_s3::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl AwsClients {
    /// Clients from the standard chain plus `settings`; every call goes through `counter` if given.
    pub async fn connect(settings: &AwsSettings, counter: Option<CallCounter>) -> AwsClients {
        let shared = shared_config(settings).await;
        Self::from_shared(&shared, settings, counter)
    }

    /// [`AwsClients::connect`], refusing a configuration without a region or credentials, which
    /// every call would fail with (retryable as the SDK reports it, so a healer would retry for
    /// ever) and which the calls' errors name only in passing.
    pub async fn connect_checked(
        settings: &AwsSettings,
        counter: Option<CallCounter>,
    ) -> Result<AwsClients, String> {
        use aws_sdk_sqs::config::ProvideCredentials;
        let shared = shared_config(settings).await;
        if shared.region().is_none() {
            return Err(
                "no AWS region is configured: give --region, or set AWS_REGION (or a region in the profile of ~/.aws/config)"
                    .into(),
            );
        }
        let provider = shared
            .credentials_provider()
            .ok_or("no AWS credentials provider is configured")?;
        if let Err(error) = provider.provide_credentials().await {
            return Err(format!(
                "cannot load AWS credentials ({}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where a role provides them",
                crate::retry::error_chain(&error)
            ));
        }
        Ok(Self::from_shared(&shared, settings, counter))
    }

    fn from_shared(
        shared: &aws_config::SdkConfig,
        settings: &AwsSettings,
        counter: Option<CallCounter>,
    ) -> AwsClients {
        let path_style =
            settings.endpoint_url.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();

        let attempt = settings
            .call_timeout
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(DEFAULT_CALL_TIMEOUT);
        let sqs_attempt = if settings.long_polls {
            attempt + LONGEST_POLL
        } else {
            attempt
        };
        let mut sqs =
            aws_sdk_sqs::config::Builder::from(shared).timeout_config(timeouts(sqs_attempt));
        let mut sns = aws_sdk_sns::config::Builder::from(shared).timeout_config(timeouts(attempt));
        let mut s3 = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(path_style)
            .timeout_config(timeouts(attempt));
        let mut dynamodb =
            aws_sdk_dynamodb::config::Builder::from(shared).timeout_config(timeouts(attempt));
        if let Some(counter) = counter {
            sqs = sqs.interceptor(counter.clone());
            sns = sns.interceptor(counter.clone());
            s3 = s3.interceptor(counter.clone());
            dynamodb = dynamodb.interceptor(counter);
        }
        AwsClients {
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            sns: aws_sdk_sns::Client::from_conf(sns.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        }
    }
}

/// The standard chain's configuration with `settings`' region and endpoint.
async fn shared_config(settings: &AwsSettings) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_writes_bill_per_started_kib_of_each_item_and_reads_per_key() {
        let big = "x".repeat(1500);
        let write = serde_json::json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": {"pk": {"S": "k"}, "sk": {"N": "1"}, "ok": {"BOOL": true}}}},
            {"PutRequest": {"Item": {"pk": {"S": big}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "k"}}}}
        ]}});
        let body = serde_json::to_vec(&write).unwrap();
        assert_eq!(
            billed_units("DynamoDB.BatchWriteItem", &body),
            Some(1 + 2 + 1)
        );
        let read = serde_json::json!({"RequestItems": {"t": {"Keys": [
            {"pk": {"S": "a"}}, {"pk": {"S": "b"}}, {"pk": {"S": "c"}}
        ], "ConsistentRead": true}}});
        let body = serde_json::to_vec(&read).unwrap();
        assert_eq!(billed_units("DynamoDB.BatchGetItem", &body), Some(3));
        let put = serde_json::json!({"Item": {"pk": {"S": "a"}, "l": {"L": [{"S": "k1"}]}}});
        let body = serde_json::to_vec(&put).unwrap();
        assert_eq!(billed_units("DynamoDB.PutItem", &body), Some(1));
        assert_eq!(billed_units("DynamoDB.UpdateItem", b"{}"), None);
        assert_eq!(billed_units("SQS.SendMessageBatch", b"{}"), None);
    }

    #[test]
    fn publish_batches_bill_per_entry() {
        let body = "Action=PublishBatch&TopicArn=arn&PublishBatchRequestEntries.member.1.Id=0\
                    &PublishBatchRequestEntries.member.1.Message=a%26b\
                    &PublishBatchRequestEntries.member.2.Id=1\
                    &PublishBatchRequestEntries.member.2.Message=c";
        assert_eq!(billed_units("SNS.PublishBatch", body.as_bytes()), Some(2));
    }
}
