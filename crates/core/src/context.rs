//! The `dlq-context` failure context: what failed, where and when, written by the consumer that
//! gave up on a message, and the `heal` block the healer adds when it re-queues.
//!
//! It is a public wire contract (JSON in one String attribute, or in a body envelope when no
//! attribute slot is free), so reading it never fails hard: a context that is missing, corrupt or
//! of a version we do not know is reported as such and becomes a fact the rules can match.

use crate::class::FailureClass;
use crate::json_check::{HIGHS, hex4, no_control_bytes, string_stops};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use memchr::{memchr, memchr2};
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
    // `YYYY-MM-DDTHH:MM:SS` is read as three overlapping words. XOR with the expected text
    // leaves each digit's value and zero for each separator; adding 0x76 to a digit's byte
    // (0x7F to a separator's) leaves its high bit clear exactly when the byte is right, given
    // that the high bit was clear before (a byte with it set is wrong, and its sum may carry into
    // the next byte, which only adds wrong bytes to a word that has one already).
    const DATE: u64 = u64::from_le_bytes(*b"0000-00-");
    const DATE_ADD: u64 = u64::from_le_bytes([0x76, 0x76, 0x76, 0x76, 0x7F, 0x76, 0x76, 0x7F]);
    const DAY_TIME: u64 = u64::from_le_bytes(*b"00T00:00");
    const TIME: u64 = u64::from_le_bytes(*b"00:00:00");
    const TIME_ADD: u64 = u64::from_le_bytes([0x76, 0x76, 0x7F, 0x76, 0x76, 0x7F, 0x76, 0x76]);
    let b = text.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    let date = word(0) ^ DATE;
    let day_time = word(8) ^ DAY_TIME;
    let time = word(11) ^ TIME;
    let wrong = |value: u64, add: u64| (value | value.wrapping_add(add)) & HIGHS;
    let wrong = wrong(date, DATE_ADD) | wrong(day_time, TIME_ADD) | wrong(time, TIME_ADD);
    let [y1, y2, y3, y4, _, m1, m2, _] = date.to_le_bytes().map(u32::from);
    let [d1, d2, _, h1, h2, _, n1, n2] = day_time.to_le_bytes().map(u32::from);
    let [.., s1, s2] = time.to_le_bytes().map(u32::from);
    let (year, month, day) = (
        ((y1 * 10 + y2) * 10 + y3) * 10 + y4,
        m1 * 10 + m2,
        d1 * 10 + d2,
    );
    let (hour, minute, second) = (h1 * 10 + h2, n1 * 10 + n2, s1 * 10 + s2);
    // A fraction digit's value is at most 9, so `value + 6` sets no bit above the lowest four.
    let mut wrong_fraction = 0u32;
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut value = 0u32;
            for &c in digits {
                let digit = u32::from(c.wrapping_sub(b'0'));
                wrong_fraction |= digit + 6;
                value = value.wrapping_mul(10).wrapping_add(digit);
            }
            const SCALE: [u32; 10] = [
                1_000_000_000,
                100_000_000,
                10_000_000,
                1_000_000,
                100_000,
                10_000,
                1_000,
                100,
                10,
                1,
            ];
            value.wrapping_mul(SCALE[digits.len()])
        }
        _ => return None,
    };
    if wrong != 0 || wrong_fraction > 15 || second >= 60 {
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

// The fast reader. Almost every context is written by `FailureContext::to_json` (ours or a
// consumer library's): one object with the known keys, no unknown ones, a UTC timestamp. The
// serde readers spend most of their time on plumbing for that shape, so `ContextReading::parse`
// first tries a reader that knows only it, in one pass over the bytes (a string with escapes
// is scanned for its end, then decoded) and with one allocation per String (with escapes, of
// the escaped length, a few bytes more than the text). It accepts a subset of what the serde readers accept and reads it the same way; on
// anything else (an unknown or duplicate key, a key with escapes, a wrong type, `null` where
// the field is not optional, a number serde would not read as the field's integer type, an
// invalid escape or lone surrogate, a control character, a version other than 1, a timestamp
// `parse_utc_timestamp` does not read, trailing text, ...) it gives up and the serde readers
// decide, so errors and edge cases are theirs.

/// The context in `text` if it has the common shape (see above), else `None`.
fn read_common_shape(text: &str) -> Option<Box<FailureContext>> {
    let mut reader = FastReader { text, at: 0 };
    let context = reader.context()?;
    reader.skip_whitespace();
    (reader.at == text.len()).then_some(context)
}

/// `Some(())` when a field's slot is still empty: a second value gives up.
#[inline(always)]
fn vacant<T>(slot: &Option<T>) -> Option<()> {
    slot.is_none().then_some(())
}

#[derive(Clone, Copy)]
enum ContextKey {
    V,
    Error,
    Source,
    Consumer,
    FailedAt,
    TraceId,
    LogUrl,
    Heal,
}

const CONTEXT_KEYS: [(&[u8], ContextKey); 8] = [
    (b"v", ContextKey::V),
    (b"error", ContextKey::Error),
    (b"source", ContextKey::Source),
    (b"consumer", ContextKey::Consumer),
    (b"failed_at", ContextKey::FailedAt),
    (b"trace_id", ContextKey::TraceId),
    (b"log_url", ContextKey::LogUrl),
    (b"heal", ContextKey::Heal),
];

#[derive(Clone, Copy)]
enum ErrorKey {
    Type,
    Message,
    Status,
    Stack,
}

const ERROR_KEYS: [(&[u8], ErrorKey); 4] = [
    (b"type", ErrorKey::Type),
    (b"message", ErrorKey::Message),
    (b"status", ErrorKey::Status),
    (b"stack", ErrorKey::Stack),
];

#[derive(Clone, Copy)]
enum HealKey {
    Key,
    Attempts,
    FirstFailedAt,
    LastClass,
}

const HEAL_KEYS: [(&[u8], HealKey); 4] = [
    (b"key", HealKey::Key),
    (b"attempts", HealKey::Attempts),
    (b"first_failed_at", HealKey::FirstFailedAt),
    (b"last_class", HealKey::LastClass),
];

/// A position in a context's text; every method returns `None` to give up.
struct FastReader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> FastReader<'a> {
    #[inline(always)]
    fn skip_whitespace(&mut self) {
        let b = self.text.as_bytes();
        while let Some(&c) = b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        let c = *self.text.as_bytes().get(self.at)?;
        if c > b' ' {
            return Some(c);
        }
        self.skip_whitespace();
        self.text.as_bytes().get(self.at).copied()
    }

    /// Consume `c`, the next byte after whitespace.
    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.text.as_bytes().get(self.at) == Some(&c) {
            self.at += 1;
            return Some(());
        }
        if self.peek()? != c {
            return None;
        }
        self.at += 1;
        Some(())
    }

    /// After `{` or `,`: a key that is one of `keys`, without escapes, and its `:`.
    #[inline(always)]
    fn key<K: Copy>(&mut self, keys: &[(&[u8], K)]) -> Option<K> {
        self.eat(b'"')?;
        let rest = &self.text.as_bytes()[self.at..];
        let first = *rest.first()?;
        for &(name, key) in keys {
            if name[0] == first && rest.get(..name.len()) == Some(name) {
                if rest.get(name.len()) != Some(&b'"') {
                    return None;
                }
                self.at += name.len() + 1;
                self.eat(b':')?;
                return Some(key);
            }
        }
        None
    }

    /// After an object member: `true` at a `,`, `false` at the closing `}`.
    #[inline(always)]
    fn more(&mut self) -> Option<bool> {
        let c = self.peek()?;
        self.at += 1;
        match c {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// Consume a `null` if one is next.
    #[inline(always)]
    fn null(&mut self) -> bool {
        let found =
            self.peek() == Some(b'n') && self.text.as_bytes()[self.at..].starts_with(b"null");
        if found {
            self.at += 4;
        }
        found
    }

    /// A string, borrowed when it has no escapes.
    #[inline(always)]
    fn str(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let b = self.text.as_bytes();
        let start = self.at;
        // Short strings are read eight bytes at a time.
        let mut at = start;
        for chunk in b[start..].chunks_exact(8).take(SHORT_STRING_BYTES / 8) {
            let mask = string_stops(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
            if mask != 0 {
                at += (mask.trailing_zeros() / 8) as usize;
                return match b[at] {
                    b'"' => {
                        self.at = at + 1;
                        Some(Cow::Borrowed(&self.text[start..at]))
                    }
                    b'\\' => self.escaped_str(start, at, at),
                    _ => None,
                };
            }
            at += 8;
        }
        self.long_str(start, at)
    }

    /// The rest of a string that is long or at the end of the input; its contents start at
    /// `start` and have no quote, backslash or control byte before `plain`.
    #[inline(never)]
    fn long_str(&mut self, start: usize, plain: usize) -> Option<Cow<'a, str>> {
        let b = self.text.as_bytes();
        let stop = plain + memchr2(b'"', b'\\', b.get(plain..)?)?;
        if b[stop] == b'\\' {
            return self.escaped_str(start, plain, stop);
        }
        if !no_control_bytes(&b[plain..stop]) {
            return None;
        }
        self.at = stop + 1;
        Some(Cow::Borrowed(&self.text[start..stop]))
    }

    /// The rest of a string with escapes, the first at `escape`; its contents start at `start`
    /// and have no quote, backslash or control byte before `plain`.
    #[inline(never)]
    fn escaped_str(&mut self, start: usize, plain: usize, escape: usize) -> Option<Cow<'a, str>> {
        let b = self.text.as_bytes();
        let end = closing_quote(b, escape)?;
        if !no_control_bytes(&b[plain..end]) {
            return None;
        }
        self.at = end + 1;
        unescape(&self.text[start..end], escape - start).map(Cow::Owned)
    }

    /// A string that `parse_utc_timestamp` reads: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, so
    /// without escapes.
    #[inline(always)]
    fn timestamp(&mut self) -> Option<DateTime<Utc>> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        // Find the end; `parse_utc_timestamp` checks the rest.
        let mut end = 19;
        if rest.get(end) == Some(&b'.') {
            end += 1;
            while rest.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        if rest.get(end..end + 2) != Some(b"Z\"") {
            return None;
        }
        self.at = start + end + 2;
        parse_utc_timestamp(&self.text[start..start + end + 1])
    }

    #[inline(always)]
    fn string(&mut self) -> Option<String> {
        self.str().map(Cow::into_owned)
    }

    /// A string or `null`.
    #[inline(always)]
    fn optional_string(&mut self) -> Option<Option<String>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A non-negative integer up to `max`, written as serde_json reads it into an unsigned
    /// integer type: digits without a leading zero, no fraction or exponent.
    #[inline(always)]
    fn integer(&mut self, max: u64) -> Option<u64> {
        self.skip_whitespace();
        let b = self.text.as_bytes();
        let mut at = self.at;
        let mut value = match *b.get(at)? {
            c @ b'0'..=b'9' => u64::from(c - b'0'),
            _ => return None,
        };
        at += 1;
        if value != 0 {
            while let Some(&c @ b'0'..=b'9') = b.get(at) {
                value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                at += 1;
            }
        }
        if matches!(b.get(at), Some(b'0'..=b'9' | b'.' | b'e' | b'E')) || value > max {
            return None;
        }
        self.at = at;
        Some(value)
    }

    /// The fields are read straight into their places; `seen` has the bit of each key read,
    /// to refuse a second one and to find the required ones.
    fn context(&mut self) -> Option<Box<FailureContext>> {
        self.eat(b'{')?;
        let mut context = Box::new(FailureContext {
            v: CONTEXT_VERSION,
            error: ErrorInfo::default(),
            source: None,
            consumer: None,
            failed_at: DateTime::<Utc>::MIN_UTC,
            trace_id: None,
            log_url: None,
            heal: None,
            extra: BTreeMap::new(),
        });
        let mut seen = 0u32;
        loop {
            let key = self.key(&CONTEXT_KEYS)?;
            first_time(&mut seen, key as u32)?;
            match key {
                ContextKey::V => {
                    if self.integer(CONTEXT_VERSION)? != CONTEXT_VERSION {
                        return None;
                    }
                }
                ContextKey::Error => self.error(&mut context.error)?,
                ContextKey::Source => context.source = self.optional_string()?,
                ContextKey::Consumer => context.consumer = self.optional_string()?,
                ContextKey::FailedAt => context.failed_at = self.timestamp()?,
                ContextKey::TraceId => context.trace_id = self.optional_string()?,
                ContextKey::LogUrl => context.log_url = self.optional_string()?,
                ContextKey::Heal => {
                    context.heal = if self.null() {
                        None
                    } else {
                        Some(self.heal()?)
                    }
                }
            }
            if !self.more()? {
                break;
            }
        }
        let required = [ContextKey::V, ContextKey::Error, ContextKey::FailedAt];
        required
            .iter()
            .all(|&key| seen & 1 << key as u32 != 0)
            .then_some(context)
    }

    fn error(&mut self, error: &mut ErrorInfo) -> Option<()> {
        self.eat(b'{')?;
        let mut seen = 0u32;
        loop {
            let key = self.key(&ERROR_KEYS)?;
            first_time(&mut seen, key as u32)?;
            match key {
                ErrorKey::Type => error.error_type = self.optional_string()?,
                ErrorKey::Message => error.message = self.string()?,
                ErrorKey::Status => {
                    error.status = if self.null() {
                        None
                    } else {
                        Some(u16::try_from(self.integer(u16::MAX.into())?).ok()?)
                    }
                }
                ErrorKey::Stack => error.stack = self.optional_string()?,
            }
            if !self.more()? {
                break;
            }
        }
        (seen & 1 << ErrorKey::Message as u32 != 0).then_some(())
    }

    fn heal(&mut self) -> Option<HealState> {
        self.eat(b'{')?;
        let mut key = None;
        let mut attempts = None;
        let mut first_failed_at = None;
        let mut last_class = None;
        loop {
            match self.key(&HEAL_KEYS)? {
                HealKey::Key => {
                    vacant(&key)?;
                    key = Some(self.string()?);
                }
                HealKey::Attempts => {
                    vacant(&attempts)?;
                    attempts = Some(u32::try_from(self.integer(u32::MAX.into())?).ok()?);
                }
                HealKey::FirstFailedAt => {
                    vacant(&first_failed_at)?;
                    first_failed_at = Some(self.timestamp()?);
                }
                HealKey::LastClass => {
                    vacant(&last_class)?;
                    let name = self.str()?;
                    last_class = Some(FailureClass::ALL.into_iter().find(|c| c.as_str() == name)?);
                }
            }
            if !self.more()? {
                break;
            }
        }
        Some(HealState {
            key: key?,
            attempts: attempts?,
            first_failed_at: first_failed_at?,
            last_class: last_class?,
            extra: BTreeMap::new(),
        })
    }
}

/// Mark key number `key` as seen; `None` if it was already.
#[inline(always)]
fn first_time(seen: &mut u32, key: u32) -> Option<()> {
    let bit = 1 << key;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// Strings are read eight bytes at a time up to this length, then with `memchr`.
const SHORT_STRING_BYTES: usize = 32;

/// The index of the quote that ends a string with escapes, looking from `from` (inside the
/// string) on: the first quote after an even run of backslashes (or none). Read from its
/// start, a run of backslashes is pairs of `\\` and, if it is odd, one more backslash that
/// escapes the character after it; a run starts after a character that is not a backslash,
/// so at an escape of its own (the other characters of escapes are letters and hex digits).
/// So when `unescape` then reads every escape of the string (it gives up on any other), each
/// quote before this one is the end of a `\"` escape.
fn closing_quote(b: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let quote = from + memchr(b'"', &b[from..])?;
        // The run stops at the string's opening quote at the latest.
        let backslashes = b[..quote].iter().rev().take_while(|&&c| c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        from = quote + 1;
    }
}

/// The text of a string's contents `raw` with escapes, the first at `at`, decoded as
/// serde_json decodes them; `None` for an escape serde_json refuses (unknown, short, a lone
/// surrogate). Every quote in `raw` is escaped (see [`closing_quote`]).
fn unescape(raw: &str, mut at: usize) -> Option<String> {
    let b = raw.as_bytes();
    // Every escape is at least as long as what it stands for.
    let mut text = String::with_capacity(raw.len());
    let mut plain = 0;
    loop {
        // An escape starts at `at`; `raw[plain..at]` has none.
        text.push_str(&raw[plain..at]);
        let (c, len) = match *b.get(at + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let unit = u32::from(hex4(b, at + 2)?);
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate, which must be followed by an escaped low one.
                    if b.get(at + 6..at + 8)? != b"\\u" {
                        return None;
                    }
                    let low = u32::from(hex4(b, at + 8)?);
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    let code = 0x1_0000 + ((unit - 0xD800) << 10 | (low - 0xDC00));
                    (char::from_u32(code)?, 12)
                } else {
                    // `None` for a lone low surrogate.
                    (char::from_u32(unit)?, 6)
                }
            }
            _ => return None,
        };
        text.push(c);
        // The escape is ASCII, so these are character boundaries.
        at += len;
        plain = at;
        match b.get(at) {
            Some(b'\\') => {}
            Some(_) => match memchr(b'\\', &b[at..]) {
                Some(offset) => at += offset,
                None => break,
            },
            None => break,
        }
    }
    text.push_str(&raw[plain..]);
    Some(text)
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
        // Fast path: a context of the common shape, read in one pass over its bytes.
        if let Some(context) = read_common_shape(text) {
            return ContextReading::Valid(context);
        }
        Self::parse_with_serde(text)
    }

    /// [`ContextReading::parse`] through the serde readers only: what `parse` does with every
    /// context the fast reader gives up on, and what the fast reader must agree with.
    fn parse_with_serde(text: &str) -> ContextReading {
        // A well-formed version-1 context parses in one pass.
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

    /// The error text, or the reason the context is unusable, or a note that there is none: what
    /// alerts, fingerprints, the ledger and the operator's views take a message's error to be.
    pub fn error_text(&self) -> String {
        match self {
            ContextReading::Valid(c) => c.error.text(),
            ContextReading::Missing => {
                "no dlq-context (dead-lettered by queue redrive)".to_string()
            }
            other => other.problem().unwrap_or_default(),
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

impl ErrorInfo {
    /// The error as one text: its type and message, the type once when the message starts with
    /// it already (`ExpiredTokenException: ...`).
    pub fn text(&self) -> String {
        match &self.error_type {
            Some(t) if self.message.starts_with(t.as_str()) => self.message.clone(),
            Some(t) if !self.message.is_empty() => format!("{t}: {}", self.message),
            Some(t) => t.clone(),
            None => self.message.clone(),
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

/// Cut `text` to at most `limit` bytes on character boundaries, saying how much was cut. Its
/// start and its end are kept, half of the room each: an error's summary comes first, and its
/// root cause last (Java's last `Caused by:`, the exception that ends a Python traceback).
pub fn truncate_with_marker(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    // "…[truncated N bytes]…" with N of up to 20 digits.
    const MARKER_ROOM: usize = 48;
    let kept = limit.saturating_sub(MARKER_ROOM);
    let mut head_end = kept / 2;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - (kept - kept / 2);
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let dropped = tail_start - head_end;
    format!(
        "{}…[truncated {dropped} bytes]…{}",
        &text[..head_end],
        &text[tail_start..]
    )
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
            assert_fast_reader_agrees(&text);
            let reading = ContextReading::parse(&text);
            if reading.state() == ContextState::Valid {
                let context = reading.context().unwrap();
                let again = ContextReading::parse(&context.to_json());
                prop_assert_eq!(again.context(), Some(context));
            }
        }
    }

    /// `parse` reads `text` as the serde readers alone do, and the fast reader, when it reads
    /// `text` at all, reads the same context. Returns whether the fast reader read it.
    fn assert_fast_reader_agrees(text: &str) -> bool {
        let serde = ContextReading::parse_with_serde(text);
        assert_eq!(ContextReading::parse(text), serde, "{text}");
        match read_common_shape(text) {
            Some(fast) => {
                assert_eq!(ContextReading::Valid(fast), serde, "{text}");
                true
            }
            None => false,
        }
    }

    /// Optional whitespace, as JSON allows it between tokens.
    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", "", " ", "\n", "\t ", "\r\n  "])
    }

    /// A JSON string literal: plain text, unicode, every escape, and the escapes, surrogates
    /// and control characters that serde_json refuses.
    fn string_literal() -> impl Strategy<Value = String> {
        let valid = prop::sample::select(vec![
            "orders",
            "Task timed out",
            " ",
            "é",
            "日本",
            "😀",
            "\\n",
            "\\t",
            "\\\"",
            "\\\\",
            "\\/",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\u{7f}",
            "x",
            "0123456789abcdef0123456789",
        ]);
        let valid = prop::collection::vec(valid, 0..6)
            .prop_map(|pieces| format!("\"{}\"", pieces.concat()));
        prop_oneof![3 => valid, 1 => any_string_literal()]
    }

    fn any_string_literal() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "orders",
            "Task timed out",
            " ",
            "é",
            "日本",
            "😀",
            "\\n",
            "\\t",
            "\\r",
            "\\b",
            "\\f",
            "\\\"",
            "\\\\",
            "\\/",
            "\\\\\\\"",
            "\\u00e9",
            "\\u00E9",
            "\\u0000",
            "\\u001f",
            "\\u005c",
            "\\u0022",
            "\\ud83d\\ude00",
            "\\uD83D\\uDE00",
            "\\ud83d",
            "\\ude00",
            "\\ud83d\\u0041",
            "\\ud83d\\n",
            "\\x",
            "\\u12",
            "\\u12g4",
            "\\U00e9",
            "\u{1}",
            "\n",
            "\u{1f}",
            "\u{7f}",
            "timeout",
            "2026-11-27T10:15:01Z",
        ]);
        prop::collection::vec(pieces, 0..5).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
    }

    fn number_literal() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "0",
            "1",
            "2",
            "504",
            "-1",
            "-0",
            "01",
            "00",
            "1.0",
            "1.5",
            "1e0",
            "1E2",
            "1e-2",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ])
        .prop_map(str::to_string)
    }

    fn timestamp_literal() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "\"2026-11-27T10:15:01Z\"",
            "\"2026-11-27T10:15:01.5Z\"",
            "\"2026-11-27T10:15:01.123456789Z\"",
            "\"2026-11-27T10:15:01.1234567890Z\"",
            "\"2026-11-27T10:15:01.Z\"",
            "\"2026-11-27T10:15:01+02:00\"",
            "\"2026-11-27T10:15:01z\"",
            "\"2026-11-27 10:15:01Z\"",
            "\"2016-12-31T23:59:60Z\"",
            "\"2026-02-30T10:15:01Z\"",
            "\"2026-11-27T24:00:00Z\"",
            "\"2026-11-27T10:15:01\\u005a\"",
            "\"\\u0032026-11-27T10:15:01Z\"",
            "\"2026-11-27T10:15:01Z \"",
            "\"2026-11-27T10:15:01ZZ\"",
            "\"yesterday\"",
            "\"\"",
        ])
        .prop_map(str::to_string)
    }

    fn scalar_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => string_literal(),
            2 => number_literal(),
            1 => timestamp_literal(),
            1 => prop::sample::select(vec!["null", "true", "false", "[]", "{}", "[1,\"a\"]", "nul", "{\"a\":1}"])
                .prop_map(str::to_string),
        ]
    }

    /// An object of `(key, value)` members, with whitespace between every token.
    fn object_literal(
        members: impl Strategy<Value = (String, String)>,
    ) -> impl Strategy<Value = String> {
        prop::collection::vec((members, ws(), ws(), ws(), ws()), 0..7).prop_map(|members| {
            let body: Vec<String> = members
                .iter()
                .map(|((key, value), a, b, c, d)| format!("{a}\"{key}\"{b}:{c}{value}{d}"))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    }

    fn error_literal() -> impl Strategy<Value = String> {
        let keys = prop::sample::select(vec![
            "message",
            "message",
            "message",
            "message",
            "type",
            "type",
            "status",
            "status",
            "stack",
            "stack",
            "retryable",
            "\\u0074ype",
            "messag",
            "messages",
            "",
        ]);
        let member = keys.prop_flat_map(|key| {
            let value = match key {
                "status" => prop_oneof![3 => number_literal(), 1 => scalar_literal()].boxed(),
                _ => prop_oneof![
                    4 => string_literal(),
                    1 => Just("null".to_string()),
                    1 => scalar_literal(),
                ]
                .boxed(),
            };
            value.prop_map(move |value| (key.to_string(), value))
        });
        object_literal(member)
    }

    fn heal_literal() -> impl Strategy<Value = String> {
        let keys = prop::sample::select(vec![
            "key",
            "key",
            "attempts",
            "attempts",
            "first_failed_at",
            "first_failed_at",
            "last_class",
            "last_class",
            "by",
        ]);
        let member = keys.prop_flat_map(|key| {
            let value = match key {
                "attempts" => prop_oneof![3 => number_literal(), 1 => scalar_literal()].boxed(),
                "first_failed_at" => {
                    prop_oneof![3 => timestamp_literal(), 1 => scalar_literal()].boxed()
                }
                "last_class" => prop_oneof![
                    4 => prop::sample::select(vec![
                        "\"auth\"",
                        "\"validation\"",
                        "\"timeout\"",
                        "\"bad_payload\"",
                        "\"dependency\"",
                        "\"unknown\"",
                        "\"Timeout\"",
                        "\"time\\u006fut\"",
                        "\"nope\"",
                        "{\"timeout\":null}",
                    ])
                    .prop_map(str::to_string),
                    1 => scalar_literal(),
                ]
                .boxed(),
                _ => prop_oneof![3 => string_literal(), 1 => scalar_literal()].boxed(),
            };
            value.prop_map(move |value| (key.to_string(), value))
        });
        object_literal(member)
    }

    fn context_member() -> impl Strategy<Value = (String, String)> {
        let keys = prop::sample::select(vec![
            "v",
            "error",
            "failed_at",
            "source",
            "source",
            "consumer",
            "consumer",
            "trace_id",
            "trace_id",
            "log_url",
            "log_url",
            "heal",
            "heal",
            "heal",
            "team",
            "\\u0076",
            "Error",
            "v ",
        ]);
        keys.prop_flat_map(|key| {
            let value = match key {
                "v" => prop_oneof![4 => Just("1".to_string()), 1 => number_literal(), 1 => scalar_literal()].boxed(),
                "error" => prop_oneof![4 => error_literal(), 1 => scalar_literal()].boxed(),
                "failed_at" => prop_oneof![4 => timestamp_literal(), 1 => scalar_literal()].boxed(),
                "heal" => prop_oneof![
                    4 => heal_literal(),
                    1 => Just("null".to_string()),
                    1 => scalar_literal(),
                ]
                .boxed(),
                _ => prop_oneof![
                    4 => string_literal(),
                    1 => Just("null".to_string()),
                    1 => scalar_literal(),
                ]
                .boxed(),
            };
            value.prop_map(move |value| (key.to_string(), value))
        })
    }

    /// A context that the fast reader mostly reads: the required fields, then generated ones.
    fn context_literal() -> impl Strategy<Value = String> {
        (
            ws(),
            prop::collection::vec((context_member(), ws(), ws(), ws()), 0..5),
            prop::bool::weighted(0.8),
            prop::sample::select(vec!["", "", "", "", "", "", "", " \n", "x", "}", ",", "{}"]),
        )
            .prop_map(|(start, members, required, trailing)| {
                let mut body: Vec<String> = members
                    .iter()
                    .map(|((key, value), a, b, c)| format!("{a}\"{key}\"{b}:{c}{value}"))
                    .collect();
                if required {
                    body.insert(
                        0,
                        r#""v":1,"error":{"message":"m"},"failed_at":"2026-01-01T00:00:00Z""#
                            .into(),
                    );
                }
                format!("{start}{{{}}}{trailing}", body.join(","))
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

        #[test]
        fn fast_reader_reads_generated_contexts_as_serde_does(text in context_literal()) {
            assert_fast_reader_agrees(&text);
        }

        #[test]
        fn fast_reader_reads_generated_strings_as_serde_does(
            message in string_literal(),
            rest in prop::collection::vec(string_literal(), 3),
            (a, b) in (ws(), ws()),
        ) {
            let text = format!(
                r#"{{"v":1,"error":{{"type":{},"message":{a}{message}{b},"stack":{}}},"source":{},"failed_at":"2026-01-01T00:00:00Z"}}"#,
                rest[0], rest[1], rest[2]
            );
            assert_fast_reader_agrees(&text);
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_reader_reads_generated_numbers_and_times_as_serde_does(
            v in prop_oneof![2 => Just("1".to_string()), 1 => number_literal()],
            status in number_literal(),
            attempts in number_literal(),
            failed_at in timestamp_literal(),
            first_failed_at in timestamp_literal(),
            (a, b) in (ws(), ws()),
        ) {
            let text = format!(
                r#"{{"v":{a}{v}{b},"error":{{"message":"m","status":{status}{a}}},"failed_at":{failed_at},"heal":{{"key":"k","attempts":{b}{attempts},"first_failed_at":{first_failed_at},"last_class":"auth"}}}}"#
            );
            assert_fast_reader_agrees(&text);
        }
    }

    /// A context as this build writes it, with every field set.
    fn full_context(heal: bool) -> FailureContext {
        let mut error = ErrorInfo::message(
            "java.net.SocketTimeoutException: Read timed out\n\tat com.example.Client.charge(Client.java:88)\n\tat com.example.Handler.handle(Handler.java:41)\nduplicate key \"orders_pkey\" \\ é 😀 \u{1}",
        );
        error.error_type = Some("java.net.SocketTimeoutException".into());
        error.status = Some(504);
        error.stack = Some("at a\n\tat b/c".into());
        let at = DateTime::parse_from_rfc3339("2026-11-27T10:15:01.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut context = FailureContext::new(error, at);
        context.source = Some("https://sqs.eu-west-1.amazonaws.com/123/orders".into());
        context.consumer = Some("orders-consumer".into());
        context.trace_id = Some("t-1".into());
        context.log_url = Some("https://logs/1?a=b&c=d".into());
        if heal {
            context.heal = Some(HealState {
                key: "k-1".into(),
                attempts: u32::MAX,
                first_failed_at: at - chrono::Duration::seconds(90),
                last_class: FailureClass::BadPayload,
                extra: BTreeMap::new(),
            });
        }
        context
    }

    #[test]
    fn fast_reader_reads_what_this_build_writes() {
        let mut contexts = vec![full_context(false), full_context(true)];
        // As the benchmark and most consumers write them: the time of the failure, to the
        // nanosecond, and no optional field but the source and consumer.
        for (message, error_type) in [
            ("Task timed out after 30.00 seconds", None),
            (
                "duplicate key value violates unique constraint \"orders_pkey\"\nDETAIL:  Key (id)=(14013) already exists.",
                Some("UniqueViolation"),
            ),
            ("", None),
        ] {
            let mut error = ErrorInfo::message(message);
            error.error_type = error_type.map(str::to_string);
            let mut context = FailureContext::new(error, Utc::now());
            context.source = Some("orders".into());
            context.consumer = Some("orders-consumer".into());
            contexts.push(context);
        }
        let mut whole_second = full_context(true);
        whole_second.failed_at = DateTime::parse_from_rfc3339("2026-11-27T10:15:01Z")
            .unwrap()
            .with_timezone(&Utc);
        contexts.push(whole_second);
        for context in contexts {
            let text = context.to_json();
            let fast = read_common_shape(&text).unwrap_or_else(|| panic!("fast: {text}"));
            assert_eq!(*fast, context, "{text}");
            assert!(assert_fast_reader_agrees(&text));
            let pretty = serde_json::to_string_pretty(&context).unwrap();
            assert!(assert_fast_reader_agrees(&pretty), "{pretty}");
        }
    }

    #[test]
    fn fast_reader_decodes_escapes_as_serde_does() {
        let context = |message: &str| {
            format!(
                r#"{{"v":1,"error":{{"message":"{message}"}},"failed_at":"2026-01-01T00:00:00Z"}}"#
            )
        };
        let read = |message: &str| read_common_shape(&context(message)).map(|c| c.error.message);
        for (escaped, text) in [
            (r"a\nb", "a\nb"),
            (r"a\tb", "a\tb"),
            (r"\r\b\f", "\r\u{8}\u{c}"),
            (r#"say \"hi\""#, "say \"hi\""),
            (r"C:\\dir\\", "C:\\dir\\"),
            (r#"\\\""#, "\\\""),
            (r"a\/b", "a/b"),
            (r"caf\u00e9 caf\u00E9", "café café"),
            (r"\u0000", "\0"),
            (r"\ud83d\ude00 \uD83D\uDE00", "😀 😀"),
            (r"\u005c\u0022", "\\\""),
            ("é 日本 😀", "é 日本 😀"),
        ] {
            assert_eq!(read(escaped).as_deref(), Some(text), "{escaped}");
            assert!(assert_fast_reader_agrees(&context(escaped)));
            // The same inside a long string, which is read another way.
            let long = format!("{}{escaped}{}", "x".repeat(40), "y".repeat(40));
            let expected = format!("{}{text}{}", "x".repeat(40), "y".repeat(40));
            assert_eq!(read(&long), Some(expected), "{long}");
        }
        // Escapes serde_json refuses: the fast reader gives up, and the context is corrupt as
        // before.
        for escaped in [
            r"\ud83d",
            r"\ude00",
            r"\ud83dx",
            r"\ud83d\u0041",
            r"\ud83d\n",
            r"\x",
            r"\u12",
            r"\u12g4",
            r"\U00e9",
            "\u{1}",
            "a\nb",
            "\u{1f}",
        ] {
            let text = context(escaped);
            assert_eq!(read(escaped), None, "{escaped}");
            assert_fast_reader_agrees(&text);
            assert_eq!(
                ContextReading::parse(&text).state(),
                ContextState::Corrupt,
                "{text}"
            );
            let long = context(&format!("{}{escaped}", "x".repeat(40)));
            assert_eq!(read_common_shape(&long), None, "{long}");
            assert_eq!(
                ContextReading::parse(&long).state(),
                ContextState::Corrupt,
                "{long}"
            );
        }
        // `\u007f` and raw DEL are fine; only characters below U+0020 must be escaped.
        assert_eq!(read("\u{7f}\\u007f").as_deref(), Some("\u{7f}\u{7f}"));
    }

    #[test]
    fn fast_reader_gives_up_on_anything_unusual() {
        let base = r#""v":1,"error":{"message":"m"},"failed_at":"2026-01-01T00:00:00Z""#;
        let with = |extra: &str| format!("{{{base}{extra}}}");
        let heal = |fields: &str| with(&format!(r#","heal":{{{fields}}}"#));
        let good_heal = r#""key":"k","attempts":1,"first_failed_at":"2026-01-01T00:00:00Z","last_class":"timeout""#;
        // Read by the fast reader.
        for text in [
            with(""),
            " \n\t{ \"v\" : 1 ,\n \"error\"\t:\r{ \"message\" :\"m\" } , \"failed_at\":\n\"2026-01-01T00:00:00Z\"\n}\r\n".to_string(),
            with(r#","source":null,"consumer":null,"trace_id":null,"log_url":null,"heal":null"#),
            heal(good_heal),
            heal(&good_heal.replace(r#""attempts":1"#, r#""attempts":4294967295"#)),
            with(r#","source":"","consumer":"c""#),
            r#"{"error":{"status":65535,"stack":null,"type":null,"message":""},"failed_at":"2026-01-01T00:00:00.5Z","v":1}"#.to_string(),
        ] {
            assert!(read_common_shape(&text).is_some(), "{text}");
            assert!(assert_fast_reader_agrees(&text));
        }
        // Given up on, and read by serde as before.
        let cases = [
            ("unknown key", with(r#","team":"payments""#)),
            (
                "unknown error key",
                text_replace(&with(""), r#""m""#, r#""m","retryable":true"#),
            ),
            (
                "unknown heal key",
                heal(&format!(r#"{good_heal},"by":"h""#)),
            ),
            (
                "key with an escape",
                text_replace(&with(""), r#""v""#, r#""\u0076""#),
            ),
            ("duplicate key", with(r#","v":1"#)),
            ("duplicate error", with(r#","error":{"message":"n"}"#)),
            (
                "duplicate optional key",
                with(r#","source":"a","source":null"#),
            ),
            (
                "duplicate error key",
                text_replace(&with(""), r#""m""#, r#""m","message":"n""#),
            ),
            (
                "duplicate heal key",
                heal(&format!(r#"{good_heal},"attempts":2"#)),
            ),
            ("wrong type", with(r#","source":5"#)),
            (
                "wrong type for message",
                text_replace(&with(""), r#""m""#, "42"),
            ),
            (
                "wrong type for status",
                text_replace(&with(""), r#""m""#, r#""m","status":"504""#),
            ),
            ("null message", text_replace(&with(""), r#""m""#, "null")),
            (
                "null attempts",
                heal(&good_heal.replace(r#""attempts":1"#, r#""attempts":null"#)),
            ),
            ("heal not an object", with(r#","heal":[1]"#)),
            (
                "missing message",
                text_replace(&with(""), r#""message":"m""#, ""),
            ),
            (
                "missing failed_at",
                base.replace(r#","failed_at":"2026-01-01T00:00:00Z""#, "")
                    .to_string(),
            ),
            ("missing v", format!("{{{}}}", &base[6..])),
            (
                "missing heal key",
                heal(&good_heal.replace(r#""key":"k","#, "")),
            ),
            ("v is 2", text_replace(&with(""), r#""v":1"#, r#""v":2"#)),
            ("v is 0", text_replace(&with(""), r#""v":1"#, r#""v":0"#)),
            (
                "v is 1.0",
                text_replace(&with(""), r#""v":1"#, r#""v":1.0"#),
            ),
            (
                "v is 1e0",
                text_replace(&with(""), r#""v":1"#, r#""v":1e0"#),
            ),
            ("v is 01", text_replace(&with(""), r#""v":1"#, r#""v":01"#)),
            ("v is -1", text_replace(&with(""), r#""v":1"#, r#""v":-1"#)),
            (
                "v is a string",
                text_replace(&with(""), r#""v":1"#, r#""v":"1""#),
            ),
            (
                "status too big",
                text_replace(&with(""), r#""m""#, r#""m","status":65536"#),
            ),
            (
                "status huge",
                text_replace(&with(""), r#""m""#, r#""m","status":18446744073709551616"#),
            ),
            (
                "status negative",
                text_replace(&with(""), r#""m""#, r#""m","status":-0"#),
            ),
            (
                "attempts too big",
                heal(&good_heal.replace(r#""attempts":1"#, r#""attempts":4294967296"#)),
            ),
            (
                "timestamp with an offset",
                text_replace(&with(""), "00Z", "00+02:00"),
            ),
            (
                "leap second",
                text_replace(&with(""), "00:00:00Z", "23:59:60Z"),
            ),
            (
                "timestamp with an escape",
                text_replace(&with(""), "00Z", r"00\u005a"),
            ),
            (
                "timestamp too precise",
                text_replace(&with(""), "00Z", "00.1234567890Z"),
            ),
            (
                "not a timestamp",
                text_replace(&with(""), "2026-01-01T00:00:00Z", "yesterday"),
            ),
            (
                "class as a map",
                heal(&good_heal.replace(r#""timeout""#, r#"{"timeout":null}"#)),
            ),
            (
                "unknown class",
                heal(&good_heal.replace("timeout", "Timeout")),
            ),
            ("trailing garbage", format!("{}x", with(""))),
            ("two objects", format!("{}{{}}", with(""))),
            ("trailing comma", with(",")),
            ("truncated", with("")[..40].to_string()),
            ("not an object", format!("[{}]", with(""))),
            ("empty", String::new()),
        ];
        for (why, text) in cases {
            assert!(read_common_shape(&text).is_none(), "{why}: {text}");
            assert_fast_reader_agrees(&text);
        }
        // A class name with an escape is decoded first, as serde does.
        let escaped_class = heal(&good_heal.replace("timeout", r"time\u006fut"));
        let context = read_common_shape(&escaped_class).expect("read");
        assert_eq!(context.heal.unwrap().last_class, FailureClass::Timeout);
        assert!(assert_fast_reader_agrees(&escaped_class));
    }

    fn text_replace(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{text} has no {from}");
        text.replacen(from, to, 1)
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
        assert!(cut.len() <= 100, "{}", cut.len());
        assert!(cut.contains("…[truncated"));
        assert_eq!(truncate_with_marker("short".into(), 100), "short");
    }

    #[test]
    fn truncation_keeps_the_root_cause_at_the_end() {
        let trace = format!(
            "ListenerExecutionFailedException: Listener failed\n{}Caused by: HttpServerErrorException: 503 Service Unavailable",
            "\tat com.example.Frame.call(Frame.java:42)\n".repeat(200)
        );
        let cut = truncate_with_marker(trace.clone(), MAX_MESSAGE_BYTES);
        assert!(cut.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.starts_with("ListenerExecutionFailedException: Listener failed\n"));
        assert!(cut.ends_with("Caused by: HttpServerErrorException: 503 Service Unavailable"));
        let (head, rest) = cut.split_once("…[truncated ").unwrap();
        let (dropped, tail) = rest.split_once(" bytes]…").unwrap();
        assert_eq!(
            head.len() + dropped.parse::<usize>().unwrap() + tail.len(),
            trace.len(),
            "the marker counts what was cut"
        );
    }
}
