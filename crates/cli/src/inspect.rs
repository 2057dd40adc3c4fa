//! `dlq-healer inspect`: peek at a DLQ without consuming it, and group what failed by class and by
//! fingerprint (class + normalized error + source), with counts, ages and sample keys.
//!
//! The local backend's DLQ is read without receiving its messages. An SQS DLQ is read by receiving
//! every message (each stays invisible until the scan ends, so none is counted twice), then
//! setting their visibility to 0 so they are visible again at once; like any receive, that raises
//! the messages' receive counts. Either way the messages are grouped as they are read, so a DLQ
//! of any size is inspected in the memory its groups take.

use crate::filter::{Facts, Filter};
use crate::ops::{Operator, SQS_SCAN_IN_FLIGHT};
use crate::redrive::Progress;
use anyhow::Result;
use chrono::{DateTime, Utc};
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::{fingerprint, shown_error, shown_source};
use dlq_healer_core::letter::OpenedLetter;
use dlq_healer_core::message::ReceivedMessage;
use dlq_healer_core::ports::MessageSource;
use dlq_healer_core::records::LedgerRecord;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_local::queue::PEEK_PAGE;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Sample keys kept per group.
pub const SAMPLE_KEYS: usize = 5;
/// Receives in a row that bring nothing new before a scan ends.
const IDLE_RECEIVES: u32 = 2;

/// One dead letter, opened and classified.
#[derive(Debug, Clone)]
pub struct Examined {
    /// The message exactly as received (with `dlq-context`), to send back byte for byte.
    pub message: ReceivedMessage,
    /// The message taken apart.
    pub letter: OpenedLetter,
    /// Its stable key: the context's, else the DLQ message id.
    pub key: String,
    /// Its class.
    pub class: FailureClass,
    /// The rule that matched.
    pub rule: String,
    /// What is shown of the error: its first line, shortened, redacted, controls escaped.
    pub error: String,
    /// Class + normalized error + source.
    pub fingerprint: String,
    /// When it failed (the context's `failed_at`), else when it was sent.
    pub at: Option<DateTime<Utc>>,
}

impl Examined {
    /// Open and classify a received message.
    pub fn new(message: ReceivedMessage, rules: &RuleSet) -> Examined {
        let letter = OpenedLetter::open(message.clone());
        let classification = rules.classify(&letter.facts());
        let error_text = letter.error_text();
        let error = shown_error(&error_text);
        let fingerprint = fingerprint(classification.class, &error_text, letter.source());
        let at = letter
            .context
            .context()
            .map(|c| c.failed_at)
            .or(message.sent_at);
        Examined {
            key: letter
                .context_key()
                .unwrap_or(&message.message_id)
                .to_string(),
            class: classification.class,
            rule: classification.rule.to_string(),
            error,
            fingerprint,
            at,
            letter,
            message,
        }
    }

    /// What a filter looks at.
    pub fn facts(&self) -> crate::filter::Facts<'_> {
        crate::filter::Facts {
            key: &self.key,
            message_id: &self.message.message_id,
            class: self.class,
            fingerprint: &self.fingerprint,
            source: self.letter.source(),
            at: self.at,
            body: &self.letter.message.body,
        }
    }
}

/// How a read of a DLQ ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadEnd {
    /// Messages read.
    pub read: usize,
    /// Whether it stopped at a limit (`limit`, or the backend's in-flight quota), so that the
    /// DLQ may hold more.
    pub limited: bool,
}

/// Read up to `limit` (all when absent) of the messages of a DLQ, each once, giving each to
/// `look` as it is read. Where the backend can, they are read without receiving them (see
/// [`Operator::peeker`]); otherwise (SQS) each is received and stays invisible until the scan
/// ends, so that none is read twice, and then made visible again, and at most the backend's
/// [`Operator::in_flight_quota`] are read. Only the receipt handles are kept, not the messages:
/// a DLQ of any size is read in little memory.
pub async fn read_each(
    operator: &dyn Operator,
    dlq: &str,
    source: &dyn MessageSource,
    limit: Option<usize>,
    look: &mut (dyn FnMut(ReceivedMessage) + Send),
) -> Result<ReadEnd> {
    let mut read = 0;
    if let Some(mut pages) = operator.peeker(dlq).await? {
        let wanted = |read: usize| limit.map_or(PEEK_PAGE, |l| (l - read).min(PEEK_PAGE));
        while wanted(read) > 0 {
            let page = pages.next_page(wanted(read)).await?;
            if page.is_empty() {
                break;
            }
            read += page.len();
            page.into_iter().for_each(&mut *look);
        }
        let limited = limit.is_some_and(|l| read >= l);
        return Ok(ReadEnd { read, limited });
    }
    let limit = match (limit, operator.in_flight_quota()) {
        (Some(limit), Some(quota)) => limit.min(quota),
        (limit, quota) => limit.or(quota).unwrap_or(usize::MAX),
    };
    receive_each(source, operator.scan_wait(), limit, look).await
}

/// Read up to `limit` messages of a DLQ by receiving them, each once, giving each to `look`;
/// each stays invisible until the scan ends and is then made visible again.
async fn receive_each(
    source: &dyn MessageSource,
    wait: Duration,
    limit: usize,
    look: &mut (dyn FnMut(ReceivedMessage) + Send),
) -> Result<ReadEnd> {
    let mut read = 0;
    let mut handles: HashMap<String, String> = HashMap::new();
    let mut idle = 0;
    let outcome = async {
        while read < limit && idle < IDLE_RECEIVES {
            let batch = source.receive((limit - read).min(10), wait).await?;
            if batch.is_empty() {
                break;
            }
            let mut fresh = false;
            for message in batch {
                let handle = message.receipt_handle.clone();
                if handles.insert(message.message_id.clone(), handle).is_none() {
                    read += 1;
                    fresh = true;
                    look(message);
                }
            }
            idle = if fresh { 0 } else { idle + 1 };
        }
        anyhow::Ok(())
    }
    .await;
    release(source, handles.into_values().collect()).await;
    outcome.map(|()| ReadEnd {
        read,
        limited: read >= limit,
    })
}

/// Make deliveries visible again at once. Failures only delay them by their visibility timeout,
/// so they are logged, not returned.
pub async fn release(dlq: &dyn MessageSource, handles: Vec<String>) {
    for chunk in handles.chunks(10) {
        let entries: Vec<(String, u32)> = chunk.iter().map(|h| (h.clone(), 0)).collect();
        match dlq.change_visibility(&entries).await {
            Ok(results) => {
                for error in results.into_iter().filter_map(Result::err) {
                    tracing::warn!(%error, "a message could not be made visible again; it will be after its visibility timeout");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "messages could not be made visible again; they will be after their visibility timeout")
            }
        }
    }
}

/// One failure group: the messages of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureGroup {
    /// Class + normalized error + source, hashed.
    pub fingerprint: String,
    /// The class.
    pub class: FailureClass,
    /// The rule that matched.
    pub rule: String,
    /// What is shown of the error of the first message (see [`shown_error`]).
    pub error: String,
    /// What is shown of the source queue, if known (see [`shown_source`]).
    pub source: Option<String>,
    /// Messages in the group.
    pub count: usize,
    /// Age of the oldest message, seconds.
    pub oldest_age_seconds: Option<i64>,
    /// Age of the newest message, seconds.
    pub newest_age_seconds: Option<i64>,
    /// Some keys.
    pub sample_keys: Vec<String>,
}

/// The groups of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassGroup {
    /// The class.
    pub class: FailureClass,
    /// Messages of the class.
    pub count: usize,
    /// Age of the oldest message, seconds.
    pub oldest_age_seconds: Option<i64>,
    /// Age of the newest message, seconds.
    pub newest_age_seconds: Option<i64>,
    /// Its failure groups, largest first.
    pub groups: Vec<FailureGroup>,
}

/// What `inspect` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The DLQ.
    pub dlq: String,
    /// Messages seen that the filter selected (all of them without one).
    pub total: usize,
    /// Messages seen, selected or not.
    pub read: usize,
    /// Whether a filter selected among the messages seen.
    pub filtered: bool,
    /// Whether reading stopped at `--limit` (or at [`SQS_SCAN_IN_FLIGHT`] on SQS), so that the
    /// DLQ may hold more.
    pub limited: bool,
    /// Messages in flight when reading started (being healed, or parked until due), not seen.
    pub in_flight: u64,
    /// The messages parked until their retry is due, soonest first, from the ledger; `None`
    /// when no ledger is configured (aws without a table).
    pub parked: Option<Vec<ParkedMessage>>,
    /// Whether the filter selects by what parked messages cannot be told by (see
    /// [`parked_filter`]), so that they are selected by class, key and source only.
    #[serde(skip)]
    pub parked_partly_filtered: bool,
    /// When.
    pub at: DateTime<Utc>,
    /// By class, in class order.
    pub classes: Vec<ClassGroup>,
}

/// A message parked in the DLQ until its retry is due, as the ledger tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedMessage {
    /// Its key.
    pub key: String,
    /// The handling it is parked after.
    pub attempt: u32,
    /// Its class.
    pub class: FailureClass,
    /// When its retry is due.
    pub due_at: DateTime<Utc>,
    /// Seconds until then.
    pub due_in_seconds: i64,
    /// What is shown of its source queue (see [`shown_source`]).
    pub source: Option<String>,
    /// What is shown of its error (the ledger keeps it short and redacted).
    pub error: String,
}

impl ParkedMessage {
    fn of(record: LedgerRecord, now: DateTime<Utc>) -> Option<ParkedMessage> {
        let due_at = record.due_at?;
        Some(ParkedMessage {
            due_in_seconds: (due_at - now).num_seconds().max(0),
            source: record.source.as_deref().map(shown_source),
            error: shown_error(&record.error),
            key: record.key,
            attempt: record.attempt,
            class: record.class,
            due_at,
        })
    }
}

/// What of `filter` applies to parked messages, which are known only by their ledger records:
/// classes, keys and sources. Fingerprints are worked out from the whole error text, and body
/// matches and failure times need the message, neither of which the ledger keeps.
fn parked_filter(filter: &Filter) -> Filter {
    Filter {
        classes: filter.classes.clone(),
        sources: filter.sources.clone(),
        keys: filter.keys.clone(),
        ..Filter::default()
    }
}

/// The facts of a parked message's ledger record that [`parked_filter`] looks at.
fn parked_facts(record: &LedgerRecord) -> Facts<'_> {
    Facts {
        key: &record.key,
        message_id: &record.dlq_message_id,
        class: record.class,
        fingerprint: "",
        source: record.source.as_deref(),
        at: None,
        body: b"",
    }
}

/// Whether `filter` selects by what [`parked_filter`] leaves out.
fn parked_filter_leaves_out(filter: &Filter) -> bool {
    !filter.fingerprints.is_empty()
        || !filter.wheres.is_empty()
        || filter.since.is_some()
        || filter.until.is_some()
}

/// Parked messages the text of `inspect` lists; `--json` lists all.
const PARKED_LISTED: usize = 10;

/// The oldest and newest of some times.
#[derive(Debug, Clone, Copy, Default)]
struct TimeSpan {
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
}

impl TimeSpan {
    fn add(&mut self, at: Option<DateTime<Utc>>) {
        if let Some(at) = at {
            self.oldest = Some(self.oldest.map_or(at, |t| t.min(at)));
            self.newest = Some(self.newest.map_or(at, |t| t.max(at)));
        }
    }

    /// Their ages at `now`, seconds: (oldest, newest).
    fn ages(self, now: DateTime<Utc>) -> (Option<i64>, Option<i64>) {
        let age = |t: DateTime<Utc>| (now - t).num_seconds().max(0);
        (self.oldest.map(age), self.newest.map(age))
    }
}

/// A failure group as it is built up: what its first message showed, and its counts.
#[derive(Debug)]
struct GroupSoFar {
    rule: String,
    error: String,
    source: Option<String>,
    count: usize,
    span: TimeSpan,
    /// The smallest keys, distinct and in order.
    sample_keys: Vec<String>,
}

/// The groups of one class as they are built up.
#[derive(Debug, Default)]
struct ClassSoFar {
    span: TimeSpan,
    groups: HashMap<String, GroupSoFar>,
}

/// Examined messages grouped by class and fingerprint one at a time, so that a DLQ of any size
/// is grouped in the memory its groups take.
#[derive(Debug, Default)]
pub struct Grouping {
    classes: BTreeMap<FailureClass, ClassSoFar>,
    total: usize,
}

impl Grouping {
    /// Count one message in its group.
    pub fn add(&mut self, m: &Examined) {
        self.total += 1;
        let class = self.classes.entry(m.class).or_default();
        class.span.add(m.at);
        let group = class
            .groups
            .entry(m.fingerprint.clone())
            .or_insert_with(|| GroupSoFar {
                rule: m.rule.clone(),
                error: m.error.clone(),
                source: m.letter.source().map(shown_source),
                count: 0,
                span: TimeSpan::default(),
                sample_keys: Vec::new(),
            });
        group.count += 1;
        group.span.add(m.at);
        let keys = &mut group.sample_keys;
        if let Err(at) = keys.binary_search_by(|k| k.as_str().cmp(&m.key))
            && at < SAMPLE_KEYS
        {
            keys.insert(at, m.key.clone());
            keys.truncate(SAMPLE_KEYS);
        }
    }

    /// The groups, with ages at `now`: classes in class order, each one's groups largest first.
    pub fn finish(self, dlq: &str, now: DateTime<Utc>) -> Inspection {
        let classes = self
            .classes
            .into_iter()
            .map(|(class, so_far)| {
                let mut groups: Vec<FailureGroup> = so_far
                    .groups
                    .into_iter()
                    .map(|(fingerprint, g)| {
                        let (oldest, newest) = g.span.ages(now);
                        FailureGroup {
                            fingerprint,
                            class,
                            rule: g.rule,
                            error: g.error,
                            source: g.source,
                            count: g.count,
                            oldest_age_seconds: oldest,
                            newest_age_seconds: newest,
                            sample_keys: g.sample_keys,
                        }
                    })
                    .collect();
                groups.sort_by(|a, b| {
                    b.count
                        .cmp(&a.count)
                        .then(a.fingerprint.cmp(&b.fingerprint))
                });
                let (oldest, newest) = so_far.span.ages(now);
                ClassGroup {
                    class,
                    count: groups.iter().map(|g| g.count).sum(),
                    oldest_age_seconds: oldest,
                    newest_age_seconds: newest,
                    groups,
                }
            })
            .collect();
        Inspection {
            dlq: dlq.to_string(),
            total: self.total,
            read: self.total,
            filtered: false,
            limited: false,
            in_flight: 0,
            parked: None,
            parked_partly_filtered: false,
            at: now,
            classes,
        }
    }
}

/// Peek at a DLQ and group what is in it that `filter` selects.
pub async fn inspect(
    operator: &dyn Operator,
    dlq: &str,
    rules: &RuleSet,
    limit: Option<usize>,
    filter: &Filter,
    progress: &mut Progress,
) -> Result<Inspection> {
    let source = operator.dlq(dlq).await?;
    // Before the peek: on SQS it receives what it reads, which then counts as in flight.
    let in_flight = operator.in_flight(dlq).await?;
    let mut grouping = Grouping::default();
    let end = read_each(operator, dlq, source.as_ref(), limit, &mut |message| {
        let examined = Examined::new(message, rules);
        if filter.matches(&examined.facts()) {
            grouping.add(&examined);
        }
        progress.add(1);
    })
    .await?;
    progress.finish();
    let now = Utc::now();
    let mut inspection = grouping.finish(dlq, now);
    if operator.check_ledger().is_ok() {
        let parked = operator.parked(now).await?;
        let selects = parked_filter(filter);
        inspection.parked = Some(
            parked
                .into_iter()
                .filter(|record| selects.matches(&parked_facts(record)))
                .filter_map(|record| ParkedMessage::of(record, now))
                .collect(),
        );
    }
    inspection.read = end.read;
    inspection.filtered = !filter.is_empty();
    inspection.parked_partly_filtered = parked_filter_leaves_out(filter);
    inspection.limited = end.limited;
    inspection.in_flight = in_flight;
    Ok(inspection)
}

/// A duration in seconds, short: `45s`, `12m`, `3h`, `2d`.
pub fn short_age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// The inspection as text for a person.
pub fn render(inspection: &Inspection) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let messages = crate::noun(inspection.total, "message", "messages");
    let scan_limit = crate::bench::thousands(SQS_SCAN_IN_FLIGHT as f64);
    if inspection.filtered {
        let _ = writeln!(
            out,
            "DLQ {}: {} {messages} selected by the filter, of the {}{} {}",
            inspection.dlq,
            inspection.total,
            if inspection.limited { "first " } else { "" },
            inspection.read,
            if inspection.limited {
                format!("read (--limit, or {scan_limit} on SQS; it may hold more)")
            } else {
                "in it".to_string()
            }
        );
    } else if inspection.limited {
        let _ = writeln!(
            out,
            "DLQ {}: the first {} {messages} (--limit, or {scan_limit} on SQS; it may hold more)",
            inspection.dlq, inspection.total
        );
    } else {
        let _ = writeln!(
            out,
            "DLQ {}: {} {messages}",
            inspection.dlq, inspection.total
        );
    }
    if inspection.in_flight > 0 {
        let _ = writeln!(
            out,
            "and {} in flight, not shown: being healed, or parked until their retry is due",
            inspection.in_flight
        );
    }
    if let Some(parked) = inspection.parked.as_ref().filter(|p| !p.is_empty()) {
        let _ = writeln!(
            out,
            "\nparked until their retry is due (from the ledger) — {} {}, soonest first{}:",
            parked.len(),
            crate::noun(parked.len(), "message", "messages"),
            if inspection.parked_partly_filtered {
                " (selected by class, key and source only: the ledger has no body or whole error)"
            } else {
                ""
            }
        );
        for p in parked.iter().take(PARKED_LISTED) {
            let _ = writeln!(
                out,
                "  due in {:>5}  {:<12} {}  attempt {}  source {}\n      error: {}",
                short_age(Some(p.due_in_seconds)),
                p.class.as_str(),
                p.key,
                p.attempt,
                p.source.as_deref().unwrap_or("(unknown)"),
                p.error
            );
        }
        if parked.len() > PARKED_LISTED {
            let _ = writeln!(
                out,
                "  ... and {} more (--json lists every one)",
                parked.len() - PARKED_LISTED
            );
        }
    }
    for class in &inspection.classes {
        let _ = writeln!(
            out,
            "\n{} — {} {}, oldest {}, newest {}",
            class.class,
            class.count,
            crate::noun(class.count, "message", "messages"),
            short_age(class.oldest_age_seconds),
            short_age(class.newest_age_seconds)
        );
        for g in &class.groups {
            let _ = writeln!(
                out,
                "  {}  {:>6}  oldest {:>5}  newest {:>5}  source {}",
                g.fingerprint,
                g.count,
                short_age(g.oldest_age_seconds),
                short_age(g.newest_age_seconds),
                g.source.as_deref().unwrap_or("(unknown)")
            );
            let _ = writeln!(out, "      error: {}", g.error);
            let _ = writeln!(out, "      keys:  {}", g.sample_keys.join(", "));
        }
    }
    if inspection.total > 0 {
        let _ = writeln!(
            out,
            "\nmove a group back with: dlq-healer redrive --dlq {} --fingerprint FINGERPRINT --dry-run",
            inspection.dlq
        );
    }
    out
}

/// Flags of `inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    ops: crate::ops::OpsArgs,
    /// The DLQ: a local queue name, or an SQS queue URL or name.
    #[arg(long, env = "DLQ_URL")]
    dlq: String,
    /// Print JSON (for scripts).
    #[arg(long)]
    json: bool,
    /// Look at most at this many messages.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    filter: crate::filter::FilterArgs,
    /// Rules file (TOML); the shipped defaults when absent.
    #[arg(long, env = "DLQ_HEALER_RULES")]
    rules: Option<std::path::PathBuf>,
}

/// Run `inspect`.
pub fn command(args: InspectArgs) -> Result<i32> {
    let rules = crate::load_rules(args.rules.as_deref())?;
    let filter = args.filter.build(Utc::now())?;
    let inspection = crate::runtime()?.block_on(async {
        let operator = crate::ops::open(&args.ops).await?;
        let mut progress = Progress::new(None, false).counting("read");
        inspect(
            operator.as_ref(),
            &args.dlq,
            &rules,
            args.limit,
            &filter,
            &mut progress,
        )
        .await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", render(&inspection));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalSettings;
    use crate::ops::LocalOperator;
    use dlq_healer_core::message::{Attribute, CONTEXT_ATTRIBUTE, OutgoingMessage};
    use dlq_healer_core::ports::QueueSender;
    use dlq_healer_local::{LocalStore, QueueSettings};
    use std::sync::Arc;

    const ERRORS: [&str; 2] = [
        "401 Unauthorized for order 17",
        "Task timed out after 3.00 seconds",
    ];

    /// A DLQ of `count` letters over more than one page, alternating between the two errors.
    async fn dlq_of(dir: &std::path::Path, count: usize) -> LocalOperator {
        let db = dir.join("t.db");
        let queues = LocalStore::open(&db).unwrap().queues();
        queues
            .create_queue("dlq", QueueSettings::default())
            .unwrap();
        let letters: Vec<OutgoingMessage> = (0..count)
            .map(|n| {
                let mut letter = OutgoingMessage::new(format!("{n}"), format!(r#"{{"n":{n}}}"#));
                // Keys fall as the letters go on, so that the smallest come last.
                let context = format!(
                    r#"{{"v":1,"error":{{"message":"{}"}},"source":"orders","failed_at":"2026-12-01T10:{:02}:00Z","heal":{{"key":"k{:05}","attempts":1,"first_failed_at":"2026-12-01T10:00:00Z","last_class":"unknown"}}}}"#,
                    ERRORS[n % 2],
                    n % 60,
                    count - n
                );
                letter
                    .attributes
                    .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context));
                letter
            })
            .collect();
        for chunk in letters.chunks(10) {
            queues.send("dlq", chunk).await.unwrap();
        }
        LocalOperator::open(&LocalSettings {
            db,
            archive_dir: dir.join("archive"),
            webhook_url: None,
            alert_window: chrono::Duration::minutes(10),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_scan_that_receives_reads_each_message_once_up_to_its_limit_and_gives_all_back() {
        use dlq_healer_core::ports::ManualClock;
        use dlq_healer_core::testing::MemoryQueues;
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queues = MemoryQueues::new(clock);
        queues.create("dlq");
        let letters: Vec<OutgoingMessage> = (0..25)
            .map(|n| OutgoingMessage::new(format!("{n}"), format!("{n}")))
            .collect();
        queues.send("dlq", &letters).await.unwrap();
        let dlq = queues.queue("dlq");
        for (limit, expected) in [(12, (12, true)), (100, (25, false))] {
            let mut bodies = Vec::new();
            let end = receive_each(dlq.as_ref(), Duration::ZERO, limit, &mut |m| {
                bodies.push(m.body)
            })
            .await
            .unwrap();
            assert_eq!((end.read, end.limited), expected);
            bodies.sort();
            bodies.dedup();
            assert_eq!(bodies.len(), end.read, "each once");
            let mut all_back = Vec::new();
            loop {
                let batch = dlq.receive(10, Duration::ZERO).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                all_back.extend(batch);
            }
            assert_eq!(all_back.len(), 25, "every message visible again");
            release(
                dlq.as_ref(),
                all_back.into_iter().map(|m| m.receipt_handle).collect(),
            )
            .await;
        }
    }

    #[tokio::test]
    async fn a_dlq_of_several_pages_is_grouped_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let count = PEEK_PAGE * 2 + 3;
        let operator = dlq_of(dir.path(), count).await;
        let rules = RuleSet::defaults();
        let inspection = inspect(
            &operator,
            "dlq",
            &rules,
            None,
            &Filter::default(),
            &mut Progress::new(None, true),
        )
        .await
        .unwrap();
        assert_eq!((inspection.total, inspection.read), (count, count));
        assert!(!inspection.limited);
        // What each group should hold, worked out from all the messages at once.
        let all = LocalStore::open(dir.path().join("t.db"))
            .unwrap()
            .queues()
            .queue("dlq")
            .unwrap()
            .peek(usize::MAX)
            .unwrap();
        // Even letters failed at even minutes, odd ones at odd minutes.
        for (class, error, minutes) in [
            (FailureClass::Auth, ERRORS[0], (0, 58)),
            (FailureClass::Timeout, ERRORS[1], (1, 59)),
        ] {
            let group = &inspection
                .classes
                .iter()
                .find(|c| c.class == class)
                .unwrap()
                .groups;
            assert_eq!(group.len(), 1, "{class}: one fingerprint");
            let mut keys: Vec<String> = all
                .iter()
                .map(|m| OpenedLetter::open(m.clone()))
                .filter(|l| l.error_text().contains(error))
                .map(|l| l.context_key().unwrap().to_string())
                .collect();
            assert_eq!(group[0].count, keys.len());
            keys.sort();
            keys.truncate(SAMPLE_KEYS);
            assert_eq!(group[0].sample_keys, keys, "the smallest keys, in order");
            assert_eq!(group[0].error, error);
            let (oldest, newest) = (group[0].oldest_age_seconds, group[0].newest_age_seconds);
            let age = |minute: i64| {
                let at =
                    chrono::DateTime::parse_from_rfc3339(&format!("2026-12-01T10:{minute:02}:00Z"))
                        .unwrap();
                Some((inspection.at - at.with_timezone(&Utc)).num_seconds())
            };
            assert_eq!((oldest, newest), (age(minutes.0), age(minutes.1)));
        }
        let limited = inspect(
            &operator,
            "dlq",
            &rules,
            Some(PEEK_PAGE + 1),
            &Filter::default(),
            &mut Progress::new(None, true),
        )
        .await
        .unwrap();
        assert_eq!(
            (limited.total, limited.read),
            (PEEK_PAGE + 1, PEEK_PAGE + 1)
        );
        assert!(limited.limited);
    }
}
