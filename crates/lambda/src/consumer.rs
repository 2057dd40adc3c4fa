//! The demo order consumer on the main queue: each record goes through the order handler; a
//! failure is dead-lettered to `DLQ_URL` with its `dlq-context`. Dead-lettered records are done
//! (the event source mapping deletes them); only records that could not be dead-lettered are
//! reported, so that SQS delivers them again.

use crate::convert::{batch_response, received_message};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use dlq_healer_core::consumer::{MessageHandler, dead_letter_for};
use dlq_healer_core::message::{OutgoingMessage, ReceivedMessage};
use dlq_healer_core::metrics as m;
use dlq_healer_core::ports::{Clock, MetricEvent, Metrics, QueueSender};
use std::sync::Arc;
use std::time::Instant;

/// SQS sends at most this many messages per batch call.
const SEND_BATCH: usize = 10;

/// The consumer, built once at init and reused by every invocation.
pub struct ConsumerFunction {
    /// The application's handler.
    pub handler: Arc<dyn MessageHandler>,
    /// Where dead letters are sent.
    pub sender: Arc<dyn QueueSender>,
    /// The DLQ's URL.
    pub dlq: String,
    /// This consumer's name, written into `dlq-context.consumer`.
    pub name: String,
    /// The clock for `failed_at`.
    pub clock: Arc<dyn Clock>,
    /// Where consumer metrics go.
    pub metrics: Arc<dyn Metrics>,
}

impl ConsumerFunction {
    /// Handle one batch; the response lists the records that must come back.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut report_failed: Vec<String> = Vec::new();
        let mut failures: Vec<(ReceivedMessage, String, dlq_healer_core::context::ErrorInfo)> =
            Vec::new();
        let mut processed = 0usize;
        let mut handled = 0usize;
        let mut durations_ms = 0.0;
        for (index, record) in event.records.iter().enumerate() {
            let message = match received_message(index, record) {
                Ok(message) => message,
                Err(error) => {
                    tracing::error!(%error, "unreadable SQS record; reporting it as failed");
                    report_failed.push(error.item_identifier());
                    continue;
                }
            };
            let source = record
                .event_source_arn
                .clone()
                .unwrap_or_else(|| "main-queue".to_string());
            let started = Instant::now();
            let result = self.handler.handle(&message).await;
            durations_ms += started.elapsed().as_secs_f64() * 1000.0;
            handled += 1;
            match result {
                Ok(()) => {
                    processed += 1;
                    tracing::info!(message_id = %message.message_id, "processed");
                }
                Err(error) => {
                    tracing::warn!(message_id = %message.message_id, error = %error.message, "failed; dead-lettering");
                    failures.push((message, source, error));
                }
            }
        }
        let now = self.clock.now();
        for chunk in failures.chunks(SEND_BATCH) {
            let dead_letters: Vec<OutgoingMessage> = chunk
                .iter()
                .enumerate()
                .map(|(i, (message, source, error))| OutgoingMessage {
                    entry_id: format!("m{i}"),
                    ..dead_letter_for(message, error.clone(), &self.name, source, now)
                })
                .collect();
            let results = match self.sender.send(&self.dlq, &dead_letters).await {
                Ok(results) => results,
                Err(error) => vec![Err(error); dead_letters.len()],
            };
            for (i, (message, _, _)) in chunk.iter().enumerate() {
                match results.get(i) {
                    Some(Ok(id)) => {
                        tracing::info!(message_id = %message.message_id, dead_letter_id = %id, "dead-lettered");
                    }
                    Some(Err(error)) => {
                        tracing::error!(message_id = %message.message_id, %error, "could not dead-letter; SQS will deliver it again");
                        report_failed.push(message.message_id.clone());
                    }
                    None => {
                        tracing::error!(message_id = %message.message_id, "the DLQ send returned no result for it; SQS will deliver it again");
                        report_failed.push(message.message_id.clone());
                    }
                }
            }
        }
        if handled > 0 {
            self.metrics.record(
                now,
                &[
                    MetricEvent {
                        name: m::CONSUMER_INVOCATIONS,
                        class: None,
                        value: handled as f64,
                    },
                    MetricEvent {
                        name: m::CONSUMER_ERRORS,
                        class: None,
                        value: (handled - processed) as f64,
                    },
                    MetricEvent {
                        name: m::CONSUMER_DURATION_MS,
                        class: None,
                        value: durations_ms / handled as f64,
                    },
                    MetricEvent {
                        name: m::PROCESSED,
                        class: None,
                        value: processed as f64,
                    },
                ],
            );
        }
        batch_response(report_failed)
    }
}
