//! The AWS backend of dlq-healer: every port of `dlq_healer_core::ports` on SQS, SNS, S3 and
//! DynamoDB, with metrics as CloudWatch Embedded Metric Format log lines.
//!
//! # Layout
//! - [`config`]: [`AwsSettings`], [`AwsClients`] (built once, shared), [`CallCounter`].
//! - [`retry`]: retryable or permanent, decided from the SDK error; SDK error → `PortError`.
//! - [`ledger_schema`]: the DynamoDB ledger table's key names, index and TTL attribute.
//! - [`sqs`]: [`SqsQueue`] (receive, batch delete and re-time) and [`SqsSender`] (batch send to a
//!   queue by URL, ARN or name), with SQS's limits checked before sending.
//! - [`archive`]: [`S3Archive`], one server-side encrypted JSON Lines object per archived batch.
//! - [`metrics`]: [`EmfMetrics`], metrics as CloudWatch Embedded Metric Format log lines.
//! - [`ledger`]: [`DynamoLedger`], the ledger port on DynamoDB (records and digest items in
//!   `BatchWriteItem`, histories in `BatchGetItem`, queries by key and by class and time).
//! - [`alerts`]: [`SnsAlerter`], the alerter port on SNS with a dedup window per fingerprint
//!   shared by every healer instance through conditional writes in the same table.
//! - [`setup`]: [`provision`], idempotent creation of the queues, topic, bucket and ledger table.
//! - [`check`]: [`check_resources`], whether a healer's bucket, table, topic and queues exist.
pub mod alerts;
pub mod archive;
pub mod check;
pub mod config;
pub mod ledger;
pub mod ledger_schema;
pub mod metrics;
pub mod retry;
pub mod setup;
pub mod sqs;

pub use alerts::SnsAlerter;
pub use archive::S3Archive;
pub use check::{HealerResources, ResourceCheck, check_resources};
pub use config::{
    AwsClients, AwsSettings, CallCounter, CallCounts, DEFAULT_CALL_TIMEOUT,
    MAX_CALL_TIMEOUT_SECONDS,
};
pub use ledger::DynamoLedger;
pub use metrics::EmfMetrics;
pub use setup::{Resources, SetupError, provision};
pub use sqs::{SqsQueue, SqsSender};
