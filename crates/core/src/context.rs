//! The `dlq-context` failure context: what failed, where and when, written by the consumer that
//! gave up on a message, and the `heal` block the healer adds when it re-queues.
//!
//! It is a public wire contract (JSON in one String attribute, or in a body envelope when no
//! attribute slot is free), so reading it never fails hard: a context that is missing, corrupt or
//! of a version we do not know is reported as such and becomes a fact the rules can match.

use crate::class::FailureClass;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The context version this build writes and reads.
pub const CONTEXT_VERSION: u64 = 1;

/// Error messages longer than this are truncated when a context is written.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Stack traces longer than this are truncated when a context is written.
pub const MAX_STACK_BYTES: usize = 16 * 1024;

/// The failure context of one dead letter.
///
/// Its `Deserialize` impl (and those of [`ErrorInfo`] and [`HealState`]) is written by hand
/// rather than derived: the derived reader goes through serde's buffering for flattened maps,
/// and reading contexts is on the classification hot path. It reads the same fields with the
/// same types and requirements; unknown fields go to `extra`. Errors name the field that is
/// wrong by its path, e.g. ``field `error.status`: invalid type: string "x", expected u16``.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

// Reading. Each reader matches the known keys (borrowed from the input when it has no escapes),
// rejects a known key given twice (as the derived reader did; `ContextReading::parse` then reads
// the text through `Value`, where the last duplicate wins), collects unknown keys into `extra`
// (the last duplicate wins) and reports missing required fields.

/// An object key, borrowed from the input when possible.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A time read as chrono reads `DateTime<Utc>` (same errors, same results), with a fast path for
/// the form every writer of this contract uses, `2026-11-27T10:15:01Z` or with a fraction of a
/// second: contexts are read on the classification hot path, and chrono's general parser costs
/// several times more than the rest of the field.
struct Timestamp(DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // chrono's words, so that errors read the same as before.
                f.write_str("an RFC 3339 formatted date and time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                match parse_utc_timestamp(v) {
                    Some(at) => Ok(Timestamp(at)),
                    None => v
                        .parse::<DateTime<FixedOffset>>()
                        .map(|at| Timestamp(at.with_timezone(&Utc)))
                        .map_err(E::custom),
                }
            }
        }
        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` exactly (at most nine fraction digits, seconds below 60),
/// else `None` and chrono decides.
fn parse_utc_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |value, &d| {
            d.is_ascii_digit().then(|| value * 10 + u32::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let value = number(20..20 + digits.len())?;
            value * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    if second >= 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let at = date.and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(at.and_utc())
}

/// Read the value of a known field into its slot, naming the field in errors.
fn read_field<'de, A, T>(
    map: &mut A,
    slot: &mut Option<T>,
    prefix: &str,
    name: &str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(duplicate(prefix, name));
    }
    let value = map
        .next_value()
        .map_err(|e| de::Error::custom(format_args!("field `{prefix}{name}`: {e}")))?;
    *slot = Some(value);
    Ok(())
}

/// Read a nested object into its slot; its reader names its own fields in errors.
fn read_object<'de, A, S>(
    map: &mut A,
    slot: &mut Option<S::Value>,
    name: &str,
    seed: S,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de>,
{
    if slot.is_some() {
        return Err(duplicate("", name));
    }
    *slot = Some(map.next_value_seed(seed)?);
    Ok(())
}

fn duplicate<E: de::Error>(prefix: &str, name: &str) -> E {
    E::custom(format_args!("duplicate field `{prefix}{name}`"))
}

/// What a nested reader expects, naming the field it reads when it has a path.
fn expecting_object(f: &mut fmt::Formatter<'_>, what: &str, prefix: &str) -> fmt::Result {
    match prefix.strip_suffix('.') {
        Some(field) => write!(f, "{what} for field `{field}`"),
        None => f.write_str(what),
    }
}

/// Keep an unknown field in `extra`.
fn read_extra<'de, A: MapAccess<'de>>(
    map: &mut A,
    extra: &mut BTreeMap<String, Value>,
    key: Key<'de>,
) -> Result<(), A::Error> {
    let value: Value = map.next_value()?;
    extra.insert(key.0.into_owned(), value);
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, prefix: &str, name: &str) -> Result<T, E> {
    slot.ok_or_else(|| E::custom(format_args!("missing field `{prefix}{name}`")))
}

/// Reads an [`ErrorInfo`] object; `prefix` is its path in field names (`"error."`).
struct ErrorInfoVisitor {
    prefix: &'static str,
}

impl<'de> Visitor<'de> for ErrorInfoVisitor {
    type Value = ErrorInfo;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        expecting_object(f, "an error object", self.prefix)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorInfo, A::Error> {
        let prefix = self.prefix;
        let mut error_type: Option<Option<String>> = None;
        let mut message: Option<String> = None;
        let mut status: Option<Option<u16>> = None;
        let mut stack: Option<Option<String>> = None;
        let mut extra = BTreeMap::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "type" => read_field(&mut map, &mut error_type, prefix, "type")?,
                "message" => read_field(&mut map, &mut message, prefix, "message")?,
                "status" => read_field(&mut map, &mut status, prefix, "status")?,
                "stack" => read_field(&mut map, &mut stack, prefix, "stack")?,
                _ => read_extra(&mut map, &mut extra, key)?,
            }
        }
        Ok(ErrorInfo {
            error_type: error_type.flatten(),
            message: required(message, prefix, "message")?,
            status: status.flatten(),
            stack: stack.flatten(),
            extra,
        })
    }
}

impl<'de> DeserializeSeed<'de> for ErrorInfoVisitor {
    type Value = ErrorInfo;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ErrorInfo, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Deserialize<'de> for ErrorInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ErrorInfoVisitor { prefix: "" })
    }
}

/// Reads a [`HealState`] object; `prefix` is its path in field names (`"heal."`).
struct HealStateVisitor {
    prefix: &'static str,
}

impl<'de> Visitor<'de> for HealStateVisitor {
    type Value = HealState;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        expecting_object(f, "a heal object", self.prefix)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HealState, A::Error> {
        let prefix = self.prefix;
        let mut key: Option<String> = None;
        let mut attempts: Option<u32> = None;
        let mut first_failed_at: Option<Timestamp> = None;
        let mut last_class: Option<FailureClass> = None;
        let mut extra = BTreeMap::new();
        while let Some(name) = map.next_key::<Key<'de>>()? {
            match &*name.0 {
                "key" => read_field(&mut map, &mut key, prefix, "key")?,
                "attempts" => read_field(&mut map, &mut attempts, prefix, "attempts")?,
                "first_failed_at" => {
                    read_field(&mut map, &mut first_failed_at, prefix, "first_failed_at")?
                }
                "last_class" => read_field(&mut map, &mut last_class, prefix, "last_class")?,
                _ => read_extra(&mut map, &mut extra, name)?,
            }
        }
        Ok(HealState {
            key: required(key, prefix, "key")?,
            attempts: required(attempts, prefix, "attempts")?,
            first_failed_at: required(first_failed_at, prefix, "first_failed_at")?.0,
            last_class: required(last_class, prefix, "last_class")?,
            extra,
        })
    }
}

impl<'de> Deserialize<'de> for HealState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HealStateVisitor { prefix: "" })
    }
}

/// Reads the optional `heal` object: `null` is no heal state.
struct OptionalHeal;

impl<'de> Visitor<'de> for OptionalHeal {
    type Value = Option<HealState>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a heal object or null for field `heal`")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_map(HealStateVisitor { prefix: "heal." })
            .map(Some)
    }
}

impl<'de> DeserializeSeed<'de> for OptionalHeal {
    type Value = Option<HealState>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

struct FailureContextVisitor;

impl<'de> Visitor<'de> for FailureContextVisitor {
    type Value = FailureContext;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dlq-context object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FailureContext, A::Error> {
        let mut v: Option<u64> = None;
        let mut error: Option<ErrorInfo> = None;
        let mut source: Option<Option<String>> = None;
        let mut consumer: Option<Option<String>> = None;
        let mut failed_at: Option<Timestamp> = None;
        let mut trace_id: Option<Option<String>> = None;
        let mut log_url: Option<Option<String>> = None;
        let mut heal: Option<Option<HealState>> = None;
        let mut extra = BTreeMap::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "v" => read_field(&mut map, &mut v, "", "v")?,
                "error" => {
                    let seed = ErrorInfoVisitor { prefix: "error." };
                    read_object(&mut map, &mut error, "error", seed)?
                }
                "source" => read_field(&mut map, &mut source, "", "source")?,
                "consumer" => read_field(&mut map, &mut consumer, "", "consumer")?,
                "failed_at" => read_field(&mut map, &mut failed_at, "", "failed_at")?,
                "trace_id" => read_field(&mut map, &mut trace_id, "", "trace_id")?,
                "log_url" => read_field(&mut map, &mut log_url, "", "log_url")?,
                "heal" => read_object(&mut map, &mut heal, "heal", OptionalHeal)?,
                _ => read_extra(&mut map, &mut extra, key)?,
            }
        }
        Ok(FailureContext {
            v: required(v, "", "v")?,
            error: required(error, "", "error")?,
            source: source.flatten(),
            consumer: consumer.flatten(),
            failed_at: required(failed_at, "", "failed_at")?.0,
            trace_id: trace_id.flatten(),
            log_url: log_url.flatten(),
            heal: heal.flatten(),
            extra,
        })
    }
}

impl<'de> Deserialize<'de> for FailureContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FailureContextVisitor)
    }
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
        if let Ok(context) = serde_json::from_str::<FailureContext>(text)
            && context.v == CONTEXT_VERSION
        {
            return ContextReading::Valid(Box::new(context));
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
    use proptest::prelude::*;

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

    /// The derived readers this module used to have, to check the hand-written ones against.
    mod derived {
        use crate::class::FailureClass;
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Serialize};
        use serde_json::Value;
        use std::collections::BTreeMap;

        #[derive(Debug, Serialize, Deserialize)]
        pub struct FailureContext {
            pub v: u64,
            pub error: ErrorInfo,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub source: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub consumer: Option<String>,
            pub failed_at: DateTime<Utc>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub trace_id: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub log_url: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub heal: Option<HealState>,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        #[derive(Debug, Serialize, Deserialize)]
        pub struct ErrorInfo {
            #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
            pub error_type: Option<String>,
            pub message: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<u16>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub stack: Option<String>,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        #[derive(Debug, Serialize, Deserialize)]
        pub struct HealState {
            pub key: String,
            pub attempts: u32,
            pub first_failed_at: DateTime<Utc>,
            pub last_class: FailureClass,
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }
    }

    /// Whether the hand-written and the derived readers agree on `text`, read directly and
    /// through `Value`: both fail, or both succeed with the same result.
    fn assert_readers_agree(text: &str) {
        let ours = serde_json::from_str::<FailureContext>(text).map(|c| c.to_json());
        let theirs = serde_json::from_str::<derived::FailureContext>(text)
            .map(|c| serde_json::to_string(&c).unwrap());
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{text}: {ours:?} / {theirs:?}"
        );
        if let (Ok(ours), Ok(theirs)) = (&ours, &theirs) {
            assert_eq!(ours, theirs, "{text}");
        }
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            let ours = serde_json::from_value::<FailureContext>(value.clone()).map(|c| c.to_json());
            let theirs = serde_json::from_value::<derived::FailureContext>(value)
                .map(|c| serde_json::to_string(&c).unwrap());
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{text}: {ours:?} / {theirs:?}"
            );
            if let (Ok(ours), Ok(theirs)) = (&ours, &theirs) {
                assert_eq!(ours, theirs, "{text}");
            }
        }
    }

    #[test]
    fn hand_written_readers_agree_with_the_derived_ones() {
        let cases = [
            sample(),
            r#"{"v":1,"error":{"message":""},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"error":{"message":"x","message":"y"},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"v":2,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","t":1,"t":2}"#,
            r#"{"\u0076":1,"err\u006fr":{"m\u0065ssage":"x","\u00e9":1},"failed_at":"2026-01-01T00:00:00+02:00"}"#,
            r#"{"v":1,"error":{"message":"x","type":null,"status":null,"stack":null},"failed_at":"2026-01-01T00:00:00Z","source":null,"consumer":null,"trace_id":null,"log_url":null,"heal":null}"#,
            r#"{"v":1,"error":{"message":"x","status":70000},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"error":{"message":"x","status":-1},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1.0,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":-1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"error":"boom","failed_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","heal":[1]}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","heal":{"key":"k","attempts":4294967296,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"timeout"}}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","heal":{"key":"k","attempts":1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"nope"}}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","heal":{"key":"k","attempts":1,"first_failed_at":"2026-01-01T00:00:00Z"}}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","heal":{"key":"k","attempts":1,"first_failed_at":"2026-01-01","last_class":"auth","x":[{}]}}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01 00:00:00Z"}"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00.123456789-07:30"}"#,
            r#"[1,{"message":"x"},"2026-01-01T00:00:00Z"]"#,
            r#"{"v":1,"error":{"message":"x"},"failed_at":"2026-01-01T00:00:00Z","big":18446744073709551615,"neg":-5,"f":1.5e300,"o":{"a":[1,"b",null]}}"#,
            "{}",
            "null",
            "\"text\"",
        ];
        for case in cases {
            assert_readers_agree(case);
        }
    }

    fn field_values() -> impl Strategy<Value = String> {
        let scalar = prop::sample::select(vec![
            "1",
            "2",
            "0",
            "-1",
            "1.0",
            "70000",
            "4294967296",
            "\"1\"",
            "\"\"",
            "\"x\\ny\"",
            "null",
            "true",
            "[]",
            "{}",
            "[1]",
            "\"2026-01-01T00:00:00Z\"",
            "\"yesterday\"",
            "\"2026-11-27T10:15:01.5+01:00\"",
            "\"timeout\"",
            "\"auth\"",
            "\"Timeout\"",
        ])
        .prop_map(str::to_string);
        scalar.prop_recursive(2, 24, 6, |inner| {
            let keys = prop::sample::select(vec![
                "message",
                "type",
                "status",
                "stack",
                "key",
                "attempts",
                "first_failed_at",
                "last_class",
                "retryable",
                "mess\\u0061ge",
                "v",
            ]);
            prop::collection::vec((keys, inner), 0..6).prop_map(|fields| {
                let body: Vec<String> =
                    fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            })
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn readers_agree_on_generated_contexts(
            fields in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "v", "error", "source", "consumer", "failed_at", "trace_id", "log_url",
                        "heal", "team", "\\u0076", "Error",
                    ]),
                    field_values(),
                ),
                0..10,
            ),
            required in any::<bool>(),
        ) {
            let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            if required {
                body.insert(0, r#""v":1,"error":{"message":"m"},"failed_at":"2026-01-01T00:00:00Z""#.into());
            }
            let text = format!("{{{}}}", body.join(","));
            assert_readers_agree(&text);
            let reading = ContextReading::parse(&text);
            if reading.state() == ContextState::Valid {
                let context = reading.context().unwrap();
                let again = ContextReading::parse(&context.to_json());
                prop_assert_eq!(again.context(), Some(context));
            }
        }
    }

    #[test]
    fn wrong_types_say_which_field() {
        let base = |error: &str, rest: &str| {
            format!(r#"{{"v":1,"error":{error},"failed_at":"2026-01-01T00:00:00Z"{rest}}}"#)
        };
        let heal = |fields: &str| base(r#"{"message":"x"}"#, &format!(r#","heal":{{{fields}}}"#));
        let good_heal = r#""key":"k","attempts":1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"timeout""#;
        let cases = [
            (
                base(r#"{"message":"x","status":"five hundred"}"#, ""),
                "`error.status`",
            ),
            (
                base(r#"{"message":"x","status":70000}"#, ""),
                "`error.status`",
            ),
            (base(r#"{"message":42}"#, ""), "`error.message`"),
            (base(r#"{"message":"x","type":1}"#, ""), "`error.type`"),
            (base(r#"{"message":"x","stack":[]}"#, ""), "`error.stack`"),
            (base(r#"{}"#, ""), "missing field `error.message`"),
            (base(r#""boom""#, ""), "`error`"),
            (base(r#"{"message":"x"}"#, r#","source":5"#), "`source`"),
            (
                base(r#"{"message":"x"}"#, r#","consumer":true"#),
                "`consumer`",
            ),
            (
                base(r#"{"message":"x"}"#, r#","trace_id":{}"#),
                "`trace_id`",
            ),
            (base(r#"{"message":"x"}"#, r#","log_url":1"#), "`log_url`"),
            (base(r#"{"message":"x"}"#, r#","heal":[1]"#), "`heal`"),
            (
                r#"{"v":1,"error":{"message":"x"},"failed_at":"yesterday"}"#.to_string(),
                "`failed_at`",
            ),
            (
                r#"{"v":1,"error":{"message":"x"}}"#.to_string(),
                "missing field `failed_at`",
            ),
            (
                r#"{"v":1,"failed_at":"2026-01-01T00:00:00Z"}"#.to_string(),
                "missing field `error`",
            ),
            (
                heal(
                    r#""key":1,"attempts":1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"timeout""#,
                ),
                "`heal.key`",
            ),
            (
                heal(
                    r#""key":"k","attempts":-1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"timeout""#,
                ),
                "`heal.attempts`",
            ),
            (
                heal(r#""key":"k","attempts":1,"first_failed_at":"soon","last_class":"timeout""#),
                "`heal.first_failed_at`",
            ),
            (
                heal(
                    r#""key":"k","attempts":1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"nope""#,
                ),
                "`heal.last_class`",
            ),
            (
                heal(r#""key":"k","attempts":1,"first_failed_at":"2026-01-01T00:00:00Z""#),
                "missing field `heal.last_class`",
            ),
            (
                heal(
                    r#""attempts":1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"auth""#,
                ),
                "missing field `heal.key`",
            ),
            (
                heal(&format!("{good_heal},\"attempts\":2")),
                "duplicate field `heal.attempts`",
            ),
        ];
        for (text, field) in cases {
            let reading = ContextReading::parse(&text);
            let problem = reading.problem();
            // A duplicate is only an error for the direct reader; `parse` falls back to `Value`.
            if field.starts_with("duplicate") {
                assert_eq!(reading.state(), ContextState::Valid, "{text}");
                let error = serde_json::from_str::<FailureContext>(&text).unwrap_err();
                assert!(error.to_string().contains(field), "{text}: {error}");
                continue;
            }
            assert_eq!(reading.state(), ContextState::Corrupt, "{text}");
            let problem = problem.unwrap();
            assert!(
                problem.starts_with("dlq-context does not fit version 1: "),
                "{problem}"
            );
            assert!(problem.contains(field), "{text}: {problem}");
        }
        let reading =
            ContextReading::parse(&base(r#"{"message":"x","status":"five hundred"}"#, ""));
        assert_eq!(
            reading.problem().unwrap(),
            "dlq-context does not fit version 1: field `error.status`: invalid type: string \"five hundred\", expected u16"
        );
    }

    #[test]
    fn unknown_fields_round_trip_at_every_level() {
        let text = r#"{"v":1,"team":"payments","z":{"nested":[1,-2,3.5,null,true,"s"]},"big":18446744073709551615,
            "error":{"message":"m","retryable":true,"codes":[1,2],"\u00e9t\u00e9":"\u00e9"},
            "failed_at":"2026-11-27T10:15:01.250+01:00",
            "heal":{"key":"k","attempts":3,"first_failed_at":"2026-11-27T10:00:00Z","last_class":"dependency","by":{"host":"h"}}}"#;
        let context = ContextReading::parse(text)
            .context()
            .cloned()
            .expect("valid");
        assert_eq!(context.extra["team"], "payments");
        assert_eq!(context.extra["z"]["nested"][2], 3.5);
        assert_eq!(context.extra["big"], u64::MAX);
        assert_eq!(context.error.extra["retryable"], true);
        assert_eq!(context.error.extra["été"], "é");
        let heal = context.heal.as_ref().unwrap();
        assert_eq!(heal.extra["by"]["host"], "h");
        assert_eq!(heal.last_class, FailureClass::Dependency);
        assert_eq!(
            context.failed_at.to_rfc3339(),
            "2026-11-27T09:15:01.250+00:00"
        );
        let written = context.to_json();
        let again = ContextReading::parse(&written)
            .context()
            .cloned()
            .expect("valid");
        assert_eq!(again, context);
        assert_eq!(again.to_json(), written);
        let original: Value = serde_json::from_str(text).unwrap();
        let mut rewritten: Value = serde_json::from_str(&written).unwrap();
        rewritten["failed_at"] = original["failed_at"].clone();
        assert_eq!(rewritten, original);
    }

    fn chrono_reading(text: &str) -> Option<DateTime<Utc>> {
        text.parse::<DateTime<FixedOffset>>()
            .ok()
            .map(|at| at.with_timezone(&Utc))
    }

    #[test]
    fn fast_timestamps_read_as_chrono_reads_them() {
        for text in [
            "2026-11-27T10:15:01Z",
            "2026-11-27T10:15:01.5Z",
            "2026-11-27T10:15:01.123456789Z",
            "2024-02-29T23:59:59.000001Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert_eq!(parse_utc_timestamp(text), chrono_reading(text), "{text}");
            assert!(parse_utc_timestamp(text).is_some(), "{text}");
        }
        // Everything else goes to chrono: other offsets, separators, leap seconds, bad dates.
        for text in [
            "2026-11-27T10:15:01+02:00",
            "2026-11-27 10:15:01Z",
            "2026-11-27t10:15:01z",
            "2016-12-31T23:59:60Z",
            "2026-02-30T10:15:01Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T10:15:01.Z",
            "2026-11-27T10:15:01.1234567890Z",
            "2026-11-27T10:15Z",
            "+2026-11-27T10:15:01Z",
            "2026-11-27T10:15:0xZ",
            "",
        ] {
            assert_eq!(parse_utc_timestamp(text), None, "{text}");
        }
        let context =
            |at: &str| format!(r#"{{"v":1,"error":{{"message":""}},"failed_at":"{at}"}}"#);
        for text in ["2026-11-27T12:15:01+02:00", "2016-12-31T23:59:60Z"] {
            let parsed = ContextReading::parse(&context(text));
            assert_eq!(
                parsed.context().map(|c| c.failed_at),
                chrono_reading(text),
                "{text}"
            );
        }
        assert!(matches!(
            ContextReading::parse(&context("yesterday")),
            ContextReading::Corrupt(reason) if reason.contains("failed_at")
        ));
    }

    proptest! {
        #[test]
        fn generated_timestamps_read_as_chrono_reads_them(
            year in 0u32..10_000, month in 0u32..14, day in 0u32..33,
            hour in 0u32..26, minute in 0u32..61, second in 0u32..62,
            fraction in prop::option::of("[0-9]{0,10}"),
        ) {
            let fraction = fraction.map(|digits| format!(".{digits}")).unwrap_or_default();
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z");
            if let Some(fast) = parse_utc_timestamp(&text) {
                prop_assert_eq!(Some(fast), chrono_reading(&text));
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
