//! The AWS backend of dlq-healer: every port of `dlq_healer_core::ports` on SQS, SNS, S3 and
//! DynamoDB, with metrics as CloudWatch Embedded Metric Format log lines.
//!
//! # Layout
//! - [`config`]: [`AwsSettings`], [`AwsClients`] (built once, shared), [`CallCounter`].
pub mod config;

pub use config::{AwsClients, AwsSettings, CallCounter, CallCounts};
