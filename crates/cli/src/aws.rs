//! Wiring of the AWS backend: SQS, S3, DynamoDB and SNS adapters into an engine, from the
//! original's environment variables or the same as flags.

use anyhow::{Context, Result};
use dlq_healer_aws::{
    AwsClients, AwsSettings, CallCounter, DynamoLedger, EmfMetrics, S3Archive, SnsAlerter,
    SqsQueue, SqsSender,
};
use dlq_healer_core::engine::{Engine, EngineConfig, Ports};
use dlq_healer_core::ports::{Metrics, SystemClock};
use dlq_healer_core::rules::RuleSet;
use std::sync::Arc;

/// Where the AWS backend's resources are; each flag falls back to the original's variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// Endpoint override, for emulators (the SDK also reads AWS_ENDPOINT_URL by itself).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (the standard chain when absent).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// S3 bucket of the archive (aws backend).
    #[arg(long, env = "ARCHIVE_BUCKET")]
    pub archive_bucket: Option<String>,
    /// DynamoDB table of the ledger (aws backend).
    #[arg(long, env = "FAILED_TABLE")]
    pub failed_table: Option<String>,
    /// SNS topic for alerts (aws backend).
    #[arg(long, env = "ALERT_TOPIC_ARN")]
    pub alert_topic_arn: Option<String>,
    /// How long one attempt of an AWS call may take, in seconds, 1 to 300 (10 unless set; SQS
    /// calls get 20 more, for the long poll); a call whose attempts all time out fails and leaves
    /// its messages in the DLQ.
    #[arg(
        long,
        env = "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=dlq_healer_aws::MAX_CALL_TIMEOUT_SECONDS)
    )]
    pub call_timeout_seconds: Option<u64>,
}

impl AwsArgs {
    /// The client settings.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            call_timeout: self
                .call_timeout_seconds
                .map(std::time::Duration::from_secs),
            long_polls: true,
        }
    }
}

/// The resources a healer on AWS needs, checked to be present.
#[derive(Debug, Clone)]
pub struct AwsResources {
    /// The DLQ's URL.
    pub dlq_url: String,
    /// The archive bucket.
    pub bucket: String,
    /// The ledger table.
    pub table: String,
    /// The alert topic.
    pub topic_arn: String,
}

impl AwsResources {
    /// Take the resource names from flags or environment, naming what is missing.
    pub fn from_args(dlq: &str, args: &AwsArgs) -> Result<AwsResources> {
        let need = |value: &Option<String>, flag: &str, variable: &str| {
            value.clone().with_context(|| {
                format!("the aws backend needs {flag} (or {variable}); `dlq-healer setup --backend aws --prefix NAME` creates the resources and prints them")
            })
        };
        Ok(AwsResources {
            dlq_url: dlq.to_string(),
            bucket: need(&args.archive_bucket, "--archive-bucket", "ARCHIVE_BUCKET")?,
            table: need(&args.failed_table, "--failed-table", "FAILED_TABLE")?,
            topic_arn: need(
                &args.alert_topic_arn,
                "--alert-topic-arn",
                "ALERT_TOPIC_ARN",
            )?,
        })
    }
}

/// Refuse to heal with a bucket, table, topic or main queue that does not exist; warn about those
/// that could not be checked (the role may lack the permission to look, and still have the one
/// to write).
pub async fn refuse_missing_resources(
    clients: &AwsClients,
    resources: &AwsResources,
    main_queue: Option<&str>,
) -> Result<()> {
    let queues: Vec<String> = main_queue.map(str::to_string).into_iter().collect();
    let check = dlq_healer_aws::check_resources(
        clients,
        dlq_healer_aws::HealerResources {
            bucket: &resources.bucket,
            table: &resources.table,
            topic_arn: &resources.topic_arn,
            queues: &queues,
        },
    )
    .await;
    for unverified in &check.unverified {
        tracing::warn!("{unverified}; healing goes on");
    }
    if !check.missing.is_empty() {
        anyhow::bail!(
            "cannot heal: {}. Check the names (and the region), or create the resources with `dlq-healer setup --backend aws --prefix NAME`",
            check.missing.join("; ")
        );
    }
    Ok(())
}

/// A healing engine on AWS.
pub fn engine(
    clients: &AwsClients,
    resources: &AwsResources,
    rules: Arc<RuleSet>,
    config: EngineConfig,
    alert_window: chrono::Duration,
    metrics: Arc<dyn Metrics>,
) -> Engine {
    let ports = Ports {
        dlq: Arc::new(SqsQueue::new(
            clients.sqs.clone(),
            resources.dlq_url.clone(),
        )),
        queues: Arc::new(SqsSender::new(clients.sqs.clone())),
        ledger: Arc::new(DynamoLedger::new(
            clients.dynamodb.clone(),
            resources.table.clone(),
        )),
        archive: Arc::new(S3Archive::new(clients.s3.clone(), resources.bucket.clone())),
        alerter: Arc::new(SnsAlerter::new(
            clients.sns.clone(),
            resources.topic_arn.clone(),
            clients.dynamodb.clone(),
            resources.table.clone(),
            alert_window,
        )),
        metrics,
    };
    Engine::new(rules, ports, Arc::new(SystemClock), config)
}

/// Clients for the settings, optionally counting calls; refused without a region or credentials.
pub async fn connect(args: &AwsArgs, counter: Option<CallCounter>) -> Result<AwsClients> {
    AwsClients::connect_checked(&args.settings(), counter)
        .await
        .map_err(anyhow::Error::msg)
}

/// EMF metrics on standard output, for CloudWatch Logs to turn into metrics.
pub fn emf_metrics() -> Arc<dyn Metrics> {
    Arc::new(EmfMetrics::stdout())
}
