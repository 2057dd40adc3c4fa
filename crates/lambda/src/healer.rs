//! The healer function: the DLQ's event source mapping hands it batches of dead letters; it runs
//! the engine in Lambda mode (the mapping deletes what the function does not report) and reports
//! the messages that must come back — those whose handling failed and those parked in the DLQ.

use crate::convert::{batch_response, received_message};
use crate::event_dlq::EventSourceDlq;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use dlq_healer_core::alert::DigestsDue;
use dlq_healer_core::{Engine, EngineConfig, RuleSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the healer could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A variable is missing or bad.
    #[error(transparent)]
    Env(#[from] crate::env::EnvError),
    /// The rules file named by `DLQ_HEALER_RULES` cannot be read.
    #[error("cannot read the rules file {path} (DLQ_HEALER_RULES): {error}")]
    RulesFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The rules file is not valid.
    #[error("the rules file {path} (DLQ_HEALER_RULES) is not valid: {error}")]
    Rules {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        error: String,
    },
}

/// The rules of a `DLQ_HEALER_RULES` file, or the shipped defaults when there is none.
pub fn load_rules(path: Option<&Path>) -> Result<RuleSet, InitError> {
    let Some(path) = path else {
        return Ok(RuleSet::defaults());
    };
    let text = std::fs::read_to_string(path).map_err(|error| InitError::RulesFile {
        path: path.to_path_buf(),
        error,
    })?;
    RuleSet::from_toml(&text, &path.display().to_string()).map_err(|error| InitError::Rules {
        path: path.to_path_buf(),
        error: error.to_string(),
    })
}

/// The engine settings of the Lambda mode: the event source mapping deletes settled messages, and
/// messages of unknown source go back to `main_queue_url`.
pub fn lambda_engine_config(main_queue_url: &str) -> EngineConfig {
    EngineConfig {
        default_target: Some(main_queue_url.to_string()),
        delete_handled: false,
        ..EngineConfig::default()
    }
}

/// The healer, built once at init and reused by every invocation of the execution environment.
pub struct HealerFunction {
    engine: Arc<Engine>,
    event_source_dlq: Option<Arc<EventSourceDlq>>,
}

impl HealerFunction {
    /// A healer on an engine whose DLQ port is a fixed queue (`DLQ_URL` set).
    pub fn new(engine: Arc<Engine>) -> Self {
        HealerFunction {
            engine,
            event_source_dlq: None,
        }
    }

    /// A healer whose engine parks messages through `dlq`, which follows each event's source ARN.
    pub fn with_event_source_dlq(engine: Arc<Engine>, dlq: Arc<EventSourceDlq>) -> Self {
        HealerFunction {
            engine,
            event_source_dlq: Some(dlq),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Handle one batch: heal every record, then report as failures the records that could not
    /// be read and the messages the engine did not settle (failed or parked).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut failed: Vec<String> = Vec::new();
        let mut messages = Vec::with_capacity(event.records.len());
        for (index, record) in event.records.iter().enumerate() {
            match received_message(index, record) {
                Ok(message) => messages.push(message),
                Err(error) => {
                    tracing::error!(%error, "unreadable SQS record; reporting it as failed");
                    failed.push(error.item_identifier());
                }
            }
        }
        if let Some(dlq) = &self.event_source_dlq {
            let arn = event
                .records
                .iter()
                .find_map(|r| r.event_source_arn.as_deref());
            dlq.enter(arn);
        }
        let report = self.engine.heal_batch(messages).await;
        for message in &report.messages {
            tracing::info!(
                message_id = %message.message_id,
                key = %message.key,
                class = ?message.class,
                rule = ?message.rule,
                outcome = ?message.outcome,
                "healed"
            );
        }
        let tally = report.tally();
        tracing::info!(
            requeued = tally.requeued,
            parked = tally.parked,
            archived = tally.archived,
            duplicates = tally.duplicates,
            failed = tally.failed,
            "batch done"
        );
        failed.extend(report.not_settled().map(|r| r.message_id.clone()));
        if let Err(error) = self
            .engine
            .send_alert_digests(DigestsDue::OfClosedWindows)
            .await
        {
            tracing::warn!(%error, "could not send alert digests; they go out on a later batch");
        }
        batch_response(failed)
    }
}
