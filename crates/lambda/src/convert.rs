//! SQS event records (as the event source mapping delivers them) to core messages, and message
//! ids back to a partial batch response.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage, SqsMessageAttribute};
use chrono::{DateTime, Utc};
use dlq_healer_core::message::{Attribute, Attributes, ReceivedMessage};

/// A record the handler cannot work on: it goes back to the queue as a batch item failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record has no `messageId`, so it cannot even be reported by id.
    #[error("SQS record {index} of the event has no messageId")]
    NoMessageId {
        /// Position of the record in the event.
        index: usize,
    },
    /// The record has no `receiptHandle`, so its visibility cannot be changed.
    #[error("SQS record {message_id} has no receiptHandle")]
    NoReceiptHandle {
        /// The record's message id.
        message_id: String,
    },
}

impl RecordError {
    /// The id to report as a batch item failure. An empty id makes Lambda retry the whole batch,
    /// which is the safe answer for a record we cannot name.
    pub fn item_identifier(&self) -> String {
        match self {
            RecordError::NoMessageId { .. } => String::new(),
            RecordError::NoReceiptHandle { message_id } => message_id.clone(),
        }
    }
}

/// The SQS system attribute naming the queue native redrive moved a message from.
pub const REDRIVE_SOURCE_ATTRIBUTE: &str = "DeadLetterQueueSourceArn";

/// Convert one event record. System attributes give the receive count, the sent time, the
/// redrive source and the FIFO group; message attributes keep their data type, and binary values
/// arrive already decoded from base64.
pub fn received_message(index: usize, record: &SqsMessage) -> Result<ReceivedMessage, RecordError> {
    let message_id = record
        .message_id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or(RecordError::NoMessageId { index })?;
    let receipt_handle = record
        .receipt_handle
        .clone()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| RecordError::NoReceiptHandle {
            message_id: message_id.clone(),
        })?;
    let system = &record.attributes;
    let receive_count = match system.get("ApproximateReceiveCount") {
        Some(text) => text.parse().unwrap_or_else(|_| {
            tracing::warn!(%message_id, value = %text, "ApproximateReceiveCount is not a number; taking 1");
            1
        }),
        None => 1,
    };
    let sent_at = system
        .get("SentTimestamp")
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    Ok(ReceivedMessage {
        message_id,
        receipt_handle,
        body: record.body.clone().unwrap_or_default().into_bytes(),
        attributes: message_attributes(record),
        receive_count,
        redrive_source: system.get(REDRIVE_SOURCE_ATTRIBUTE).cloned(),
        sent_at,
        group_id: system.get("MessageGroupId").cloned(),
    })
}

fn message_attributes(record: &SqsMessage) -> Attributes {
    record
        .message_attributes
        .iter()
        .map(|(name, attribute)| (name.clone(), attribute_of(attribute)))
        .collect()
}

/// One message attribute. The data type (`String`, `Number`, `Binary`, each with an optional
/// `.custom` suffix) decides which value is kept; a record without a type is typed by its value.
pub fn attribute_of(attribute: &SqsMessageAttribute) -> Attribute {
    let binary = attribute.binary_value.as_ref().map(|b| b.0.clone());
    let data_type = attribute.data_type.clone().unwrap_or_else(|| {
        if binary.is_some() && attribute.string_value.is_none() {
            "Binary".to_string()
        } else {
            "String".to_string()
        }
    });
    if data_type.starts_with("Binary") {
        Attribute {
            data_type,
            string_value: None,
            binary_value: Some(binary.unwrap_or_default()),
        }
    } else {
        Attribute {
            data_type,
            string_value: Some(attribute.string_value.clone().unwrap_or_default()),
            binary_value: None,
        }
    }
}

/// A partial batch response reporting `failed` message ids; an empty list acknowledges the batch.
pub fn batch_response<I, S>(failed: I) -> SqsBatchResponse
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut response = SqsBatchResponse::default();
    response.set_failures(failed);
    response
}
