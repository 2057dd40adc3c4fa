//! The AWS backend of dlq-healer: every port of `dlq_healer_core::ports` on SQS, SNS, S3 and
//! DynamoDB, with metrics as CloudWatch Embedded Metric Format log lines.
//!
//! # Layout
//! - [`config`]: [`AwsSettings`], [`AwsClients`] (built once, shared), [`CallCounter`].
//! - [`retry`]: retryable or permanent, decided from the SDK error; SDK error → `PortError`.
//! - [`ledger_schema`]: the DynamoDB ledger table's key names, index and TTL attribute.
pub mod config;
pub mod ledger_schema;
pub mod retry;

pub use config::{AwsClients, AwsSettings, CallCounter, CallCounts};
