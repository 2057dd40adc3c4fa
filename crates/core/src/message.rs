//! The dead-letter message as the healer receives it, and the message it sends back out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The attribute that carries the failure context (see [`crate::context`]).
pub const CONTEXT_ATTRIBUTE: &str = "dlq-context";

/// SQS allows at most this many message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// One message attribute, shaped like SQS's: a data type and a string or binary value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// `String`, `Number`, `Binary`, optionally with a `.custom` suffix.
    pub data_type: String,
    /// The value of `String` and `Number` attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// The value of `Binary` attributes, base64 in JSON.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_b64::option"
    )]
    pub binary_value: Option<Vec<u8>>,
}

impl Attribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        Attribute {
            data_type: "String".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    /// The attribute's text, if it has one.
    pub fn as_str(&self) -> Option<&str> {
        self.string_value.as_deref()
    }
}

pub use crate::attributes::Attributes;

/// A message received from a queue: a dead letter when the queue is a DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's id for this message (new on every send).
    pub message_id: String,
    /// The handle that deletes or re-times this one delivery.
    pub receipt_handle: String,
    /// The raw body; not necessarily UTF-8.
    pub body: Vec<u8>,
    /// Message attributes, including `dlq-context` when the consumer wrote one.
    pub attributes: Attributes,
    /// How many times the queue has delivered this message (1 on first receive).
    pub receive_count: u32,
    /// The queue native redrive moved it from (`DeadLetterQueueSourceArn`), if any.
    pub redrive_source: Option<String>,
    /// When the message was first sent to the queue it was received from.
    pub sent_at: Option<DateTime<Utc>>,
    /// FIFO message group, kept on re-queue.
    pub group_id: Option<String>,
}

impl ReceivedMessage {
    /// The body as text, if it is valid UTF-8.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// A message to send to a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Caller's id for this entry, unique within one send batch.
    pub entry_id: String,
    /// The body to send.
    pub body: Vec<u8>,
    /// Attributes to send (at most [`MAX_ATTRIBUTES`]).
    pub attributes: Attributes,
    /// Seconds before the message becomes visible (0 to 900).
    pub delay_seconds: u32,
    /// FIFO message group.
    pub group_id: Option<String>,
    /// FIFO deduplication id.
    pub deduplication_id: Option<String>,
}

impl OutgoingMessage {
    /// A message with a body and nothing else.
    pub fn new(entry_id: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        OutgoingMessage {
            entry_id: entry_id.into(),
            body: body.into(),
            attributes: Attributes::new(),
            delay_seconds: 0,
            group_id: None,
            deduplication_id: None,
        }
    }
}
