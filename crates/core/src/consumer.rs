//! The consumer side: wrap a message handler so that a failure dead-letters the message with its
//! `dlq-context` (or a body envelope when no attribute slot is free), and the original is
//! acknowledged only after the dead letter is stored.

use crate::context::{ContextReading, ErrorInfo, FailureContext};
use crate::letter::wrap_in_envelope;
use crate::message::{
    Attribute, CONTEXT_ATTRIBUTE, MAX_ATTRIBUTES, OutgoingMessage, ReceivedMessage,
};
use crate::metrics as m;
use crate::ports::{Clock, MessageSource, MetricEvent, Metrics, QueueSender};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Application code that processes one message.
#[async_trait]
pub trait MessageHandler: Send + Sync {
    /// Process the message; an `Err` dead-letters it with that error.
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), ErrorInfo>;
}

/// Build the dead letter for a message that failed with `error`. The incoming `dlq-context`'s
/// `heal` block is carried over, so the healer knows the message and its attempts.
pub fn dead_letter_for(
    message: &ReceivedMessage,
    error: ErrorInfo,
    consumer: &str,
    source: &str,
    failed_at: DateTime<Utc>,
) -> OutgoingMessage {
    let mut attributes = message.attributes.clone();
    let previous = attributes
        .remove(CONTEXT_ATTRIBUTE)
        .and_then(|a| a.string_value)
        .map(|text| ContextReading::parse(&text));
    let mut context = FailureContext::new(error, failed_at);
    context.source = Some(source.to_string());
    context.consumer = Some(consumer.to_string());
    if let Some(ContextReading::Valid(previous)) = previous {
        context.heal = previous.heal;
        context.trace_id = previous.trace_id;
    }
    let body = if attributes.len() < MAX_ATTRIBUTES {
        attributes.insert(
            CONTEXT_ATTRIBUTE.to_string(),
            Attribute::string(context.to_json()),
        );
        message.body.clone()
    } else {
        wrap_in_envelope(&message.body, &context)
    };
    OutgoingMessage {
        entry_id: message.message_id.clone(),
        body,
        attributes,
        delay_seconds: 0,
        group_id: message.group_id.clone(),
        deduplication_id: message
            .group_id
            .as_ref()
            .map(|_| format!("dl-{}", message.message_id)),
    }
}

/// What one consumer pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumeReport {
    /// Messages received.
    pub received: usize,
    /// Handled successfully and deleted.
    pub processed: usize,
    /// Failed, dead-lettered and deleted.
    pub dead_lettered: usize,
    /// Failed and could not be dead-lettered or deleted: left on the queue to come back.
    pub left_on_queue: usize,
}

/// A consumer of one queue that dead-letters failures to a DLQ.
pub struct Consumer {
    /// The queue consumed.
    pub queue: Arc<dyn MessageSource>,
    /// Where dead letters go (needs only `send`).
    pub sender: Arc<dyn QueueSender>,
    /// The DLQ's URL, ARN or name.
    pub dlq: String,
    /// This consumer's name, written into `dlq-context.consumer`.
    pub name: String,
    /// The clock for `failed_at`.
    pub clock: Arc<dyn Clock>,
    /// Where consumer metrics go.
    pub metrics: Arc<dyn Metrics>,
}

impl Consumer {
    /// Receive up to `max` messages and handle each.
    pub async fn poll_once(
        &self,
        handler: &dyn MessageHandler,
        max: usize,
        wait: Duration,
    ) -> ConsumeReport {
        let messages = match self.queue.receive(max, wait).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "receive failed");
                return ConsumeReport::default();
            }
        };
        self.handle_all(handler, messages).await
    }

    /// Handle received messages: delete successes; dead-letter failures, then delete them.
    pub async fn handle_all(
        &self,
        handler: &dyn MessageHandler,
        messages: Vec<ReceivedMessage>,
    ) -> ConsumeReport {
        let mut report = ConsumeReport {
            received: messages.len(),
            ..ConsumeReport::default()
        };
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut durations = 0.0;
        for message in messages {
            let started = Instant::now();
            let result = handler.handle(&message).await;
            durations += started.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(()) => done.push(message),
                Err(error) => failed.push((message, error)),
            }
        }
        let now = self.clock.now();
        let dead_letters: Vec<OutgoingMessage> = failed
            .iter()
            .map(|(message, error)| {
                dead_letter_for(
                    message,
                    error.clone(),
                    &self.name,
                    self.queue.queue_id(),
                    now,
                )
            })
            .collect();
        let mut to_delete: Vec<String> = done.iter().map(|m| m.receipt_handle.clone()).collect();
        let processed_handles = to_delete.len();
        if !dead_letters.is_empty() {
            let results = match self.sender.send(&self.dlq, &dead_letters).await {
                Ok(results) => results,
                Err(error) => vec![Err(error); dead_letters.len()],
            };
            for ((message, _), result) in failed.iter().zip(results) {
                match result {
                    Ok(_) => to_delete.push(message.receipt_handle.clone()),
                    Err(error) => {
                        tracing::warn!(message_id = %message.message_id, %error, "could not dead-letter; leaving it on the queue");
                        report.left_on_queue += 1;
                    }
                }
            }
        }
        if !to_delete.is_empty() {
            let results = match self.queue.delete(&to_delete).await {
                Ok(results) => results,
                Err(error) => vec![Err(error); to_delete.len()],
            };
            for (index, result) in results.into_iter().enumerate() {
                match (result.is_ok(), index < processed_handles) {
                    (true, true) => report.processed += 1,
                    (true, false) => report.dead_lettered += 1,
                    (false, _) => report.left_on_queue += 1,
                }
            }
        }
        let invocations = (report.processed + failed.len()) as f64;
        if invocations > 0.0 {
            self.metrics.record(
                now,
                &[
                    MetricEvent {
                        name: m::CONSUMER_INVOCATIONS,
                        class: None,
                        value: invocations,
                    },
                    MetricEvent {
                        name: m::CONSUMER_ERRORS,
                        class: None,
                        value: failed.len() as f64,
                    },
                    MetricEvent {
                        name: m::CONSUMER_DURATION_MS,
                        class: None,
                        value: durations / invocations,
                    },
                    MetricEvent {
                        name: m::PROCESSED,
                        class: None,
                        value: report.processed as f64,
                    },
                ],
            );
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::letter::OpenedLetter;
    use crate::message::Attributes;

    fn message(attribute_count: usize) -> ReceivedMessage {
        let mut attributes = Attributes::new();
        for i in 0..attribute_count {
            attributes.insert(format!("a{i}"), Attribute::string("v"));
        }
        ReceivedMessage {
            message_id: "m1".into(),
            receipt_handle: "r".into(),
            body: b"{\"order\":1}".to_vec(),
            attributes,
            receive_count: 1,
            redrive_source: None,
            sent_at: None,
            group_id: None,
        }
    }

    #[test]
    fn context_goes_in_an_attribute_while_a_slot_is_free() {
        let out = dead_letter_for(
            &message(9),
            ErrorInfo::message("boom"),
            "c",
            "orders",
            Utc::now(),
        );
        assert_eq!(out.attributes.len(), 10);
        assert_eq!(out.body, b"{\"order\":1}");
    }

    #[test]
    fn context_goes_in_an_envelope_when_all_slots_are_taken_and_opens_back() {
        let original = message(10);
        let out = dead_letter_for(
            &original,
            ErrorInfo::message("boom"),
            "c",
            "orders",
            Utc::now(),
        );
        assert_eq!(out.attributes, original.attributes);
        let received = ReceivedMessage {
            body: out.body,
            attributes: out.attributes,
            ..original.clone()
        };
        let opened = OpenedLetter::open(received);
        assert!(opened.enveloped);
        assert_eq!(opened.message.body, original.body);
        assert_eq!(opened.message.attributes, original.attributes);
        assert_eq!(opened.facts().error_message, "boom");
        assert_eq!(opened.source(), Some("orders"));
    }
}
