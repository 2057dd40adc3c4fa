//! SQS behind the core queue ports: [`SqsQueue`] receives from one queue (the DLQ for the healer,
//! the main queue for a consumer) and [`SqsSender`] sends to any queue named by URL, ARN or name.
//!
//! Every batch call goes out in SQS's batch APIs, in chunks of at most 10 entries (and, for sends,
//! at most 1 MiB of payload per call), and its per-entry outcomes are mapped back to input order.
//! Limits SQS enforces late or an emulator does not enforce at all (attribute count, sizes,
//! delays, body characters) are checked here first, as entry errors that say what to change.

use crate::retry::{entry_error, port_error};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use chrono::{DateTime, TimeZone, Utc};
use dlq_healer_core::message::{
    Attribute, Attributes, MAX_ATTRIBUTES, OutgoingMessage, ReceivedMessage,
};
use dlq_healer_core::ports::{EntryResults, MessageSource, PortError, QueueSender};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// SQS returns at most this many messages per receive and takes at most this many batch entries.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// SQS's limit on one message and on one batch call's payload: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1_048_576;

/// SQS's longest long-poll wait, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 20;

/// SQS's longest per-message delay, in seconds.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// SQS's longest visibility timeout, in seconds (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// Whether a queue URL, ARN or name is a FIFO queue's.
pub fn is_fifo_queue(queue: &str) -> bool {
    queue.ends_with(".fifo")
}

/// One SQS queue to receive from, by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    fifo: bool,
}

impl SqsQueue {
    /// The queue at `url`; it is FIFO iff the URL ends with `.fifo`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        SqsQueue {
            fifo: is_fifo_queue(&url),
            client,
            url,
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The system attributes every receive asks for.
fn system_attribute_names() -> Vec<MessageSystemAttributeName> {
    vec![
        MessageSystemAttributeName::ApproximateReceiveCount,
        MessageSystemAttributeName::SentTimestamp,
        MessageSystemAttributeName::MessageGroupId,
        MessageSystemAttributeName::DeadLetterQueueSourceArn,
    ]
}

/// A core attribute from an SQS one. List values are reserved by SQS and never sent; they are
/// dropped.
fn attribute_from_sqs(value: &MessageAttributeValue) -> Attribute {
    Attribute {
        data_type: value.data_type().to_string(),
        string_value: value.string_value().map(str::to_string),
        binary_value: value.binary_value().map(|blob| blob.as_ref().to_vec()),
    }
}

/// An SQS attribute from a core one; `Binary` types carry bytes, `String` and `Number` text.
fn attribute_to_sqs(name: &str, attribute: &Attribute) -> Result<MessageAttributeValue, String> {
    let builder = MessageAttributeValue::builder().data_type(&attribute.data_type);
    let builder = if attribute.data_type.starts_with("Binary") {
        let bytes = attribute.binary_value.clone().ok_or_else(|| {
            format!(
                "attribute {name:?} of type {} has no binary value",
                attribute.data_type
            )
        })?;
        builder.binary_value(Blob::new(bytes))
    } else {
        let text = attribute.string_value.clone().ok_or_else(|| {
            format!(
                "attribute {name:?} of type {} has no string value",
                attribute.data_type
            )
        })?;
        builder.string_value(text)
    };
    builder
        .build()
        .map_err(|e| format!("attribute {name:?} cannot be built: {e}"))
}

fn millis_to_time(millis: &str) -> Option<DateTime<Utc>> {
    millis
        .parse::<i64>()
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

/// A core message from an SQS one; `None` when SQS left out the id or the receipt handle.
fn received_from_sqs(message: Message) -> Option<ReceivedMessage> {
    let system = message.attributes.unwrap_or_default();
    let attributes: Attributes = message
        .message_attributes
        .unwrap_or_default()
        .iter()
        .map(|(name, value)| (name.clone(), attribute_from_sqs(value)))
        .collect();
    Some(ReceivedMessage {
        message_id: message.message_id?,
        receipt_handle: message.receipt_handle?,
        body: message.body.unwrap_or_default().into_bytes(),
        attributes,
        receive_count: system
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|count| count.parse().ok())
            .unwrap_or(1),
        redrive_source: system
            .get(&MessageSystemAttributeName::DeadLetterQueueSourceArn)
            .cloned(),
        sent_at: system
            .get(&MessageSystemAttributeName::SentTimestamp)
            .and_then(|ms| millis_to_time(ms)),
        group_id: system
            .get(&MessageSystemAttributeName::MessageGroupId)
            .cloned(),
    })
}

/// Results of one batch, filled in chunk by chunk; entries SQS did not report on are errors.
struct BatchOutcome<T> {
    results: Vec<Option<Result<T, PortError>>>,
    call_errors: Vec<PortError>,
    calls: usize,
}

impl<T> BatchOutcome<T> {
    fn new(len: usize) -> Self {
        BatchOutcome {
            results: (0..len).map(|_| None).collect(),
            call_errors: Vec::new(),
            calls: 0,
        }
    }

    fn set(&mut self, index: usize, result: Result<T, PortError>) {
        if let Some(slot) = self.results.get_mut(index) {
            *slot = Some(result);
        }
    }

    /// Record the success of the entry with batch id `id` in a chunk whose entries are `chunk[i]`
    /// with id `e{i}`.
    fn succeeded(&mut self, chunk: &[usize], id: &str, value: T) {
        if let Some(&index) = entry_index(id).and_then(|i| chunk.get(i)) {
            self.set(index, Ok(value));
        }
    }

    /// Record the per-entry failures of a chunk whose entries are `chunk[i]` with id `e{i}`.
    fn failed(
        &mut self,
        chunk: &[usize],
        failed: &[BatchResultErrorEntry],
        operation: &str,
        target: &str,
    ) {
        for failure in failed {
            if let Some(&index) = entry_index(failure.id()).and_then(|i| chunk.get(i)) {
                self.set(
                    index,
                    Err(entry_error(
                        operation,
                        target,
                        failure.code(),
                        failure.message(),
                        failure.sender_fault(),
                    )),
                );
            }
        }
    }

    /// A whole chunk failed: every entry of it carries the error.
    fn chunk_failed(&mut self, chunk: &[usize], error: PortError) {
        for &index in chunk {
            self.set(index, Err(error.clone()));
        }
        self.call_errors.push(error);
    }

    /// One result per entry; `Err` when every call failed (nothing was done).
    fn finish(self, operation: &str, target: &str) -> Result<EntryResults<T>, PortError> {
        if self.calls > 0
            && self.call_errors.len() == self.calls
            && let Some(first) = self.call_errors.into_iter().next()
        {
            return Err(first);
        }
        Ok(self
            .results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(PortError::retryable(
                        operation,
                        target,
                        "SQS reported neither success nor failure for this entry; try again",
                    ))
                })
            })
            .collect())
    }
}

/// The batch entry id of the `index`-th entry of a chunk: SQS wants `[A-Za-z0-9_-]{1,80}`,
/// unique within the call, so ids are made here rather than taken from callers.
fn entry_id(index: usize) -> String {
    format!("e{index}")
}

fn entry_index(id: &str) -> Option<usize> {
    id.strip_prefix('e').and_then(|n| n.parse().ok())
}

#[async_trait]
impl MessageSource for SqsQueue {
    fn queue_id(&self) -> &str {
        &self.url
    }

    fn is_fifo(&self) -> bool {
        self.fifo
    }

    async fn visibility_timeout(&self) -> Result<Option<Duration>, PortError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| port_error("read the visibility timeout", &self.url, &e))?;
        let seconds = output
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::VisibilityTimeout));
        Ok(seconds
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .map(Duration::from_secs))
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, PortError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_BATCH_ENTRIES) as i32;
        let wait = wait.as_secs().min(MAX_WAIT_SECONDS) as i32;
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .message_attribute_names("All")
            .set_message_system_attribute_names(Some(system_attribute_names()))
            .send()
            .await
            .map_err(|e| port_error("receive", &self.url, &e))?;
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            match received_from_sqs(message) {
                Some(message) => received.push(message),
                None => tracing::warn!(
                    queue = %self.url,
                    "SQS returned a message without id or receipt handle; skipped (it will be redelivered)"
                ),
            }
        }
        Ok(received)
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<EntryResults<()>, PortError> {
        const OPERATION: &str = "delete";
        let mut outcome = BatchOutcome::new(receipt_handles.len());
        let mut valid = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            if handle.is_empty() {
                outcome.set(
                    index,
                    Err(PortError::permanent(
                        OPERATION,
                        &self.url,
                        "the receipt handle is empty",
                    )),
                );
            } else {
                valid.push(index);
            }
        }
        for chunk in valid.chunks(MAX_BATCH_ENTRIES) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, &index) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .receipt_handle(&receipt_handles[index])
                    .build()
                    .map_err(|e| PortError::permanent(OPERATION, &self.url, e.to_string()))?;
                entries.push(entry);
            }
            outcome.calls += 1;
            match self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    for ok in output.successful() {
                        outcome.succeeded(chunk, ok.id(), ());
                    }
                    outcome.failed(chunk, output.failed(), OPERATION, &self.url);
                }
                Err(error) => outcome.chunk_failed(chunk, port_error(OPERATION, &self.url, &error)),
            }
        }
        outcome.finish(OPERATION, &self.url)
    }

    async fn change_visibility(
        &self,
        entries: &[(String, u32)],
    ) -> Result<EntryResults<()>, PortError> {
        const OPERATION: &str = "change visibility";
        let mut outcome = BatchOutcome::new(entries.len());
        let mut valid = Vec::new();
        for (index, (handle, seconds)) in entries.iter().enumerate() {
            if handle.is_empty() {
                outcome.set(
                    index,
                    Err(PortError::permanent(
                        OPERATION,
                        &self.url,
                        "the receipt handle is empty",
                    )),
                );
            } else if *seconds > MAX_VISIBILITY_SECONDS {
                outcome.set(
                    index,
                    Err(PortError::permanent(
                        OPERATION,
                        &self.url,
                        format!("a visibility timeout of {seconds} s is over SQS's maximum of {MAX_VISIBILITY_SECONDS} s (12 hours)"),
                    )),
                );
            } else {
                valid.push(index);
            }
        }
        for chunk in valid.chunks(MAX_BATCH_ENTRIES) {
            let mut batch = Vec::with_capacity(chunk.len());
            for (i, &index) in chunk.iter().enumerate() {
                let (handle, seconds) = &entries[index];
                let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(entry_id(i))
                    .receipt_handle(handle)
                    .visibility_timeout(*seconds as i32)
                    .build()
                    .map_err(|e| PortError::permanent(OPERATION, &self.url, e.to_string()))?;
                batch.push(entry);
            }
            outcome.calls += 1;
            match self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(batch))
                .send()
                .await
            {
                Ok(output) => {
                    for ok in output.successful() {
                        outcome.succeeded(chunk, ok.id(), ());
                    }
                    outcome.failed(chunk, output.failed(), OPERATION, &self.url);
                }
                Err(error) => outcome.chunk_failed(chunk, port_error(OPERATION, &self.url, &error)),
            }
        }
        outcome.finish(OPERATION, &self.url)
    }
}

/// Sends to SQS queues named by URL (used as is), ARN (`arn:aws:sqs:<region>:<account>:<name>`)
/// or name; ARNs and names are resolved once with `GetQueueUrl` (in the client's region) and
/// cached. To a FIFO queue it passes the group and deduplication ids and no delay (FIFO queues
/// have no per-message delays).
#[derive(Debug)]
pub struct SqsSender {
    client: Client,
    urls: Mutex<HashMap<String, String>>,
}

/// How a queue was named.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueueName<'a> {
    Url(&'a str),
    Arn { account: &'a str, name: &'a str },
    Name(&'a str),
}

fn parse_queue_name(queue: &str) -> Result<QueueName<'_>, String> {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return Ok(QueueName::Url(queue));
    }
    if let Some(rest) = queue.strip_prefix("arn:") {
        // partition:service:region:account:name
        let parts: Vec<&str> = rest.split(':').collect();
        return match parts.as_slice() {
            [_partition, "sqs", _region, account, name]
                if !account.is_empty() && !name.is_empty() =>
            {
                Ok(QueueName::Arn { account, name })
            }
            _ => Err(format!(
                "{queue:?} is not an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)"
            )),
        };
    }
    if queue.is_empty() {
        return Err("the queue name is empty".to_string());
    }
    Ok(QueueName::Name(queue))
}

/// The SQS payload size of a message: its body plus every attribute's name, type and value.
pub fn payload_size(message: &OutgoingMessage) -> usize {
    message.body.len()
        + message
            .attributes
            .iter()
            .map(|(name, attribute)| {
                name.len()
                    + attribute.data_type.len()
                    + attribute.string_value.as_ref().map_or(0, String::len)
                    + attribute.binary_value.as_ref().map_or(0, Vec::len)
            })
            .sum::<usize>()
}

/// Whether SQS accepts this character in a body: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
/// #x10000-#x10FFFF`.
fn sqs_allows(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Why SQS would refuse this message, if it would; `fifo` says the target queue is FIFO.
fn refusal(message: &OutgoingMessage, fifo: bool) -> Option<String> {
    if message.attributes.len() > MAX_ATTRIBUTES {
        return Some(format!(
            "the message has {} attributes; SQS allows at most {MAX_ATTRIBUTES} per message — move the rest into the body",
            message.attributes.len()
        ));
    }
    let size = payload_size(message);
    if size > MAX_PAYLOAD_BYTES {
        return Some(format!(
            "the message is {size} bytes with its attributes; SQS allows at most {MAX_PAYLOAD_BYTES} (1 MiB) — store the payload elsewhere and send a reference"
        ));
    }
    if !fifo && message.delay_seconds > MAX_DELAY_SECONDS {
        return Some(format!(
            "a delay of {} s is over SQS's maximum of {MAX_DELAY_SECONDS} s; park the message instead",
            message.delay_seconds
        ));
    }
    let Ok(body) = std::str::from_utf8(&message.body) else {
        return Some(
            "the body is not UTF-8; SQS bodies are text — encode binary payloads (e.g. base64)"
                .to_string(),
        );
    };
    if let Some(bad) = body.chars().find(|&c| !sqs_allows(c)) {
        return Some(format!(
            "the body contains the character U+{:04X}, which SQS does not allow in a message",
            bad as u32
        ));
    }
    if fifo && message.group_id.is_none() {
        return Some("a FIFO queue needs a message group id".to_string());
    }
    None
}

fn request_entry(
    id: String,
    message: &OutgoingMessage,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, String> {
    let body =
        std::str::from_utf8(&message.body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(id)
        .message_body(body);
    for (name, attribute) in &message.attributes {
        entry = entry.message_attributes(name, attribute_to_sqs(name, attribute)?);
    }
    if fifo {
        entry = entry
            .set_message_group_id(message.group_id.clone())
            .set_message_deduplication_id(message.deduplication_id.clone());
    } else if message.delay_seconds > 0 {
        entry = entry.delay_seconds(message.delay_seconds as i32);
    }
    entry.build().map_err(|e| e.to_string())
}

/// Split `indexes` into chunks of at most 10 entries and at most 1 MiB of payload each.
fn send_chunks(messages: &[OutgoingMessage], indexes: &[usize]) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_size = 0;
    for &index in indexes {
        let size = payload_size(&messages[index]);
        if !current.is_empty()
            && (current.len() == MAX_BATCH_ENTRIES || current_size + size > MAX_PAYLOAD_BYTES)
        {
            chunks.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(index);
        current_size += size;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

impl SqsSender {
    /// A sender on `client`.
    pub fn new(client: Client) -> Self {
        SqsSender {
            client,
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The URL of a queue named by URL, ARN or name; a queue that does not exist is a permanent
    /// error.
    pub async fn resolve(&self, queue: &str) -> Result<String, PortError> {
        const OPERATION: &str = "resolve queue";
        let name =
            parse_queue_name(queue).map_err(|e| PortError::permanent(OPERATION, queue, e))?;
        let (queue_name, owner) = match name {
            QueueName::Url(url) => return Ok(url.to_string()),
            QueueName::Arn { account, name } => (name, Some(account)),
            QueueName::Name(name) => (name, None),
        };
        if let Some(url) = self
            .urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
        {
            return Ok(url.clone());
        }
        let output = self
            .client
            .get_queue_url()
            .queue_name(queue_name)
            .set_queue_owner_aws_account_id(owner.map(str::to_string))
            .send()
            .await
            .map_err(|e| port_error(OPERATION, queue, &e))?;
        let url = output.queue_url.ok_or_else(|| {
            PortError::retryable(OPERATION, queue, "SQS answered GetQueueUrl without a URL")
        })?;
        self.urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_string(), url.clone());
        Ok(url)
    }
}

#[async_trait]
impl QueueSender for SqsSender {
    async fn send(
        &self,
        queue: &str,
        messages: &[OutgoingMessage],
    ) -> Result<EntryResults<String>, PortError> {
        const OPERATION: &str = "send";
        let url = self.resolve(queue).await?;
        let fifo = is_fifo_queue(&url);
        let mut outcome = BatchOutcome::new(messages.len());
        let mut valid = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match refusal(message, fifo) {
                Some(reason) => outcome.set(
                    index,
                    Err(PortError::permanent(
                        OPERATION,
                        &url,
                        format!("entry {:?}: {reason}", message.entry_id),
                    )),
                ),
                None => valid.push(index),
            }
        }
        for chunk in send_chunks(messages, &valid) {
            let mut entries = Vec::with_capacity(chunk.len());
            let mut sendable = Vec::with_capacity(chunk.len());
            for (i, &index) in chunk.iter().enumerate() {
                match request_entry(entry_id(i), &messages[index], fifo) {
                    Ok(entry) => {
                        entries.push(entry);
                        sendable.push(index);
                    }
                    Err(reason) => outcome.set(
                        index,
                        Err(PortError::permanent(
                            OPERATION,
                            &url,
                            format!("entry {:?}: {reason}", messages[index].entry_id),
                        )),
                    ),
                }
            }
            if entries.is_empty() {
                continue;
            }
            // Ids are positions in `chunk`; an entry refused just above leaves its id unused.
            outcome.calls += 1;
            match self
                .client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    for ok in output.successful() {
                        outcome.succeeded(&chunk, ok.id(), ok.message_id().to_string());
                    }
                    outcome.failed(&chunk, output.failed(), OPERATION, &url);
                }
                Err(error) => outcome.chunk_failed(&sendable, port_error(OPERATION, &url, &error)),
            }
        }
        outcome.finish(OPERATION, &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_told_apart() {
        assert_eq!(
            parse_queue_name("https://sqs.us-east-1.amazonaws.com/1/q"),
            Ok(QueueName::Url("https://sqs.us-east-1.amazonaws.com/1/q"))
        );
        assert_eq!(
            parse_queue_name("arn:aws:sqs:eu-west-1:123456789012:orders.fifo"),
            Ok(QueueName::Arn {
                account: "123456789012",
                name: "orders.fifo"
            })
        );
        assert_eq!(parse_queue_name("orders"), Ok(QueueName::Name("orders")));
        assert!(parse_queue_name("arn:aws:sns:eu-west-1:1:topic").is_err());
        assert!(parse_queue_name("arn:aws:sqs:eu-west-1::q").is_err());
        assert!(parse_queue_name("").is_err());
    }

    #[test]
    fn chunks_hold_at_most_ten_entries_and_one_mebibyte() {
        let small: Vec<OutgoingMessage> = (0..23)
            .map(|i| OutgoingMessage::new(format!("m{i}"), b"x".to_vec()))
            .collect();
        let all: Vec<usize> = (0..small.len()).collect();
        let sizes: Vec<usize> = send_chunks(&small, &all).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 3]);

        let big: Vec<OutgoingMessage> = (0..5)
            .map(|i| OutgoingMessage::new(format!("b{i}"), vec![b'x'; 400_000]))
            .collect();
        let all: Vec<usize> = (0..big.len()).collect();
        let chunks = send_chunks(&big, &all);
        assert_eq!(chunks, vec![vec![0, 1], vec![2, 3], vec![4]]);
        for chunk in chunks {
            let total: usize = chunk.iter().map(|&i| payload_size(&big[i])).sum();
            assert!(total <= MAX_PAYLOAD_BYTES);
        }
    }

    #[test]
    fn refusals_name_the_limit() {
        let mut crowded = OutgoingMessage::new("c", b"x".to_vec());
        for i in 0..11 {
            crowded
                .attributes
                .insert(format!("a{i}"), Attribute::string("v"));
        }
        assert!(refusal(&crowded, false).is_some_and(|r| r.contains("at most 10")));
        let huge = OutgoingMessage::new("h", vec![b'x'; MAX_PAYLOAD_BYTES + 1]);
        assert!(refusal(&huge, false).is_some_and(|r| r.contains("1 MiB")));
        let exact = OutgoingMessage::new("e", vec![b'x'; MAX_PAYLOAD_BYTES]);
        assert_eq!(refusal(&exact, false), None);
        let late = OutgoingMessage {
            delay_seconds: 901,
            ..OutgoingMessage::new("l", b"x".to_vec())
        };
        assert!(refusal(&late, false).is_some());
        let binary = OutgoingMessage::new("b", vec![0xff, 0xfe]);
        assert!(refusal(&binary, false).is_some_and(|r| r.contains("UTF-8")));
        let control = OutgoingMessage::new("n", b"a\x00b".to_vec());
        assert!(refusal(&control, false).is_some_and(|r| r.contains("U+0000")));
        let groupless = OutgoingMessage::new("g", b"x".to_vec());
        assert!(refusal(&groupless, true).is_some_and(|r| r.contains("group")));
    }

    #[test]
    fn system_timestamps_are_milliseconds() {
        let at = millis_to_time("1764200000123").map(|t| t.timestamp_millis());
        assert_eq!(at, Some(1_764_200_000_123));
        assert_eq!(millis_to_time("soon"), None);
    }
}
