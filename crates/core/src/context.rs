//! The `dlq-context` failure context: what failed, where and when, written by the consumer that
//! gave up on a message, and the `heal` block the healer adds when it re-queues.
//!
//! It is a public wire contract (JSON in one String attribute, or in a body envelope when no
//! attribute slot is free), so reading it never fails hard: a context that is missing, corrupt or
//! of a version we do not know is reported as such and becomes a fact the rules can match.

use crate::class::FailureClass;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The context version this build writes and reads.
pub const CONTEXT_VERSION: u64 = 1;

/// Error messages longer than this are truncated when a context is written.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Stack traces longer than this are truncated when a context is written.
pub const MAX_STACK_BYTES: usize = 16 * 1024;

/// The failure context of one dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureContext {
    /// Contract version; always [`CONTEXT_VERSION`] when written by this build.
    pub v: u64,
    /// The error that made the consumer give up.
    pub error: ErrorInfo,
    /// The queue (URL, ARN or local name) the message came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Name of the consumer that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// When the consumer gave up.
    pub failed_at: DateTime<Utc>,
    /// Trace id, for finding the failure in traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Link to the consumer's logs for this failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// Written by the healer when it re-queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<HealState>,
    /// Fields this build does not know; kept and written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The error part of a failure context.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Exception class or error code, e.g. `TimeoutError`, `ExpiredTokenException`, `ECONNREFUSED`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The error text; may be empty.
    pub message: String,
    /// HTTP status of the failed call, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Stack trace, if the consumer had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Fields this build does not know.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// What the healer has done with this message so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealState {
    /// The stable message key (see [`crate::key`]).
    pub key: String,
    /// How many times the healer has re-queued it.
    pub attempts: u32,
    /// When it first failed.
    pub first_failed_at: DateTime<Utc>,
    /// The class of the last failure.
    pub last_class: FailureClass,
    /// Fields this build does not know.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// What reading a message's context found.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextReading {
    /// No context: e.g. the message was dead-lettered by native SQS redrive.
    Missing,
    /// A context this build understands.
    Valid(Box<FailureContext>),
    /// A context whose version this build does not know.
    UnsupportedVersion(Value),
    /// A context that is not JSON, is truncated, or has fields of the wrong type.
    Corrupt(String),
}

/// The coarse state of a context, as rules match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextState {
    /// See [`ContextReading::Missing`].
    Missing,
    /// See [`ContextReading::Valid`].
    Valid,
    /// See [`ContextReading::UnsupportedVersion`].
    UnsupportedVersion,
    /// See [`ContextReading::Corrupt`].
    Corrupt,
}

impl ContextReading {
    /// Read a context from its JSON text.
    pub fn parse(text: &str) -> ContextReading {
        // Fast path: a well-formed version-1 context parses in one pass.
        if let Ok(context) = serde_json::from_str::<FailureContext>(text) {
            if context.v == CONTEXT_VERSION {
                return ContextReading::Valid(Box::new(context));
            }
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                return ContextReading::Corrupt(format!("dlq-context is not valid JSON: {e}"));
            }
        };
        Self::from_value(value)
    }

    /// Read a context from an already parsed JSON value.
    pub fn from_value(value: Value) -> ContextReading {
        let Some(object) = value.as_object() else {
            return ContextReading::Corrupt("dlq-context is not a JSON object".into());
        };
        match object.get("v") {
            Some(v) if v.as_u64() == Some(CONTEXT_VERSION) => {}
            Some(v) => return ContextReading::UnsupportedVersion(v.clone()),
            None => {
                return ContextReading::Corrupt("dlq-context has no version field \"v\"".into());
            }
        }
        match serde_json::from_value::<FailureContext>(value) {
            Ok(context) => ContextReading::Valid(Box::new(context)),
            Err(e) => ContextReading::Corrupt(format!("dlq-context does not fit version 1: {e}")),
        }
    }

    /// The coarse state of this reading.
    pub fn state(&self) -> ContextState {
        match self {
            ContextReading::Missing => ContextState::Missing,
            ContextReading::Valid(_) => ContextState::Valid,
            ContextReading::UnsupportedVersion(_) => ContextState::UnsupportedVersion,
            ContextReading::Corrupt(_) => ContextState::Corrupt,
        }
    }

    /// The context, when it is valid.
    pub fn context(&self) -> Option<&FailureContext> {
        match self {
            ContextReading::Valid(context) => Some(context),
            _ => None,
        }
    }

    /// Why the context could not be used, for archive records and alerts.
    pub fn problem(&self) -> Option<String> {
        match self {
            ContextReading::Missing | ContextReading::Valid(_) => None,
            ContextReading::UnsupportedVersion(v) => Some(format!(
                "dlq-context has version {v}, this healer reads version {CONTEXT_VERSION}"
            )),
            ContextReading::Corrupt(reason) => Some(reason.clone()),
        }
    }
}

impl FailureContext {
    /// A new version-1 context for an error, with long texts truncated.
    pub fn new(error: ErrorInfo, failed_at: DateTime<Utc>) -> Self {
        FailureContext {
            v: CONTEXT_VERSION,
            error: error.truncated(),
            source: None,
            consumer: None,
            failed_at,
            trace_id: None,
            log_url: None,
            heal: None,
            extra: BTreeMap::new(),
        }
    }

    /// The context as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a failure context always serializes")
    }
}

impl ErrorInfo {
    /// An error with a message and nothing else.
    pub fn message(message: impl Into<String>) -> Self {
        ErrorInfo {
            message: message.into(),
            ..ErrorInfo::default()
        }
    }

    /// This error with message and stack cut to the contract's limits.
    pub fn truncated(mut self) -> Self {
        self.message = truncate_with_marker(self.message, MAX_MESSAGE_BYTES);
        self.stack = self.stack.map(|s| truncate_with_marker(s, MAX_STACK_BYTES));
        self
    }
}

/// Cut `text` to at most `limit` bytes on a character boundary, saying how much was cut.
pub fn truncate_with_marker(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let marker_room = 40;
    let mut cut = limit.saturating_sub(marker_room);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    format!("{}…[truncated {dropped} bytes]", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> &'static str {
        r#"{"v": 1,
 "error": {"type": "TimeoutError", "message": "Task timed out after 30.00 seconds",
           "status": 504, "stack": "...", "retryable": true},
 "source": "orders", "consumer": "orders-consumer", "failed_at": "2026-11-27T10:15:01Z",
 "trace_id": "t-1", "log_url": "https://logs/1", "team": "payments",
 "heal": {"key": "k-1", "attempts": 2, "first_failed_at": "2026-11-27T10:00:00Z", "last_class": "timeout"}}"#
    }

    #[test]
    fn reads_the_documented_example_and_keeps_unknown_fields() {
        let reading = ContextReading::parse(sample());
        let context = reading.context().expect("valid");
        assert_eq!(context.error.error_type.as_deref(), Some("TimeoutError"));
        assert_eq!(context.error.status, Some(504));
        assert_eq!(context.heal.as_ref().unwrap().attempts, 2);
        assert_eq!(context.extra["team"], "payments");
        assert_eq!(context.error.extra["retryable"], true);
        let again = ContextReading::parse(&context.to_json());
        assert_eq!(again.context(), Some(context));
    }

    #[test]
    fn minimal_context_needs_only_v_message_and_time() {
        let reading = ContextReading::parse(
            r#"{"v":1,"error":{"message":""},"failed_at":"2026-01-01T00:00:00Z"}"#,
        );
        assert_eq!(reading.state(), ContextState::Valid);
    }

    #[test]
    fn bad_contexts_are_facts_not_panics() {
        let cases = [
            ("", ContextState::Corrupt),
            (
                "{\"v\":1,\"error\":{\"message\":\"trunc",
                ContextState::Corrupt,
            ),
            ("[1,2]", ContextState::Corrupt),
            ("{\"error\":{\"message\":\"x\"}}", ContextState::Corrupt),
            ("{\"v\":2,\"error\":{}}", ContextState::UnsupportedVersion),
            ("{\"v\":\"1\"}", ContextState::UnsupportedVersion),
            (
                r#"{"v":1,"error":{"message":"x","status":"five hundred"},"failed_at":"2026-01-01T00:00:00Z"}"#,
                ContextState::Corrupt,
            ),
            (
                r#"{"v":1,"error":{"message":42},"failed_at":"2026-01-01T00:00:00Z"}"#,
                ContextState::Corrupt,
            ),
            (
                r#"{"v":1,"error":{"message":"x"},"failed_at":"yesterday"}"#,
                ContextState::Corrupt,
            ),
        ];
        for (text, state) in cases {
            let reading = ContextReading::parse(text);
            assert_eq!(reading.state(), state, "{text}");
            if state != ContextState::Valid {
                assert!(reading.problem().is_some());
            }
        }
    }

    #[test]
    fn truncation_keeps_char_boundaries_and_says_so() {
        let long = "é".repeat(5000);
        let cut = truncate_with_marker(long.clone(), 100);
        assert!(cut.len() <= 100 + "…[truncated 10000 bytes]".len());
        assert!(cut.contains("…[truncated"));
        assert_eq!(truncate_with_marker("short".into(), 100), "short");
    }
}
