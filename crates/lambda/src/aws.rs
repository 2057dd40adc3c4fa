//! Building each function on the AWS adapters, from its environment: the SDK clients are made
//! once here, at init, and every invocation reuses them.

use crate::consumer::ConsumerFunction;
use crate::env::{ConsumerSettings, HealerSettings, ProducerSettings};
use crate::event_dlq::{DlqResolver, EventSourceDlq};
use crate::healer::{HealerFunction, InitError, lambda_engine_config, load_rules};
use async_trait::async_trait;
use dlq_healer_aws::metrics::EmfMetrics;
use dlq_healer_aws::sqs::{SqsQueue, SqsSender};
use dlq_healer_aws::{AwsClients, AwsSettings, DynamoLedger, S3Archive, SnsAlerter};
use dlq_healer_core::ports::{MessageSource, PortError, SystemClock};
use dlq_healer_core::{Engine, Ports};
use dlq_healer_demo::OrderConsumer;
use std::sync::Arc;

/// The SDK clients from the standard chain (region, credentials, `AWS_ENDPOINT_URL`), with
/// `DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS` (see [`crate::env::call_timeout`]).
pub async fn clients() -> AwsClients {
    let settings = AwsSettings {
        call_timeout: crate::env::call_timeout(&crate::env::process_env),
        ..AwsSettings::default()
    };
    AwsClients::connect(&settings, None).await
}

/// Resolves the DLQ's ARN to its URL with `GetQueueUrl`.
pub struct SqsDlqResolver {
    client: aws_sdk_sqs::Client,
    sender: SqsSender,
}

impl SqsDlqResolver {
    /// A resolver on an SQS client.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsDlqResolver {
            sender: SqsSender::new(client.clone()),
            client,
        }
    }
}

#[async_trait]
impl DlqResolver for SqsDlqResolver {
    async fn resolve(&self, arn: &str) -> Result<Arc<dyn MessageSource>, PortError> {
        let url = self.sender.resolve(arn).await?;
        tracing::info!(%arn, %url, "resolved the DLQ from the event source");
        Ok(Arc::new(SqsQueue::new(self.client.clone(), url)))
    }
}

/// The healer: rules from `DLQ_HEALER_RULES` (or the defaults), SQS, S3, DynamoDB and SNS
/// adapters, EMF metrics on stdout, and the engine in Lambda mode. Without `DLQ_URL` the DLQ is
/// found from each event's source ARN when a message has to be parked.
pub fn healer(
    settings: &HealerSettings,
    clients: &AwsClients,
) -> Result<HealerFunction, InitError> {
    let rules = load_rules(settings.rules_path.as_deref())?;
    let (dlq, event_source_dlq): (Arc<dyn MessageSource>, Option<Arc<EventSourceDlq>>) =
        match &settings.dlq_url {
            Some(url) => (Arc::new(SqsQueue::new(clients.sqs.clone(), url)), None),
            None => {
                let dlq = Arc::new(EventSourceDlq::new(Arc::new(SqsDlqResolver::new(
                    clients.sqs.clone(),
                ))));
                (dlq.clone(), Some(dlq))
            }
        };
    let ports = Ports {
        dlq,
        queues: Arc::new(SqsSender::new(clients.sqs.clone())),
        ledger: Arc::new(DynamoLedger::new(
            clients.dynamodb.clone(),
            &settings.failed_table,
        )),
        archive: Arc::new(S3Archive::new(clients.s3.clone(), &settings.archive_bucket)),
        alerter: Arc::new(SnsAlerter::new(
            clients.sns.clone(),
            &settings.alert_topic_arn,
            clients.dynamodb.clone(),
            &settings.failed_table,
            chrono::Duration::seconds(i64::from(settings.alert_window_seconds)),
        )),
        metrics: Arc::new(EmfMetrics::stdout()),
    };
    let engine = Arc::new(Engine::new(
        Arc::new(rules),
        ports,
        Arc::new(SystemClock),
        lambda_engine_config(&settings.main_queue_url),
    ));
    Ok(match event_source_dlq {
        Some(dlq) => HealerFunction::with_event_source_dlq(engine, dlq),
        None => HealerFunction::new(engine),
    })
}

/// The demo order consumer, dead-lettering to `DLQ_URL`.
pub fn consumer(settings: &ConsumerSettings, clients: &AwsClients) -> ConsumerFunction {
    ConsumerFunction {
        handler: Arc::new(OrderConsumer::new()),
        sender: Arc::new(SqsSender::new(clients.sqs.clone())),
        dlq: settings.dlq_url.clone(),
        name: settings.consumer_name.clone(),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(EmfMetrics::stdout()),
    }
}

/// The producer's router, sending to `MAIN_QUEUE_URL`.
pub fn producer(settings: &ProducerSettings, clients: &AwsClients) -> axum::Router {
    crate::producer::router(
        Arc::new(SqsSender::new(clients.sqs.clone())),
        settings.main_queue_url.clone(),
    )
}
