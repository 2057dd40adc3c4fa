//! Opening a received dead letter: unwrap a body envelope, take out the failure context, find the
//! source, and compute what the rules and the ledger need.
//!
//! The body envelope carries the context when a message has no free attribute slot:
//! `{"dlq-envelope":1,"body":"<original>"|"body_b64":"...","context":{...}}`. The key is written
//! first, so a body can be recognised without parsing it.

use crate::context::{ContextReading, FailureContext};
use crate::message::{Attributes, CONTEXT_ATTRIBUTE, ReceivedMessage};
use crate::rules::Facts;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

const ENVELOPE_PREFIX: &[u8] = b"{\"dlq-envelope\":";

/// The longest message key taken from a context, in bytes. The healer's keys are message ids
/// (SQS's have 36 bytes, the local backend's fewer); the ledger keeps keys in DynamoDB partition
/// keys, which take at most 2,048 bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Whether `key`, from a context, can be a ledger key: not empty, at most [`MAX_KEY_BYTES`], no
/// control characters. One that cannot would fail the ledger write of its whole batch.
pub fn is_usable_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control)
}

#[derive(Serialize, Deserialize)]
struct BodyEnvelope {
    #[serde(rename = "dlq-envelope")]
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_b64: Option<String>,
    context: Value,
}

/// Wrap a body and its context into an envelope body.
pub fn wrap_in_envelope(body: &[u8], context: &FailureContext) -> Vec<u8> {
    let (text, b64) = match std::str::from_utf8(body) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(crate::serde_b64::encode(body))),
    };
    let envelope = BodyEnvelope {
        version: 1,
        body: text,
        body_b64: b64,
        context: serde_json::to_value(context).expect("a failure context always serializes"),
    };
    serde_json::to_vec(&envelope).expect("an envelope always serializes")
}

/// A dead letter taken apart for the rules and the engine.
#[derive(Debug, Clone)]
pub struct OpenedLetter {
    /// The message with its original body and attributes (no `dlq-context`, no envelope).
    pub message: ReceivedMessage,
    /// What reading the context found.
    pub context: ContextReading,
    /// The context text as received (kept as text: it is only needed when archiving).
    pub context_text: Option<String>,
    /// Whether the context came in a body envelope.
    pub enveloped: bool,
}

impl OpenedLetter {
    /// Take a received message apart. Never fails: whatever is wrong becomes a fact.
    pub fn open(mut message: ReceivedMessage) -> OpenedLetter {
        let mut enveloped = false;
        let mut context_text = None;
        let mut context = ContextReading::Missing;
        if message.body.starts_with(ENVELOPE_PREFIX)
            && let Ok(envelope) = serde_json::from_slice::<BodyEnvelope>(&message.body)
        {
            let original = match (envelope.body, envelope.body_b64) {
                (Some(text), _) => Some(text.into_bytes()),
                (None, Some(b64)) => crate::serde_b64::decode(&b64).ok(),
                (None, None) => Some(Vec::new()),
            };
            if let Some(original) = original {
                message.body = original;
                enveloped = true;
                context_text = Some(envelope.context.to_string());
                context = ContextReading::from_value(envelope.context);
            }
        }
        // The attribute is always taken out; an envelope's context wins over it.
        if let Some(attribute) = message.attributes.remove(CONTEXT_ATTRIBUTE)
            && !enveloped
        {
            match attribute.string_value {
                Some(text) => {
                    context = ContextReading::parse(&text);
                    context_text = Some(text);
                }
                None => {
                    context = ContextReading::Corrupt(format!(
                        "dlq-context is a {} attribute with no string value",
                        attribute.data_type
                    ));
                }
            }
        }
        OpenedLetter {
            message,
            context,
            context_text,
            enveloped,
        }
    }

    /// The source queue: from the context, else from native redrive.
    pub fn source(&self) -> Option<&str> {
        self.context
            .context()
            .and_then(|c| c.source.as_deref())
            .or(self.message.redrive_source.as_deref())
    }

    /// The context as received, for the archive: its JSON, or its text when it is not JSON.
    pub fn raw_context(&self) -> Option<Value> {
        self.context_text
            .as_ref()
            .map(|text| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())))
    }

    /// The facts the rules look at.
    pub fn facts(&self) -> Facts<'_> {
        let error = self.context.context().map(|c| &c.error);
        Facts {
            body: &self.message.body,
            error_type: error.and_then(|e| e.error_type.as_deref()),
            error_message: error.map_or("", |e| e.message.as_str()),
            status: error.and_then(|e| e.status),
            attributes: &self.message.attributes,
            source: self.source(),
            receive_count: self.message.receive_count,
            context: self.context.state(),
        }
    }

    /// The key the context carries, if the healer has handled this message before. A key the
    /// healer cannot have written (see [`is_usable_key`]) is no key: the message gets one of its
    /// own, as a message without a context does.
    pub fn context_key(&self) -> Option<&str> {
        let key = self.context.context()?.heal.as_ref()?.key.as_str();
        is_usable_key(key).then_some(key)
    }

    /// Re-queues recorded in the context.
    pub fn context_attempts(&self) -> u32 {
        self.context
            .context()
            .and_then(|c| c.heal.as_ref())
            .map_or(0, |h| h.attempts)
    }

    /// The error text, or the reason the context is unusable, or a note that there is none (see
    /// [`ContextReading::error_text`]).
    pub fn error_text(&self) -> String {
        self.context.error_text()
    }

    /// The original attributes (without `dlq-context`).
    pub fn attributes(&self) -> &Attributes {
        &self.message.attributes
    }
}

/// A short hex digest of a body, to recognise a message whose context was stripped.
pub fn body_digest(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digest = String::with_capacity(32);
    for &b in &Sha256::digest(body)[..16] {
        digest.push(char::from(HEX[usize::from(b >> 4)]));
        digest.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{ContextState, ErrorInfo};
    use crate::message::Attribute;
    use chrono::Utc;

    fn message(body: &[u8], attributes: Attributes) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m1".into(),
            receipt_handle: "r1".into(),
            body: body.to_vec(),
            attributes,
            receive_count: 1,
            redrive_source: Some("arn:aws:sqs:us-east-1:1:orders".into()),
            sent_at: None,
            group_id: None,
        }
    }

    #[test]
    fn envelope_round_trips_text_and_binary_bodies() {
        let mut context = FailureContext::new(ErrorInfo::message("boom"), Utc::now());
        context.source = Some("orders".into());
        for body in [&b"{\"order\":1}"[..], &[0xff, 0x00, 0xfe][..], &b""[..]] {
            let wrapped = wrap_in_envelope(body, &context);
            let opened = OpenedLetter::open(message(&wrapped, Attributes::new()));
            assert!(opened.enveloped);
            assert_eq!(opened.message.body, body);
            assert_eq!(opened.context.state(), ContextState::Valid);
            assert_eq!(opened.source(), Some("orders"));
        }
    }

    #[test]
    fn context_attribute_is_taken_out_and_source_falls_back_to_redrive() {
        let mut attributes = Attributes::new();
        attributes.insert(CONTEXT_ATTRIBUTE.into(), Attribute::string("{broken"));
        attributes.insert("tenant".into(), Attribute::string("a"));
        let opened = OpenedLetter::open(message(b"{}", attributes));
        assert_eq!(opened.context.state(), ContextState::Corrupt);
        assert_eq!(opened.raw_context(), Some(Value::String("{broken".into())));
        assert_eq!(opened.attributes().len(), 1);
        assert_eq!(opened.source(), Some("arn:aws:sqs:us-east-1:1:orders"));

        let plain = OpenedLetter::open(message(b"{\"dlq-envelope\": nope", Attributes::new()));
        assert!(!plain.enveloped);
        assert_eq!(plain.context.state(), ContextState::Missing);
        assert!(plain.error_text().contains("no dlq-context"));
    }

    #[test]
    fn the_error_text_names_the_type_once() {
        let text_of = |error_type: &str, text: &str| {
            let error = ErrorInfo {
                error_type: Some(error_type.into()),
                ..ErrorInfo::message(text)
            };
            let context = FailureContext::new(error, Utc::now());
            let mut attributes = Attributes::new();
            attributes.insert(
                CONTEXT_ATTRIBUTE.into(),
                Attribute::string(serde_json::to_string(&context).unwrap()),
            );
            OpenedLetter::open(message(b"{}", attributes)).error_text()
        };
        assert_eq!(
            text_of(
                "ExpiredTokenException",
                "ExpiredTokenException: token expired"
            ),
            "ExpiredTokenException: token expired"
        );
        assert_eq!(
            text_of("TimeoutError", "read timed out"),
            "TimeoutError: read timed out"
        );
        assert_eq!(text_of("TimeoutError", ""), "TimeoutError");
    }

    #[test]
    fn binary_context_attribute_is_corrupt() {
        let mut attributes = Attributes::new();
        attributes.insert(
            CONTEXT_ATTRIBUTE.into(),
            Attribute {
                data_type: "Binary".into(),
                string_value: None,
                binary_value: Some(vec![1, 2]),
            },
        );
        let opened = OpenedLetter::open(message(b"{}", attributes));
        assert_eq!(opened.context.state(), ContextState::Corrupt);
    }

    #[test]
    fn body_digests_are_the_first_half_of_sha256_in_lowercase_hex() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(body_digest(b"abc"), "ba7816bf8f01cfea414140de5dae2223");
    }
}
