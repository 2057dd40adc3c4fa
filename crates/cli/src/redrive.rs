//! `dlq-healer redrive`: move selected messages from a DLQ back to their source queue, at a safe
//! rate, resumably and idempotently.
//!
//! Each receive batch is opened, classified and filtered. A selected message is sent (body,
//! attributes with `dlq-context` and its `heal` block, FIFO group id — all as received), then the
//! move is written to the journal, then the message is deleted from the DLQ. A message the journal
//! already knows is only deleted: a rerun after a crash never sends it twice. (A crash between the
//! send and the journal write can still send one batch twice: delivery stays at-least-once.)
//! Messages not selected stay invisible until the scan ends, then are made visible again at once.

use crate::filter::Filter;
use crate::inspect::{Examined, release};
use crate::ops::{Journal, JournalEntry, Operator, Peeker};
use crate::rate::{Pacer, Ramp, RampStep, RateLimiter};
use anyhow::{Context, Result, bail};
use chrono::Utc;
use dlq_healer_core::FailureClass;
use dlq_healer_core::alert::{escape_controls, redact, shown_source};
use dlq_healer_core::letter::body_digest;
use dlq_healer_core::message::{
    Attribute, CONTEXT_ATTRIBUTE, MAX_ATTRIBUTES, OutgoingMessage, ReceivedMessage,
};
use dlq_healer_core::ports::{MessageSource, QueueSender};
use dlq_healer_core::rules::RuleSet;
use dlq_healer_local::queue::PEEK_PAGE;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Receives in a row that bring nothing new before a scan ends.
const IDLE_RECEIVES: u32 = 2;

/// What to move and how.
#[derive(Debug, Clone, Default)]
pub struct MoveOptions {
    /// Which messages.
    pub filter: Filter,
    /// Send here instead of each message's source queue.
    pub to: Option<String>,
    /// List what would move; change nothing.
    pub dry_run: bool,
    /// At most this many messages per second, on average; as fast as the queues take them when
    /// absent.
    pub rate: Option<f64>,
    /// Start slow and double the rate every this long while nothing comes back to the DLQ.
    pub ramp: Option<Duration>,
    /// Move at most this many.
    pub limit: Option<usize>,
}

/// One message selected for a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMove {
    /// Stable key.
    pub key: String,
    /// Id of the message where it is now (DLQ message id, or `key#attempt` for archived ones).
    pub id: String,
    /// Its class.
    pub class: FailureClass,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Where it goes; reports show it as [`shown_source`] does (a queue URL may carry
    /// credentials).
    #[serde(serialize_with = "serialize_shown_source")]
    pub target: String,
}

fn serialize_shown_source<S: serde::Serializer>(target: &str, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&shown_source(target))
}

/// What a redrive or replay did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MoveReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Messages looked at.
    pub scanned: usize,
    /// Messages the filter selected.
    pub matched: usize,
    /// Moved now (dry run: would move).
    pub moved: Vec<PlannedMove>,
    /// Moved by an earlier, interrupted run; now only deleted from the DLQ (or skipped).
    pub already_moved: usize,
    /// Selected, but with no known source queue and no `--to`.
    pub no_target: Vec<String>,
    /// Moved messages seen back in the DLQ during this run (not moved again).
    pub came_back: usize,
    /// Messages that could not be moved, with why.
    pub failed: Vec<String>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Messages of the DLQ in flight when the run started (being healed, or parked until their
    /// retry is due): not looked at.
    pub in_flight: u64,
}

/// Progress on standard error: a live line with rate and ETA on a terminal, plain lines otherwise
/// (one every 5 s, and the last count at the end).
pub struct Progress {
    out: Box<dyn Write + Send>,
    tty: bool,
    quiet: bool,
    /// What is counted, as a past participle: `moved`, `read`.
    verb: &'static str,
    total: Option<u64>,
    started: Instant,
    last: Option<Instant>,
    counted: u64,
    /// The count of the last line written.
    shown: Option<u64>,
}

impl Progress {
    /// Progress towards `total` messages, if known; `quiet` prints nothing.
    pub fn new(total: Option<u64>, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Self::writing_to(Box::new(std::io::stderr()), tty, total, quiet)
    }

    /// Progress written to `out`, as to a terminal when `tty`.
    fn writing_to(out: Box<dyn Write + Send>, tty: bool, total: Option<u64>, quiet: bool) -> Self {
        Progress {
            out,
            tty,
            quiet,
            verb: "moved",
            total,
            started: Instant::now(),
            last: None,
            counted: 0,
            shown: None,
        }
    }

    /// The same, counting messages `verb` (`read`) instead of moved.
    pub fn counting(self, verb: &'static str) -> Self {
        Progress { verb, ..self }
    }

    /// Count `n` more messages.
    pub fn add(&mut self, n: usize) {
        self.counted += n as u64;
        if self.quiet {
            return;
        }
        let now = Instant::now();
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.is_some_and(|l| now - l < every) {
            return;
        }
        self.last = Some(now);
        self.show();
    }

    fn show(&mut self) {
        let line = self.line();
        if self.tty {
            let _ = write!(self.out, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        self.shown = Some(self.counted);
    }

    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let (verb, counted) = (self.verb, self.counted);
        let rate = counted as f64 / elapsed;
        match self.total {
            Some(total) if rate > 0.0 => {
                let left = total.saturating_sub(counted) as f64 / rate;
                format!("{verb} {counted}/{total}  {rate:.1}/s  ETA {left:.0}s")
            }
            _ => format!("{verb} {counted}  {rate:.1}/s"),
        }
    }

    /// End the live line with the last count; without a terminal, write the last count if the
    /// lines so far did not.
    pub fn finish(&mut self) {
        if self.quiet || self.shown.is_none() {
            return;
        }
        if self.tty {
            self.show();
            let _ = writeln!(self.out);
        } else if self.shown != Some(self.counted) {
            self.show();
        }
    }
}

/// One message to send, and what to write down once it is sent.
pub struct MoveItem {
    /// The journal id.
    pub journal_id: String,
    /// The target queue.
    pub target: String,
    /// What to send.
    pub message: OutgoingMessage,
}

/// Sends items at a rate and writes each sent one to the journal.
pub struct Mover<'a> {
    sender: &'a dyn QueueSender,
    journal: &'a dyn Journal,
    pacer: &'a dyn Pacer,
    limiter: Option<RateLimiter>,
    ramp: Option<Ramp>,
}

impl<'a> Mover<'a> {
    /// A mover at `rate` per second (unlimited when absent), ramping up when `ramp` is given.
    pub fn new(
        sender: &'a dyn QueueSender,
        journal: &'a dyn Journal,
        pacer: &'a dyn Pacer,
        rate: Option<f64>,
        ramp: Option<Duration>,
    ) -> Self {
        let now = pacer.now();
        let ramp = match (rate, ramp) {
            (Some(rate), Some(step)) => Some(Ramp::new(rate, step, now)),
            _ => None,
        };
        let start = ramp.as_ref().map(Ramp::current).or(rate);
        Mover {
            sender,
            journal,
            pacer,
            limiter: start.map(|r| RateLimiter::new(r, r.clamp(1.0, 10.0), now)),
            ramp,
        }
    }

    /// Tell the ramp how many moved messages have come back; false means stop.
    pub fn observe_returns(&mut self, returned: u64) -> bool {
        let now = self.pacer.now();
        match self.ramp.as_mut().map(|r| r.observe(now, returned)) {
            Some(RampStep::Stop { .. }) => false,
            Some(RampStep::Rate(rate)) => {
                if let Some(limiter) = self.limiter.as_mut() {
                    limiter.set_rate(rate, now);
                }
                true
            }
            None => true,
        }
    }

    /// Send items; one result per item: the new message id, or why it was not moved. A journal
    /// that cannot be written is an error for the whole run.
    pub async fn send(&mut self, items: &[MoveItem]) -> Result<Vec<Result<String, String>>> {
        let mut results: Vec<Result<String, String>> = vec![Err("not sent".into()); items.len()];
        let mut by_target: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            by_target.entry(&item.target).or_default().push(i);
        }
        for (target, indices) in by_target {
            let chunk_size = self
                .limiter
                .as_ref()
                .map_or(10, |l| (l.rate().floor() as usize).clamp(1, 10));
            for chunk in indices.chunks(chunk_size) {
                if let Some(limiter) = self.limiter.as_mut() {
                    let wait = limiter.take(chunk.len() as u32, self.pacer.now());
                    if !wait.is_zero() {
                        self.pacer.sleep(wait).await;
                    }
                }
                let messages: Vec<OutgoingMessage> = chunk
                    .iter()
                    .enumerate()
                    .map(|(n, &i)| OutgoingMessage {
                        entry_id: format!("e{n}"),
                        ..items[i].message.clone()
                    })
                    .collect();
                let sent = match self.sender.send(target, &messages).await {
                    Ok(sent) => sent,
                    Err(error) => vec![Err(error); messages.len()],
                };
                let mut entries = Vec::new();
                for (&i, outcome) in chunk.iter().zip(sent) {
                    match outcome {
                        Ok(new_id) => {
                            entries.push(JournalEntry {
                                id: items[i].journal_id.clone(),
                                target: target.to_string(),
                                new_message_id: new_id.clone(),
                                at: Utc::now(),
                            });
                            results[i] = Ok(new_id);
                        }
                        Err(error) => results[i] = Err(error.to_string()),
                    }
                }
                if !entries.is_empty()
                    && let Err(error) = self.journal.record(&entries).await
                {
                    bail!(
                        "{} messages were sent to {target} but the move journal could not be written ({error}); \
                         they are still in the DLQ, so a rerun would send them again — fix the journal first",
                        entries.len()
                    );
                }
            }
        }
        Ok(results)
    }
}

/// The message to send back for a dead letter: exactly as received (attributes with
/// `dlq-context`, FIFO group), except that a body envelope is unwrapped so the consumer gets its
/// original body, with the context moved into an attribute when a slot is free.
pub fn outgoing(examined: &Examined) -> OutgoingMessage {
    let received: &ReceivedMessage = &examined.message;
    let (body, attributes) = if examined.letter.enveloped {
        let mut attributes = examined.letter.message.attributes.clone();
        if attributes.len() < MAX_ATTRIBUTES
            && let Some(context) = &examined.letter.context_text
        {
            attributes.insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context.clone()));
        }
        (examined.letter.message.body.clone(), attributes)
    } else {
        (received.body.clone(), received.attributes.clone())
    };
    OutgoingMessage {
        entry_id: String::new(),
        body,
        attributes,
        delay_seconds: 0,
        group_id: received.group_id.clone(),
        deduplication_id: received
            .group_id
            .as_ref()
            .map(|_| deduplication_id(&format!("redrive:{}", received.message_id))),
    }
}

/// A FIFO deduplication id derived from a stable text.
pub fn deduplication_id(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What this run moved, to recognise a moved message that failed again and came back: native
/// redrive keeps the message id; a consumer that dead-letters by hand sends the same body with a
/// new `failed_at`.
#[derive(Debug, Default)]
struct Returns {
    started_at: chrono::DateTime<Utc>,
    new_ids: HashSet<String>,
    digests: HashSet<String>,
}

impl Returns {
    fn came_back(&self, examined: &Examined, digest: &str) -> bool {
        self.new_ids.contains(&examined.message.message_id)
            || (self.digests.contains(digest) && examined.at.is_some_and(|at| at > self.started_at))
    }
}

/// Everything a redrive works with.
pub struct Redrive<'a> {
    /// The DLQ.
    pub dlq: &'a dyn MessageSource,
    /// The queue whose redrive policy points at the DLQ, if any: the target of messages with no
    /// source of their own.
    pub redrive_source: Option<String>,
    /// Where messages go.
    pub sender: &'a dyn QueueSender,
    /// The move journal.
    pub journal: &'a dyn Journal,
    /// The rules, to classify.
    pub rules: &'a RuleSet,
    /// Time.
    pub pacer: &'a dyn Pacer,
    /// How long one receive waits.
    pub wait: Duration,
    /// How many messages it may hold in flight (those it received and does not move) before it
    /// stops, where the backend limits it (see [`Operator::in_flight_quota`]).
    pub hold_limit: Option<usize>,
    /// For a dry run, the DLQ's messages read without receiving them, where the backend can
    /// (local): the dry run then changes no receive count, visibility or order. A dry run
    /// without them receives the messages and gives them back.
    pub peeked: Option<Box<dyn Peeker>>,
}

impl Redrive<'_> {
    /// Run a redrive; `interrupted` is checked between batches.
    pub async fn run(
        &mut self,
        options: &MoveOptions,
        progress: &mut Progress,
        interrupted: &(dyn Fn() -> bool + Sync),
    ) -> Result<MoveReport> {
        let mut report = MoveReport {
            dry_run: options.dry_run,
            ..MoveReport::default()
        };
        let mut mover = Mover::new(
            self.sender,
            self.journal,
            self.pacer,
            options.rate,
            options.ramp,
        );
        let mut held: HashMap<String, String> = HashMap::new();
        let mut moved = Returns {
            started_at: Utc::now(),
            ..Returns::default()
        };
        if options.dry_run
            && let Some(mut pages) = self.peeked.take()
        {
            let room = |report: &MoveReport| options.limit.is_none_or(|l| report.moved.len() < l);
            while room(&report) {
                let page = pages.next_page(PEEK_PAGE).await?;
                if page.is_empty() {
                    break;
                }
                let mut page = page.into_iter();
                while room(&report) {
                    let chunk: Vec<ReceivedMessage> = page.by_ref().take(10).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    report.scanned += chunk.len();
                    // Nothing was received, so nothing is held to give back.
                    let mut not_received = HashMap::new();
                    self.handle_batch(
                        chunk,
                        options,
                        &mut report,
                        &mut mover,
                        &mut not_received,
                        &mut moved,
                    )
                    .await?;
                }
            }
            progress.finish();
            return Ok(report);
        }
        let mut idle = 0;
        let outcome = async {
            loop {
                if options.limit.is_some_and(|l| report.moved.len() >= l) {
                    break;
                }
                if interrupted() {
                    report.stopped = Some("interrupted; rerun the same command to go on".into());
                    break;
                }
                if self.hold_limit.is_some_and(|limit| held.len() >= limit) {
                    report.stopped = Some(format!(
                        "{} messages of the DLQ are held in flight by this run, near the queue's quota \
                         (SQS refuses receives beyond about 120,000): the rest was not looked at. \
                         Narrow the selection or move it in parts (moved messages are not moved again)",
                        held.len()
                    ));
                    break;
                }
                let batch = self.dlq.receive(10, self.wait).await?;
                if batch.is_empty() {
                    break;
                }
                let mut fresh = Vec::new();
                for message in batch {
                    if let Some(handle) = held.get_mut(&message.message_id) {
                        *handle = message.receipt_handle;
                    } else {
                        fresh.push(message);
                    }
                }
                if fresh.is_empty() {
                    idle += 1;
                    if idle >= IDLE_RECEIVES {
                        break;
                    }
                    continue;
                }
                idle = 0;
                report.scanned += fresh.len();
                let before = report.moved.len();
                self.handle_batch(fresh, options, &mut report, &mut mover, &mut held, &mut moved)
                    .await?;
                progress.add(report.moved.len() - before);
                if !options.dry_run && !mover.observe_returns(report.came_back as u64) {
                    report.stopped = Some(format!(
                        "{} of {} moved messages came back to the DLQ; stopped. Fix the cause, then rerun \
                         (moved messages are not moved again)",
                        report.came_back,
                        report.moved.len()
                    ));
                    break;
                }
            }
            anyhow::Ok(())
        }
        .await;
        release(self.dlq, held.into_values().collect()).await;
        progress.finish();
        outcome?;
        Ok(report)
    }

    async fn handle_batch(
        &self,
        batch: Vec<ReceivedMessage>,
        options: &MoveOptions,
        report: &mut MoveReport,
        mover: &mut Mover<'_>,
        held: &mut HashMap<String, String>,
        moved: &mut Returns,
    ) -> Result<()> {
        let queue = self.dlq.queue_id();
        let journal_id = |m: &ReceivedMessage| format!("redrive:{queue}:{}", m.message_id);
        let ids: Vec<String> = batch.iter().map(journal_id).collect();
        let done = self.journal.done(&ids).await?;
        let mut finish = Vec::new();
        let mut planned: Vec<(Examined, MoveItem)> = Vec::new();
        for message in batch {
            if done.contains(&journal_id(&message)) {
                if options.dry_run {
                    held.insert(message.message_id.clone(), message.receipt_handle.clone());
                } else {
                    finish.push(message.receipt_handle.clone());
                }
                report.already_moved += 1;
                continue;
            }
            let examined = Examined::new(message, self.rules);
            let room = options
                .limit
                .is_none_or(|l| report.moved.len() + planned.len() < l);
            let selected = options.filter.matches(&examined.facts());
            let digest = body_digest(&examined.letter.message.body);
            let target = options
                .to
                .clone()
                .or_else(|| examined.letter.source().map(str::to_string))
                .or_else(|| self.redrive_source.clone());
            if selected {
                report.matched += 1;
            }
            match target {
                _ if !selected || !room => {}
                _ if moved.came_back(&examined, &digest) => report.came_back += 1,
                None => report.no_target.push(examined.key.clone()),
                Some(target) => {
                    let item = MoveItem {
                        journal_id: journal_id(&examined.message),
                        target,
                        message: outgoing(&examined),
                    };
                    planned.push((examined, item));
                    continue;
                }
            }
            held.insert(
                examined.message.message_id.clone(),
                examined.message.receipt_handle.clone(),
            );
        }
        if !finish.is_empty() {
            self.delete(&finish, report).await;
        }
        let plan = |(e, item): &(Examined, MoveItem)| PlannedMove {
            key: e.key.clone(),
            id: e.message.message_id.clone(),
            class: e.class,
            fingerprint: e.fingerprint.clone(),
            target: item.target.clone(),
        };
        if options.dry_run {
            for entry in &planned {
                report.moved.push(plan(entry));
                held.insert(
                    entry.0.message.message_id.clone(),
                    entry.0.message.receipt_handle.clone(),
                );
            }
            return Ok(());
        }
        if planned.is_empty() {
            return Ok(());
        }
        let items: Vec<MoveItem> = planned
            .iter()
            .map(|(_, item)| MoveItem {
                journal_id: item.journal_id.clone(),
                target: item.target.clone(),
                message: item.message.clone(),
            })
            .collect();
        let results = mover.send(&items).await?;
        let mut delete = Vec::new();
        for (entry, result) in planned.iter().zip(results) {
            match result {
                Ok(new_id) => {
                    report.moved.push(plan(entry));
                    moved.new_ids.insert(new_id);
                    moved
                        .digests
                        .insert(body_digest(&entry.0.letter.message.body));
                    delete.push(entry.0.message.receipt_handle.clone());
                }
                Err(error) => {
                    report.failed.push(format!(
                        "{} -> {}: {}",
                        entry.0.key,
                        shown_source(&entry.1.target),
                        shown_failure(&error.to_string())
                    ));
                    held.insert(
                        entry.0.message.message_id.clone(),
                        entry.0.message.receipt_handle.clone(),
                    );
                }
            }
        }
        self.delete(&delete, report).await;
        Ok(())
    }

    async fn delete(&self, handles: &[String], report: &mut MoveReport) {
        for chunk in handles.chunks(10) {
            let results = match self.dlq.delete(chunk).await {
                Ok(results) => results,
                Err(error) => vec![Err(error); chunk.len()],
            };
            for error in results.into_iter().filter_map(Result::err) {
                // The move is in the journal: the next run deletes it without sending it again.
                report.failed.push(format!(
                    "moved, but not yet deleted from the DLQ ({error}); a rerun deletes it"
                ));
            }
        }
    }
}

/// Moves the text report lists one by one; the rest are counted.
pub const LISTED_IN_TEXT: usize = 50;

/// The report as text for a person: the first [`LISTED_IN_TEXT`] moves, then the counts.
pub fn render(report: &MoveReport, verb: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if report.dry_run {
        let _ = writeln!(out, "DRY RUN: nothing was changed. Would {verb}:");
    }
    for m in report.moved.iter().take(LISTED_IN_TEXT) {
        let _ = writeln!(
            out,
            "  {:<40} {:<12} {:<16} -> {}",
            m.key,
            m.class.as_str(),
            m.fingerprint,
            shown_source(&m.target)
        );
    }
    if let Some(more) = report
        .moved
        .len()
        .checked_sub(LISTED_IN_TEXT)
        .filter(|&n| n > 0)
    {
        let _ = writeln!(out, "  ... and {more} more (--json lists every one)");
    }
    let _ = writeln!(
        out,
        "{} {} {} of {} selected ({} looked at); {} moved earlier; {} without a target queue (give --to); {} came back; {} failed",
        if report.dry_run { "would" } else { "did" },
        verb,
        report.moved.len(),
        report.matched,
        report.scanned,
        report.already_moved,
        report.no_target.len(),
        report.came_back,
        report.failed.len(),
    );
    if report.in_flight > 0 {
        let _ = writeln!(
            out,
            "{} in flight, not looked at: being healed, or parked until their retry is due",
            report.in_flight
        );
    }
    for failure in &report.failed {
        let _ = writeln!(out, "  failed: {failure}");
    }
    if let Some(why) = &report.stopped {
        let _ = writeln!(out, "stopped: {why}");
    }
    out
}

/// The safety flags shared by `redrive` and `archive replay`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MoveArgs {
    /// Send to this queue instead of each message's source queue.
    #[arg(long, value_name = "QUEUE")]
    pub to: Option<String>,
    /// List what would move; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many messages per second, on average; as fast as the queues take them when
    /// absent.
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// With --rate: start at a tenth of it and double every STEP (default 30s) while moved
    /// messages stay out of the DLQ; stop as soon as they come back.
    #[arg(long, value_name = "STEP", num_args = 0..=1, default_missing_value = "30s", requires = "rate")]
    pub ramp: Option<String>,
    /// Move at most this many messages.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl MoveArgs {
    /// The move options, with the filter; bad values name their flag.
    pub fn options(&self, filter: Filter) -> Result<MoveOptions> {
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate {rate} must be a positive number of messages per second");
        }
        let ramp = self
            .ramp
            .as_deref()
            .map(|text| {
                let step = crate::filter::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("--ramp: {e}"))?;
                step.to_std()
                    .map_err(|_| anyhow::anyhow!("--ramp {text:?} must be positive"))
            })
            .transpose()?;
        if ramp.is_some_and(|r| r.is_zero()) {
            bail!("--ramp must be a positive duration, e.g. 30s");
        }
        Ok(MoveOptions {
            filter,
            to: self.to.clone(),
            dry_run: self.dry_run,
            rate: self.rate,
            ramp,
            limit: self.limit,
        })
    }
}

/// Flags of `redrive`.
#[derive(Debug, Clone, clap::Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    ops: crate::ops::OpsArgs,
    /// The DLQ: a local queue name, or an SQS queue URL or name.
    #[arg(long, env = "DLQ_URL")]
    dlq: String,
    #[command(flatten)]
    filter: crate::filter::FilterArgs,
    #[command(flatten)]
    moves: MoveArgs,
    /// Rules file (TOML); the shipped defaults when absent.
    #[arg(long, env = "DLQ_HEALER_RULES")]
    rules: Option<std::path::PathBuf>,
}

/// Refuse a `--to` that does not exist (found now, in a dry run too, rather than message by
/// message in the move) or that is the DLQ being emptied.
pub async fn check_target(
    operator: &dyn crate::ops::Operator,
    to: Option<&str>,
    dlq: Option<&str>,
) -> Result<()> {
    let Some(to) = to else {
        return Ok(());
    };
    let target = operator
        .dlq(to)
        .await
        .with_context(|| format!("--to {to}: the queue cannot be read"))?;
    if dlq.is_some_and(|dlq| dlq == target.queue_id()) {
        bail!("--to {to} is the DLQ the messages are taken from; name their source queue");
    }
    Ok(())
}

/// A failure as a report shows it: the queue names in it may carry credentials, and text from
/// outside may hold control characters.
pub fn shown_failure(text: &str) -> String {
    escape_controls(&redact(text)).into_owned()
}

/// In a dry run, the planned moves whose target queue cannot be read are moved to the report's
/// failures, as the real run would fail them.
pub async fn fail_moves_to_missing_queues(operator: &dyn Operator, report: &mut MoveReport) {
    if !report.dry_run {
        return;
    }
    let mut missing: HashMap<String, String> = HashMap::new();
    let queues: HashSet<String> = report.moved.iter().map(|m| m.target.clone()).collect();
    for queue in queues {
        if let Err(error) = operator.dlq(&queue).await {
            missing.insert(queue, format!("{error:#}"));
        }
    }
    let (fail, keep): (Vec<PlannedMove>, Vec<PlannedMove>) = std::mem::take(&mut report.moved)
        .into_iter()
        .partition(|m| missing.contains_key(&m.target));
    report.moved = keep;
    report.failed.extend(fail.iter().map(|m| {
        format!(
            "{} -> {}: {}",
            m.key,
            shown_source(&m.target),
            shown_failure(&missing[&m.target])
        )
    }));
}

/// Run `redrive`; exits 1 when something failed or the run stopped early.
pub fn command(args: RedriveArgs) -> Result<i32> {
    let rules = crate::load_rules(args.rules.as_deref())?;
    let options = args.moves.options(args.filter.build(Utc::now())?)?;
    let report = crate::runtime()?.block_on(async {
        let operator = crate::ops::open(&args.ops).await?;
        let dlq = operator.dlq(&args.dlq).await?;
        check_target(
            operator.as_ref(),
            options.to.as_deref(),
            Some(dlq.queue_id()),
        )
        .await?;
        let redrive_source = operator.redrive_source(&args.dlq).await?;
        let in_flight = operator.in_flight(&args.dlq).await?;
        let sender = operator.sender();
        // A dry run reads the journal (to report earlier moves) but never writes it.
        let journal = operator.journal()?;
        let shutdown = crate::worker::Shutdown::default();
        shutdown.on_signals();
        let pacer = crate::rate::RealPacer::default();
        let peeked = match options.dry_run {
            true => operator.peeker(&args.dlq).await?,
            false => None,
        };
        let mut redrive = Redrive {
            dlq: dlq.as_ref(),
            redrive_source,
            sender: sender.as_ref(),
            journal: journal.as_ref(),
            rules: &rules,
            pacer: &pacer,
            wait: operator.scan_wait(),
            hold_limit: operator.in_flight_quota(),
            peeked,
        };
        let mut progress = Progress::new(
            options.limit.map(|l| l as u64),
            options.dry_run || args.moves.json,
        );
        let mut report = redrive
            .run(&options, &mut progress, &|| shutdown.requested())
            .await?;
        fail_moves_to_missing_queues(operator.as_ref(), &mut report).await;
        report.in_flight = in_flight;
        anyhow::Ok(report)
    })?;
    if args.moves.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, "redrive"));
    }
    Ok(exit_code(&report))
}

/// 1 when a selected message was not moved (or, in a dry run, would not be): its move failed,
/// it has no target queue, or the run stopped early; else 0.
pub fn exit_code(report: &MoveReport) -> i32 {
    let all_moved =
        report.failed.is_empty() && report.no_target.is_empty() && report.stopped.is_none();
    if all_moved { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::MemoryJournal;
    use async_trait::async_trait;
    use chrono::TimeZone;
    use dlq_healer_core::message::Attributes;
    use dlq_healer_core::ports::{Clock, EntryResults, ManualClock, PortError};
    use dlq_healer_local::{LocalQueues, LocalStore, QueueSettings};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// What a [`Progress`] wrote.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Written {
        fn lines(&self) -> Vec<String> {
            String::from_utf8_lossy(&self.0.lock().unwrap())
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn progress_without_a_terminal_ends_with_the_last_count() {
        let written = Written::default();
        let mut progress = Progress::writing_to(Box::new(written.clone()), false, Some(3), false);
        for _ in 0..3 {
            progress.add(1);
        }
        progress.finish();
        let lines = written.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("moved 1/3"), "{lines:?}");
        assert!(lines[1].starts_with("moved 3/3"), "{lines:?}");

        let written = Written::default();
        let mut progress = Progress::writing_to(Box::new(written.clone()), false, Some(1), false);
        progress.add(1);
        progress.finish();
        assert_eq!(written.lines().len(), 1, "the last count once");

        let written = Written::default();
        let mut progress = Progress::writing_to(Box::new(written.clone()), false, None, true);
        progress.add(1);
        progress.finish();
        assert!(written.lines().is_empty(), "quiet");

        let written = Written::default();
        let mut progress =
            Progress::writing_to(Box::new(written.clone()), false, None, false).counting("read");
        progress.add(2);
        progress.finish();
        let lines = written.lines();
        assert!(lines[0].starts_with("read 2 "), "{lines:?}");
    }

    /// Virtual time: sleeping moves it forward at once.
    #[derive(Default)]
    struct FakePacer(Mutex<Duration>);

    #[async_trait]
    impl Pacer for FakePacer {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
        async fn sleep(&self, duration: Duration) {
            *self.0.lock().unwrap() += duration;
        }
    }

    /// What a test redrive works with besides its queues: a fresh journal, virtual time and the
    /// default rules.
    struct Rig {
        journal: MemoryJournal,
        pacer: FakePacer,
        rules: RuleSet,
        hold_limit: Option<usize>,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                journal: MemoryJournal::default(),
                pacer: FakePacer::default(),
                rules: RuleSet::defaults(),
                hold_limit: None,
            }
        }

        /// One quiet redrive of `dlq` into `sender`.
        async fn run(
            &self,
            dlq: &dyn MessageSource,
            sender: &dyn QueueSender,
            options: &MoveOptions,
            interrupted: &(dyn Fn() -> bool + Sync),
        ) -> Result<MoveReport> {
            self.redrive(dlq, sender, None)
                .run(options, &mut Progress::new(None, true), interrupted)
                .await
        }

        fn redrive<'a>(
            &'a self,
            dlq: &'a dyn MessageSource,
            sender: &'a dyn QueueSender,
            peeked: Option<Box<dyn Peeker>>,
        ) -> Redrive<'a> {
            Redrive {
                dlq,
                redrive_source: None,
                sender,
                journal: &self.journal,
                rules: &self.rules,
                pacer: &self.pacer,
                wait: Duration::ZERO,
                hold_limit: self.hold_limit,
                peeked,
            }
        }

        /// A dry run of `dlq` that reads it without receiving, as on the local backend.
        async fn dry_run_peeking(
            &self,
            dlq: &dlq_healer_local::LocalQueue,
            sender: &dyn QueueSender,
            options: &MoveOptions,
        ) -> MoveReport {
            let peeked = Box::new(crate::ops::LocalPeeker::new(dlq.clone()));
            self.redrive(dlq, sender, Some(peeked))
                .run(options, &mut Progress::new(None, true), &|| false)
                .await
                .unwrap()
        }
    }

    /// A DLQ whose deletes fail while `failing` is set: a crash between journal and delete.
    struct FlakyDelete {
        inner: dlq_healer_local::LocalQueue,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl MessageSource for FlakyDelete {
        fn queue_id(&self) -> &str {
            self.inner.queue_id()
        }
        async fn receive(
            &self,
            max: usize,
            wait: Duration,
        ) -> Result<Vec<ReceivedMessage>, PortError> {
            self.inner.receive(max, wait).await
        }
        async fn delete(&self, handles: &[String]) -> Result<EntryResults<()>, PortError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(PortError::retryable(
                    "delete",
                    "orders-dlq",
                    "simulated crash",
                ));
            }
            self.inner.delete(handles).await
        }
        async fn change_visibility(
            &self,
            entries: &[(String, u32)],
        ) -> Result<EntryResults<()>, PortError> {
            if self.failing.load(Ordering::SeqCst) {
                // A crashed process does not release anything either.
                return Err(PortError::retryable(
                    "change visibility",
                    "orders-dlq",
                    "simulated crash",
                ));
            }
            self.inner.change_visibility(entries).await
        }
    }

    const ERRORS: [(&str, FailureClass); 3] = [
        ("ExpiredTokenException", FailureClass::Auth),
        ("TimeoutError", FailureClass::Timeout),
        ("ValidationError", FailureClass::Validation),
    ];
    const SOURCES: [&str; 2] = ["orders", "payments"];

    /// One generated dead letter: error kind, source, tier, FIFO-ish group.
    #[derive(Debug, Clone)]
    struct Letter {
        error: usize,
        source: usize,
        gold: bool,
    }

    struct World {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        queues: LocalQueues,
        sent: BTreeMap<u64, Attributes>,
    }

    fn start() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
    }

    async fn world(letters: &[Letter]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(start()));
        let store = LocalStore::open_with_clock(dir.path().join("t.db"), clock.clone()).unwrap();
        let queues = store.queues();
        for name in ["orders", "payments", "orders-dlq"] {
            queues.create_queue(name, QueueSettings::default()).unwrap();
        }
        let mut sent = BTreeMap::new();
        let mut batch = Vec::new();
        for (n, letter) in letters.iter().enumerate() {
            let context = format!(
                r#"{{"v":1,"error":{{"type":"{}","message":"failed order {n}"}},"source":"{}","failed_at":"{}"}}"#,
                ERRORS[letter.error].0,
                SOURCES[letter.source],
                (start() - chrono::Duration::minutes(n as i64)).to_rfc3339()
            );
            let mut message = OutgoingMessage::new(
                format!("m{n}"),
                format!(
                    r#"{{"n":{n},"tier":"{}"}}"#,
                    if letter.gold { "gold" } else { "silver" }
                ),
            );
            message
                .attributes
                .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context));
            message
                .attributes
                .insert("tenant".into(), Attribute::string(format!("t-{n} ✓ \u{0}")));
            message.attributes.insert(
                "blob".into(),
                Attribute {
                    data_type: "Binary.raw".into(),
                    string_value: None,
                    binary_value: Some(vec![0, 255, n as u8, 10]),
                },
            );
            sent.insert(n as u64, message.attributes.clone());
            batch.push(message);
            if batch.len() == 10 {
                queues.send("orders-dlq", &batch).await.unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            queues.send("orders-dlq", &batch).await.unwrap();
        }
        World {
            _dir: dir,
            clock,
            queues,
            sent,
        }
    }

    /// Every message of a queue (received, then left invisible), by the `n` of its body.
    async fn drain(queues: &LocalQueues, name: &str) -> Vec<(u64, ReceivedMessage)> {
        let queue = queues.queue(name).unwrap();
        let mut out = Vec::new();
        loop {
            let batch = queue.receive(10, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                return out;
            }
            for m in batch {
                let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
                out.push((body["n"].as_u64().unwrap(), m));
            }
        }
    }

    fn expected(letters: &[Letter], filter: &Filter) -> BTreeSet<u64> {
        letters
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                (filter.classes.is_empty() || filter.classes.contains(&ERRORS[l.error].1))
                    && (filter.sources.is_empty()
                        || filter.sources.iter().any(|s| s == SOURCES[l.source]))
                    && (filter.wheres.is_empty() || l.gold)
            })
            .map(|(n, _)| n as u64)
            .collect()
    }

    fn filter_of(classes: &[usize], source: Option<usize>, gold_only: bool) -> Filter {
        Filter {
            classes: classes.iter().map(|c| ERRORS[*c].1).collect(),
            sources: source
                .map(|s| vec![SOURCES[s].to_string()])
                .unwrap_or_default(),
            wheres: if gold_only {
                vec!["/tier=gold".parse().unwrap()]
            } else {
                Vec::new()
            },
            ..Filter::default()
        }
    }

    /// Gold letters from "orders", one per error kind given.
    fn orders(errors: impl IntoIterator<Item = usize>) -> Vec<Letter> {
        errors
            .into_iter()
            .map(|error| Letter {
                error,
                source: 0,
                gold: true,
            })
            .collect()
    }

    fn letters() -> impl Strategy<Value = Vec<Letter>> {
        prop::collection::vec(
            (0..3usize, 0..2usize, any::<bool>()).prop_map(|(error, source, gold)| Letter {
                error,
                source,
                gold,
            }),
            0..35,
        )
    }

    async fn check(
        letters: Vec<Letter>,
        classes: Vec<usize>,
        source: Option<usize>,
        gold_only: bool,
        stop_after: usize,
        crash: bool,
    ) -> std::result::Result<(), TestCaseError> {
        let world = world(&letters).await;
        let filter = filter_of(&classes, source, gold_only);
        let want = expected(&letters, &filter);
        let rig = Rig::new();
        let options = MoveOptions {
            filter,
            rate: Some(50.0),
            ..MoveOptions::default()
        };
        let dlq = FlakyDelete {
            inner: world.queues.queue("orders-dlq").unwrap(),
            failing: crash.into(),
        };
        let mut runs = 0;
        loop {
            runs += 1;
            prop_assert!(runs < 50, "redrive never finished");
            let batches = AtomicUsize::new(0);
            // Only the first run is interrupted; later runs resume and finish.
            let stop = |_: ()| runs == 1 && batches.fetch_add(1, Ordering::SeqCst) >= stop_after;
            let report = rig.run(&dlq, &world.queues, &options, &|| stop(())).await;
            if dlq.failing.swap(false, Ordering::SeqCst) {
                // The "crashed" run left its messages invisible: wait out the visibility timeout.
                world.clock.advance(chrono::Duration::seconds(60));
            }
            let report = report.map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            if report.stopped.is_none() && report.failed.is_empty() {
                break;
            }
        }
        let mut moved = Vec::new();
        for source in SOURCES {
            for (n, m) in drain(&world.queues, source).await {
                let letter = &letters[n as usize];
                prop_assert_eq!(
                    SOURCES[letter.source],
                    source,
                    "message {} went to the wrong queue",
                    n
                );
                prop_assert_eq!(
                    &m.attributes,
                    &world.sent[&n],
                    "attributes of {} changed",
                    n
                );
                moved.push(n);
            }
        }
        let moved_set: BTreeSet<u64> = moved.iter().copied().collect();
        prop_assert_eq!(
            moved.len(),
            moved_set.len(),
            "a message was moved twice: {:?}",
            moved
        );
        prop_assert_eq!(&moved_set, &want);
        let left: BTreeSet<u64> = drain(&world.queues, "orders-dlq")
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let all: BTreeSet<u64> = (0..letters.len() as u64).collect();
        prop_assert_eq!(
            left,
            all.difference(&want).copied().collect::<BTreeSet<u64>>()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn redrive_moves_exactly_the_selected_messages_once_even_when_interrupted(
            letters in letters(),
            classes in prop::collection::vec(0..3usize, 0..3),
            source in prop::option::of(0..2usize),
            gold_only in any::<bool>(),
            stop_after in 0..4usize,
            crash in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(check(letters, classes, source, gold_only, stop_after, crash))?;
        }
    }

    #[tokio::test]
    async fn dry_run_lists_and_changes_nothing_and_limits_hold() {
        let world = world(&orders((0..12).map(|i| i % 3))).await;
        let rig = Rig::new();
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let options = MoveOptions {
            dry_run: true,
            filter: filter_of(&[0], None, false),
            ..Default::default()
        };
        let report = rig
            .run(&dlq, &world.queues, &options, &|| false)
            .await
            .unwrap();
        assert_eq!(report.moved.len(), 4);
        assert!(
            report
                .moved
                .iter()
                .all(|m| m.class == FailureClass::Auth && m.target == "orders")
        );
        assert_eq!(
            world.queues.depth("orders-dlq").unwrap().visible,
            12,
            "all visible again at once"
        );
        assert_eq!(world.queues.depth("orders").unwrap().total(), 0);
        let options = MoveOptions {
            limit: Some(5),
            ..Default::default()
        };
        let report = rig
            .run(&dlq, &world.queues, &options, &|| false)
            .await
            .unwrap();
        assert_eq!(report.moved.len(), 5);
        assert_eq!(world.queues.depth("orders").unwrap().visible, 5);
        assert_eq!(world.queues.depth("orders-dlq").unwrap().visible, 7);
    }

    #[tokio::test]
    async fn a_dry_run_with_a_limit_previews_the_messages_the_move_takes() {
        let world = world(&orders((0..25).map(|i| i % 3))).await;
        let rig = Rig::new();
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let options = |dry_run| MoveOptions {
            dry_run,
            limit: Some(2),
            filter: filter_of(&[1], None, false),
            ..Default::default()
        };
        let ids = |report: &MoveReport| -> Vec<String> {
            report.moved.iter().map(|m| m.id.clone()).collect()
        };
        // Later than the sends: the peek's release happens at a time of its own.
        world.clock.advance(chrono::Duration::seconds(60));
        let preview = rig
            .run(&dlq, &world.queues, &options(true), &|| false)
            .await
            .unwrap();
        assert_eq!(preview.moved.len(), 2);
        let read_only = rig
            .dry_run_peeking(&dlq, &world.queues, &options(true))
            .await;
        assert_eq!(
            ids(&read_only),
            ids(&preview),
            "reading without receiving previews the same messages"
        );
        world.clock.advance(chrono::Duration::seconds(60));
        let moved = rig
            .run(&dlq, &world.queues, &options(false), &|| false)
            .await
            .unwrap();
        assert_eq!(
            ids(&moved),
            ids(&preview),
            "the move takes what the dry run showed"
        );
    }

    #[tokio::test]
    async fn a_dry_run_that_reads_without_receiving_changes_no_receive_count() {
        let world = world(&orders((0..12).map(|i| i % 3))).await;
        let rig = Rig::new();
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let counts = |dlq: &dlq_healer_local::LocalQueue| -> Vec<u32> {
            dlq.peek(usize::MAX)
                .unwrap()
                .iter()
                .map(|m| m.receive_count)
                .collect()
        };
        let before = counts(&dlq);
        let options = MoveOptions {
            dry_run: true,
            filter: filter_of(&[0], None, false),
            ..Default::default()
        };
        let report = rig.dry_run_peeking(&dlq, &world.queues, &options).await;
        assert_eq!((report.scanned, report.moved.len()), (12, 4));
        assert_eq!(counts(&dlq), before, "no message was received");
        assert_eq!(world.queues.depth("orders-dlq").unwrap().visible, 12);
    }

    #[tokio::test]
    async fn a_dry_run_that_reads_without_receiving_reads_page_after_page_and_stops_at_its_limit() {
        let letters = PEEK_PAGE * 2 + 7;
        let world = world(&orders((0..letters).map(|i| i % 3))).await;
        let rig = Rig::new();
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let all = MoveOptions {
            dry_run: true,
            ..Default::default()
        };
        let report = rig.dry_run_peeking(&dlq, &world.queues, &all).await;
        assert_eq!((report.scanned, report.moved.len()), (letters, letters));
        let ids: HashSet<&str> = report.moved.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), letters, "each message once");
        let limited = MoveOptions {
            dry_run: true,
            limit: Some(3),
            ..Default::default()
        };
        let report = rig.dry_run_peeking(&dlq, &world.queues, &limited).await;
        assert_eq!(
            (report.scanned, report.moved.len()),
            (10, 3),
            "one batch read"
        );
    }

    #[tokio::test]
    async fn a_run_stops_before_it_holds_more_in_flight_than_the_backend_allows() {
        // Twelve timeouts, none selected: each one looked at is held until the run ends.
        let world = world(&orders(std::iter::repeat_n(1, 12))).await;
        let rig = Rig {
            hold_limit: Some(5),
            ..Rig::new()
        };
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let options = MoveOptions {
            filter: filter_of(&[0], None, false),
            ..Default::default()
        };
        let report = rig
            .run(&dlq, &world.queues, &options, &|| false)
            .await
            .unwrap();
        assert_eq!(report.scanned, 10, "a receive of ten, then the stop");
        let why = report.stopped.expect("stopped at the quota");
        assert!(
            why.contains("10 messages of the DLQ are held in flight"),
            "{why}"
        );
        assert_eq!(
            world.queues.depth("orders-dlq").unwrap().visible,
            12,
            "all given back"
        );
    }

    #[test]
    fn the_text_report_lists_the_first_moves_and_counts_the_rest() {
        let planned = |n: usize| PlannedMove {
            key: format!("key-{n}"),
            id: format!("id-{n}"),
            class: FailureClass::Timeout,
            fingerprint: "f".into(),
            target: "orders".into(),
        };
        let report = MoveReport {
            dry_run: true,
            moved: (0..LISTED_IN_TEXT + 3).map(planned).collect(),
            ..MoveReport::default()
        };
        let text = render(&report, "redrive");
        assert_eq!(text.matches(" -> orders").count(), LISTED_IN_TEXT, "{text}");
        assert!(
            text.contains("  ... and 3 more (--json lists every one)\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("would redrive {} of", LISTED_IN_TEXT + 3)),
            "{text}"
        );
        let report = MoveReport {
            moved: (0..LISTED_IN_TEXT).map(planned).collect(),
            ..MoveReport::default()
        };
        assert!(!render(&report, "redrive").contains("more"));
    }

    #[tokio::test]
    async fn rate_is_kept_on_the_fake_clock() {
        let world = world(&orders(std::iter::repeat_n(0, 30))).await;
        let rig = Rig::new();
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let options = MoveOptions {
            rate: Some(2.0),
            ..Default::default()
        };
        let report = rig
            .run(&dlq, &world.queues, &options, &|| false)
            .await
            .unwrap();
        assert_eq!(report.moved.len(), 30);
        // 30 messages at 2/s with a burst of 2: the last one waits 14 s.
        assert_eq!(rig.pacer.now(), Duration::from_secs(14));
    }

    #[tokio::test]
    async fn ramp_stops_when_moved_messages_come_back() {
        let world = world(&orders(std::iter::repeat_n(1, 3))).await;
        let rig = Rig::new();
        // A consumer that fails again at once: whatever reaches "orders" is dead-lettered anew.
        struct Bouncing<'a>(&'a LocalQueues, &'a ManualClock);
        #[async_trait]
        impl QueueSender for Bouncing<'_> {
            async fn send(
                &self,
                _queue: &str,
                messages: &[OutgoingMessage],
            ) -> Result<EntryResults<String>, PortError> {
                self.1.advance(chrono::Duration::seconds(1));
                let mut again = messages.to_vec();
                for m in &mut again {
                    let context = format!(
                        r#"{{"v":1,"error":{{"type":"TimeoutError","message":"again"}},"source":"orders","failed_at":"{}"}}"#,
                        (self.1.now() + chrono::Duration::days(400)).to_rfc3339()
                    );
                    m.attributes
                        .insert(CONTEXT_ATTRIBUTE.into(), Attribute::string(context));
                }
                self.0.send("orders-dlq", &again).await
            }
        }
        let sender = Bouncing(&world.queues, &world.clock);
        let dlq = world.queues.queue("orders-dlq").unwrap();
        let options = MoveOptions {
            rate: Some(1.0),
            ramp: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let report = rig.run(&dlq, &sender, &options, &|| false).await.unwrap();
        assert_eq!(report.moved.len(), 3);
        assert!(report.came_back > 0, "{report:?}");
        assert!(
            report
                .stopped
                .as_deref()
                .is_some_and(|s| s.contains("came back")),
            "{report:?}"
        );
    }

    #[test]
    fn enveloped_bodies_are_unwrapped_and_fifo_groups_kept() {
        use dlq_healer_core::context::{ErrorInfo, FailureContext};
        let context = FailureContext::new(ErrorInfo::message("boom"), start());
        let body = dlq_healer_core::letter::wrap_in_envelope(b"original", &context);
        let message = ReceivedMessage {
            message_id: "m1".into(),
            receipt_handle: "r".into(),
            body,
            attributes: Attributes::new(),
            receive_count: 1,
            redrive_source: None,
            sent_at: None,
            group_id: Some("g1".into()),
        };
        let out = outgoing(&Examined::new(message, &RuleSet::defaults()));
        assert_eq!(out.body, b"original");
        assert!(out.attributes.contains_key(CONTEXT_ATTRIBUTE));
        assert_eq!(out.group_id.as_deref(), Some("g1"));
        assert_eq!(out.deduplication_id, Some(deduplication_id("redrive:m1")));
    }
}
