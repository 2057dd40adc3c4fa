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
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where the clients connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region; the standard chain (`AWS_REGION`, profile) when absent.
    pub region: Option<String>,
    /// Endpoint override, e.g. an emulator's `http://127.0.0.1:5000`; the SDK also honours
    /// `AWS_ENDPOINT_URL` by itself.
    pub endpoint_url: Option<String>,
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
        let name = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".to_string());
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let map = if attempt {
            &mut counts.attempts
        } else {
            &mut counts.operations
        };
        *map.entry(name).or_default() += 1;
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
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let shared = loader.load().await;
        let path_style =
            settings.endpoint_url.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();

        let mut sqs = aws_sdk_sqs::config::Builder::from(&shared);
        let mut sns = aws_sdk_sns::config::Builder::from(&shared);
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style);
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared);
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
