//! Checking at start that a healer's resources exist. A misnamed bucket, table or queue would
//! otherwise be found at the first message of that kind, which then stays in the DLQ; a misnamed
//! topic, when the first alert is lost; and on an empty DLQ, not at all.

use crate::AwsClients;
use crate::retry::{http_status, is_not_found, port_error, sdk_error_code};
use crate::sqs::SqsSender;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The resources a healer on AWS writes to, besides its DLQ.
#[derive(Debug, Clone, Copy)]
pub struct HealerResources<'a> {
    /// The archive bucket.
    pub bucket: &'a str,
    /// The ledger table.
    pub table: &'a str,
    /// The alert topic.
    pub topic_arn: &'a str,
    /// Queues it re-queues to whatever a message says (`--main-queue`), by URL, ARN or name.
    pub queues: &'a [String],
}

/// What [`check_resources`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResourceCheck {
    /// Resources that do not exist, each in a sentence.
    pub missing: Vec<String>,
    /// Resources whose check failed otherwise (access to the check denied, the service not
    /// answering), each in a sentence: they may well be there.
    pub unverified: Vec<String>,
}

/// Look up each resource once (HeadBucket, DescribeTable, GetTopicAttributes, GetQueueUrl or
/// GetQueueAttributes).
pub async fn check_resources(
    clients: &AwsClients,
    resources: HealerResources<'_>,
) -> ResourceCheck {
    let mut check = ResourceCheck::default();
    let bucket = clients
        .s3
        .head_bucket()
        .bucket(resources.bucket)
        .send()
        .await;
    check.note("the archive bucket", resources.bucket, bucket.err());
    let table = clients
        .dynamodb
        .describe_table()
        .table_name(resources.table)
        .send()
        .await;
    check.note("the ledger table", resources.table, table.err());
    let topic = clients
        .sns
        .get_topic_attributes()
        .topic_arn(resources.topic_arn)
        .send()
        .await;
    check.note("the alert topic", resources.topic_arn, topic.err());
    let sender = SqsSender::new(clients.sqs.clone());
    for queue in resources.queues {
        let found = match sender.resolve(queue).await {
            Ok(url) => clients
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .send()
                .await
                .err()
                .map(|e| (is_missing(&e), port_error("look up", queue, &e).message)),
            Err(error) => Some((!error.retryable, error.message)),
        };
        match found {
            None => {}
            Some((true, why)) => check
                .missing
                .push(format!("the queue {queue} does not exist ({why})")),
            Some((false, why)) => check
                .unverified
                .push(format!("the queue {queue} could not be checked ({why})")),
        }
    }
    check
}

impl ResourceCheck {
    fn note<E>(&mut self, what: &str, name: &str, error: Option<SdkError<E, HttpResponse>>)
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let Some(error) = error else {
            return;
        };
        if is_missing(&error) {
            self.missing.push(format!("{what} {name} does not exist"));
        } else {
            self.unverified.push(format!(
                "{what} {name} could not be checked ({})",
                port_error("look up", name, &error).message
            ));
        }
    }
}

/// Whether a call failed because what it named does not exist: a not-found code, or a 404
/// without one (HeadBucket's answer has no body).
fn is_missing<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    sdk_error_code(error).is_some_and(is_not_found) || http_status(error) == Some(404)
}
