//! What the healer writes down: ledger records (one per decision) and archive records (one per
//! archived message, with everything needed to understand and replay it).

use crate::class::FailureClass;
use crate::message::Attributes;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// How many days ledger records are kept unless the operator says otherwise: on AWS DynamoDB's
/// TTL removes the items this long after their decision, locally `run`'s retention sweeper does.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// What was done with a message, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedAction {
    /// Sent back to its source queue.
    Requeued,
    /// Left in the DLQ until `due_at`, then re-queued.
    Parked,
    /// Stored in the archive.
    Archived,
}

impl RecordedAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedAction::Requeued => "requeued",
            RecordedAction::Parked => "parked",
            RecordedAction::Archived => "archived",
        }
    }
}

impl FromStr for RecordedAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "requeued" => Ok(RecordedAction::Requeued),
            "parked" => Ok(RecordedAction::Parked),
            "archived" => Ok(RecordedAction::Archived),
            other => Err(format!("unknown ledger action {other:?}")),
        }
    }
}

/// One decision about one message. Identity: (`key`, `attempt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// Stable message key.
    pub key: String,
    /// Handling number for this key, from 1.
    pub attempt: u32,
    /// Failure class.
    pub class: FailureClass,
    /// Name of the rule that matched.
    pub rule: String,
    /// What was done.
    pub action: RecordedAction,
    /// Whether an alert about it went out at once.
    pub alerted: bool,
    /// Whether its alert was held back by the dedup window, to go out in the window's digest.
    #[serde(default)]
    pub alert_held_back: bool,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Source queue, if known.
    pub source: Option<String>,
    /// Where the archived copy is (`object#line`), for archived messages.
    pub archive_ref: Option<String>,
    /// The error, short and redacted.
    pub error: String,
    /// The DLQ message id of the delivery this record is about.
    pub dlq_message_id: String,
    /// Digest of the body, to find the key of a message whose context was stripped.
    pub body_digest: String,
    /// For parked messages: when the re-queue is due.
    pub due_at: Option<DateTime<Utc>>,
}

/// Where one archived message is: an object (file or S3 key) and a line in it, from 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArchiveRef {
    /// Object path relative to the archive root, e.g. `archive/auth/2026/11/27/<batch>.jsonl`.
    pub object: String,
    /// Line number in the object, from 1.
    pub line: u32,
}

impl fmt::Display for ArchiveRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.object, self.line)
    }
}

impl FromStr for ArchiveRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (object, line) = s
            .rsplit_once('#')
            .ok_or_else(|| format!("archive reference {s:?} has no #line"))?;
        let line = line
            .parse()
            .map_err(|_| format!("archive reference {s:?} has a bad line number"))?;
        Ok(ArchiveRef {
            object: object.to_string(),
            line,
        })
    }
}

/// One archived message with its full context. Stored as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    /// Stable message key.
    pub key: String,
    /// Handling number that archived it.
    pub attempt: u32,
    /// Failure class.
    pub class: FailureClass,
    /// Rule that matched.
    pub rule: String,
    /// Why it was archived, in words.
    pub reason: String,
    /// The original body when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The original body in base64 when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_b64: Option<String>,
    /// All original message attributes (without `dlq-context`).
    pub attributes: Attributes,
    /// The failure context as received: an object, or the raw text when it was corrupt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Why the context could not be used, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_problem: Option<String>,
    /// Source queue, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Link to the consumer's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// DLQ message id of the archived delivery.
    pub message_id: String,
    /// DLQ receive count at archiving.
    pub receive_count: u32,
    /// FIFO message group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// When it first failed, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// Earlier decisions about this key.
    pub history: Vec<LedgerRecord>,
}

impl ArchiveRecord {
    /// The original body bytes.
    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_b64) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => crate::serde_b64::decode(b64)
                .map_err(|e| format!("archived body of {} is not valid base64: {e}", self.key)),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// The records of one batch and class, stored together as one JSON Lines object.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveBatch {
    /// Object path relative to the archive root.
    pub object: String,
    /// The records, in line order.
    pub records: Vec<ArchiveRecord>,
}

/// `<prefix>/<class>/<yyyy>/<mm>/<dd>/<batch-id>.jsonl`.
pub fn archive_object_path(
    prefix: &str,
    class: FailureClass,
    day: DateTime<Utc>,
    batch_id: &str,
) -> String {
    let prefix = prefix.trim_matches('/');
    let tail = format!(
        "{class}/{:04}/{:02}/{:02}/{batch_id}.jsonl",
        day.year(),
        day.month(),
        day.day()
    );
    if prefix.is_empty() {
        tail
    } else {
        format!("{prefix}/{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn archive_paths_follow_the_layout() {
        let day = Utc.with_ymd_and_hms(2026, 3, 7, 10, 0, 0).unwrap();
        assert_eq!(
            archive_object_path("/archive/", FailureClass::BadPayload, day, "b1"),
            "archive/bad_payload/2026/03/07/b1.jsonl"
        );
        assert_eq!(
            archive_object_path("", FailureClass::Auth, day, "b2"),
            "auth/2026/03/07/b2.jsonl"
        );
    }

    #[test]
    fn archive_refs_round_trip() {
        let r: ArchiveRef = "a/b#c.jsonl#12".parse().unwrap();
        assert_eq!(r.object, "a/b#c.jsonl");
        assert_eq!(r.line, 12);
        assert_eq!(r.to_string().parse::<ArchiveRef>().unwrap(), r);
        assert!("nope".parse::<ArchiveRef>().is_err());
        assert!("a#x".parse::<ArchiveRef>().is_err());
    }
}
