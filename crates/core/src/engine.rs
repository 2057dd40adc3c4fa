//! The healing engine: turns a batch of dead letters into decisions and applies them through the
//! ports, in the order that makes a crash harmless — act (send, park, archive, alert), then record
//! in the ledger, then delete from the DLQ. A message whose handling fails at any step stays in
//! the DLQ and is redelivered; the ledger makes the second handling a no-op or a completion.

use crate::alert::{self, Alert, AlertOutcome, DigestsDue, MAX_SAMPLE_KEYS};
use crate::class::FailureClass;
use crate::context::{FailureContext, HealState};
use crate::letter::{OpenedLetter, body_digest};
use crate::message::{
    Attribute, CONTEXT_ATTRIBUTE, MAX_ATTRIBUTES, OutgoingMessage, ReceivedMessage,
};
use crate::metrics as m;
use crate::policy::{Disposition, Verdict, decide};
use crate::ports::{
    Alerter, Archive, Clock, DigestMatch, EntryResults, HistoryRequest, Ledger, MessageSource,
    MetricEvent, Metrics, PortError, QueueSender,
};
use crate::records::{
    ArchiveBatch, ArchiveRecord, ArchiveRef, LedgerRecord, RecordedAction, archive_object_path,
};
use crate::rules::{Classification, NO_RULE, RuleSet};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::Poll;

mod in_hand;
use in_hand::MessagesInHand;

/// The adapters the engine drives.
#[derive(Clone)]
pub struct Ports {
    /// The DLQ.
    pub dlq: Arc<dyn MessageSource>,
    /// The queues messages are re-queued to.
    pub queues: Arc<dyn QueueSender>,
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// The archive.
    pub archive: Arc<dyn Archive>,
    /// The alert sink.
    pub alerter: Arc<dyn Alerter>,
    /// The metrics sink.
    pub metrics: Arc<dyn Metrics>,
}

/// Settings of one engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where to re-queue a message whose source is unknown (the original's `MAIN_QUEUE_URL`).
    pub default_target: Option<String>,
    /// Archive objects go under this prefix.
    pub archive_prefix: String,
    /// Whether the engine deletes handled messages itself (worker), or leaves that to its caller
    /// (Lambda with partial batch responses).
    pub delete_handled: bool,
    /// Seed for backoff jitter; `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_target: None,
            archive_prefix: "archive".to_string(),
            delete_handled: true,
            jitter_seed: None,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent back to `queue`, visible after `delay_seconds`.
    Requeued {
        /// Target queue.
        queue: String,
        /// Send delay.
        delay_seconds: u32,
    },
    /// Left in the DLQ for `seconds`.
    Parked {
        /// Visibility timeout set.
        seconds: u32,
    },
    /// Stored in the archive.
    Archived {
        /// Where.
        reference: ArchiveRef,
    },
    /// A redelivery of a message the ledger says was handled already; only deleted.
    AlreadyHandled,
    /// Not handled; it stays in the DLQ and will be redelivered.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The report on one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReport {
    /// DLQ message id.
    pub message_id: String,
    /// Receipt handle of the delivery.
    pub receipt_handle: String,
    /// Stable key.
    pub key: String,
    /// Class, when the message got that far.
    pub class: Option<FailureClass>,
    /// Name of the matching rule, when classified.
    pub rule: Option<String>,
    /// What became of its alert.
    pub alert: AlertOutcome,
    /// What happened.
    pub outcome: Outcome,
    /// Whether it was deleted from the DLQ.
    pub deleted: bool,
    /// When the message first failed, as far as its context or the queue tell.
    pub first_failed_at: Option<DateTime<Utc>>,
}

impl MessageReport {
    /// Whether the message is done with and may be deleted from the DLQ.
    pub fn is_settled(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Requeued { .. } | Outcome::Archived { .. } | Outcome::AlreadyHandled
        )
    }
}

/// The report on one batch, one entry per message in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Per-message reports.
    pub messages: Vec<MessageReport>,
}

impl BatchReport {
    /// Ids of messages that must come back: failed or parked (for partial batch responses).
    pub fn not_settled(&self) -> impl Iterator<Item = &MessageReport> {
        self.messages.iter().filter(|r| !r.is_settled())
    }

    /// How many messages ended with each kind of outcome: (requeued, parked, archived, duplicates, failed).
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for report in &self.messages {
            match report.outcome {
                Outcome::Requeued { .. } => tally.requeued += 1,
                Outcome::Parked { .. } => tally.parked += 1,
                Outcome::Archived { .. } => tally.archived += 1,
                Outcome::AlreadyHandled => tally.duplicates += 1,
                Outcome::Failed { .. } => tally.failed += 1,
            }
        }
        tally
    }
}

/// Counts of outcomes in a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Re-queued.
    pub requeued: usize,
    /// Parked.
    pub parked: usize,
    /// Archived.
    pub archived: usize,
    /// Already handled.
    pub duplicates: usize,
    /// Failed.
    pub failed: usize,
}

/// How long an alert fingerprint stays quiet after its first alert.
pub const DEFAULT_ALERT_WINDOW: Duration = Duration::minutes(10);

/// The plan for one message, from classification to outcome.
struct Plan {
    letter: OpenedLetter,
    key: String,
    digest: String,
    history: Vec<LedgerRecord>,
    classification: Option<Classification>,
    verdict: Option<Verdict>,
    step: Step,
    alert: AlertOutcome,
    /// What its alert says instead of the message's error, when the trouble is not the
    /// message's (its queue is gone).
    alert_error: Option<String>,
    outcome: Option<Outcome>,
    record: Option<LedgerRecord>,
}

/// What the plan asks of the adapters.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Requeue {
        queue: String,
        delay_seconds: u32,
        record_as: Option<Box<LedgerRecord>>,
    },
    Park {
        seconds: u32,
    },
    Repark {
        seconds: u32,
    },
    Archive {
        reason: String,
    },
    DeleteOnly,
    Fail(String),
}

/// The healing engine.
pub struct Engine {
    rules: Arc<RuleSet>,
    ports: Ports,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    jitter: Mutex<SmallRng>,
    in_hand: MessagesInHand,
}

impl Engine {
    /// An engine with rules, adapters, a clock and settings.
    pub fn new(
        rules: Arc<RuleSet>,
        ports: Ports,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Engine {
        let jitter = match config.jitter_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_entropy(),
        };
        Engine {
            rules,
            ports,
            clock,
            config,
            jitter: Mutex::new(jitter),
            in_hand: MessagesInHand::default(),
        }
    }

    /// The rules in use.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The adapters in use.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Handle one batch of dead letters end to end.
    pub async fn heal_batch(&self, messages: Vec<ReceivedMessage>) -> BatchReport {
        let started = std::time::Instant::now();
        let (messages, superseded) = SupersededDeliveries::split(messages);
        // Another batch being healed on this engine may hold some of these messages (a delivery
        // whose visibility ran out in its hands): wait until it is done; its ledger records then
        // say what it did.
        let ids = messages.iter().map(|m| m.message_id.clone()).collect();
        let _held = self.in_hand.hold(ids).await;
        let now = self.clock.now();
        let mut plans: Vec<Plan> = messages
            .into_iter()
            .map(|message| {
                let letter = OpenedLetter::open(message);
                let digest = body_digest(&letter.message.body);
                Plan {
                    key: letter.message.message_id.clone(),
                    letter,
                    digest,
                    history: Vec::new(),
                    classification: None,
                    verdict: None,
                    step: Step::DeleteOnly,
                    alert: AlertOutcome::None,
                    alert_error: None,
                    outcome: None,
                    record: None,
                }
            })
            .collect();

        if let Err(error) = self.resolve_keys_and_history(&mut plans).await {
            for plan in &mut plans {
                plan.step = Step::Fail(error.to_string());
            }
        } else {
            // The attempt each key took last in this batch, and with which body: another message
            // of the key (another body that carries the same `heal` block) takes the attempt after
            // it, as it would in a later batch, so that neither's ledger record and archived copy
            // stands in for the other's.
            let mut taken: HashMap<String, (u32, String)> = HashMap::new();
            for plan in &mut plans {
                let taken_by_another_body = taken
                    .get(&plan.key)
                    .filter(|(_, digest)| *digest != plan.digest)
                    .map_or(0, |(attempt, _)| *attempt);
                self.plan(plan, now, taken_by_another_body);
                if let Some(verdict) = &plan.verdict {
                    taken.insert(plan.key.clone(), (verdict.attempt, plan.digest.clone()));
                }
            }
            settle_twins_within(&mut plans);
            keep_group_order(&mut plans);
        }

        // Archiving waits on the disk or the network; the re-queue goes on meanwhile.
        let archiving = self.archive_objects(&mut plans, now);
        let (stored, ()) = both(
            self.store_archive(&archiving),
            self.requeue(&mut plans, now),
        )
        .await;
        self.settle_archive(&mut plans, archiving, stored, now);
        self.park(&mut plans, now).await;
        // Messages whose source queue turned out to be gone are archived now.
        let late = self.archive_objects(&mut plans, now);
        let stored = self.store_archive(&late).await;
        self.settle_archive(&mut plans, late, stored, now);
        let alert_events = self.raise_alerts(&mut plans, now).await;
        self.record(&mut plans).await;

        let mut reports: Vec<MessageReport> = plans.into_iter().map(Plan::into_report).collect();
        let earlier = superseded.reports(&reports);
        // Counted before the delete (so the duration leaves the delete out): after a crash
        // between the two the batch is delivered again and found in the ledger, and counted once
        // more only as duplicates; counted after it, a crash before the count left the batch
        // counted nowhere.
        self.emit_metrics(
            reports
                .iter()
                .chain(earlier.iter().map(|(_, report)| report)),
            alert_events,
            now,
            started.elapsed(),
        );
        if self.config.delete_handled {
            self.delete_settled(&mut reports).await;
        }
        BatchReport {
            messages: SupersededDeliveries::merge(reports, earlier),
        }
    }

    /// Find each message's stable key (context, else a key still being retried with the same
    /// body, else the message id) and the ledger history that can matter: none for a message on
    /// its first DLQ receive with no earlier attempts, which cannot have been acted on yet.
    async fn resolve_keys_and_history(&self, plans: &mut [Plan]) -> Result<(), PortError> {
        let unkeyed: Vec<String> = plans
            .iter()
            .filter(|p| p.letter.context_key().is_none())
            .map(|p| p.digest.clone())
            .collect();
        let by_digest = if unkeyed.is_empty() {
            HashMap::new()
        } else {
            self.ports.ledger.keys_by_digest(&unkeyed).await?
        };
        let mut requests: Vec<HistoryRequest> = Vec::new();
        let mut request = |key: &str, up_to_attempt: u32| {
            requests.push(HistoryRequest {
                key: key.to_string(),
                up_to_attempt,
            })
        };
        let mut digest_matches: Vec<Option<DigestMatch>> = Vec::with_capacity(plans.len());
        for plan in plans.iter_mut() {
            let redelivered = plan.letter.message.receive_count > 1;
            let found = match plan.letter.context_key() {
                Some(key) => {
                    plan.key = key.to_string();
                    let prior = plan.letter.context_attempts();
                    if prior > 0 || redelivered {
                        request(&plan.key, prior.saturating_add(1));
                    }
                    None
                }
                None => {
                    let found = by_digest.get(&plan.digest).cloned();
                    if let Some(found) = &found {
                        request(&found.key, found.attempt.saturating_add(1));
                    }
                    if redelivered {
                        // An earlier delivery keyed by this message's id took up the attempts of
                        // its body's key, which the digest's latest record bounds.
                        request(
                            &plan.key,
                            found.as_ref().map_or(1, |f| f.attempt.saturating_add(1)),
                        );
                    }
                    found
                }
            };
            digest_matches.push(found);
        }
        let history = if requests.is_empty() {
            HashMap::new()
        } else {
            requests.sort_by(|a, b| {
                a.key
                    .cmp(&b.key)
                    .then(b.up_to_attempt.cmp(&a.up_to_attempt))
            });
            requests.dedup_by(|a, b| a.key == b.key);
            self.ports.ledger.history(&requests).await?
        };
        for (plan, found) in plans.iter_mut().zip(digest_matches) {
            // Several messages of a batch can share a key: each gets its own copy.
            plan.history = history.get(&plan.key).cloned().unwrap_or_default();
            let Some(found) = found else {
                continue;
            };
            let records = history.get(&found.key).cloned().unwrap_or_default();
            if records
                .iter()
                .any(|r| r.dlq_message_id == plan.letter.message.message_id)
            {
                // That key already handled this very delivery.
                plan.key = found.key;
                plan.history = records;
                continue;
            }
            // The history read up to the digest's attempt + 1 knows better than the digest
            // whether the key ended in the archive since; a body seen again after its key was
            // archived is a new message.
            let latest = records.iter().max_by_key(|r| r.attempt);
            if latest.map_or(found.action, |r| r.action) != RecordedAction::Archived {
                // A body that a key still being retried re-queued: most likely that message with
                // its context stripped by a consumer, but it may be another message with the same
                // body. It keeps a key of its own, so that two messages are never taken for
                // copies of one (and one of them deleted as a twin, or both sent with one FIFO
                // deduplication id), and takes that key's history as its own: its attempts go on
                // from there, so a message whose context is always stripped still stops, and its
                // archive record shows them.
                plan.history.extend(records);
                plan.history.sort_by_key(|r| r.attempt);
            }
        }
        Ok(())
    }

    /// Decide what to do with one message; `taken_in_batch` is the last attempt of its key that
    /// a message with another body took earlier in the batch (0 if none).
    fn plan(&self, plan: &mut Plan, now: DateTime<Utc>, taken_in_batch: u32) {
        let message_id = plan.letter.message.message_id.clone();
        if let Some(done) = plan
            .history
            .iter()
            .find(|r| r.dlq_message_id == message_id)
            .cloned()
        {
            plan.classification = Some(recorded_classification(&done));
            plan.step = match (done.action, done.due_at) {
                (RecordedAction::Parked, Some(due)) if due > now => Step::Repark {
                    seconds: (due - now)
                        .num_seconds()
                        .clamp(1, crate::policy::MAX_PARK_SECONDS as i64)
                        as u32,
                },
                (RecordedAction::Parked, _) => match self.target_of(&plan.letter) {
                    Some(queue) => {
                        let mut record = done.clone();
                        record.action = RecordedAction::Requeued;
                        record.at = now;
                        record.due_at = None;
                        plan.verdict = Some(Verdict {
                            disposition: Disposition::Requeue { delay_seconds: 0 },
                            alert: false,
                            exhausted: false,
                            attempt: done.attempt,
                        });
                        Step::Requeue {
                            queue,
                            delay_seconds: 0,
                            record_as: Some(Box::new(record)),
                        }
                    }
                    None => Step::Archive {
                        reason: "parked message has no source queue to return to".into(),
                    },
                },
                _ => Step::DeleteOnly,
            };
            return;
        }

        // Another copy of this key took this copy's next attempt already, or the key went past
        // it: a twin (a crash between a re-queue and its ledger record sends a message twice, and
        // a consumer may be handed one message twice) or a stale copy. Its body lives on in the
        // copy that was re-queued or archived; handling it too would send the message once more,
        // past its attempts, and write over that decision in the ledger. A parked copy is not
        // enough: it waits in the DLQ, where an operator may have moved it back to its source.
        if plan.letter.context_key().is_some() {
            let attempts = plan.letter.context_attempts();
            let decided = plan
                .history
                .iter()
                .filter(|r| {
                    r.attempt > attempts
                        && r.body_digest == plan.digest
                        && r.action != RecordedAction::Parked
                })
                .max_by_key(|r| r.attempt);
            if let Some(decided) = decided {
                plan.classification = Some(recorded_classification(decided));
                plan.step = Step::DeleteOnly;
                return;
            }
        }

        let classification = self.rules.classify(&plan.letter.facts());
        let policy = self.rules.policy(classification.class);
        let prior = plan
            .letter
            .context_attempts()
            .max(plan.history.iter().map(|r| r.attempt).max().unwrap_or(0))
            .max(taken_in_batch);
        let draw: f64 = self
            .jitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .r#gen();
        let verdict = decide(policy, prior, self.ports.dlq.is_fifo(), draw);
        plan.step = match verdict.disposition {
            Disposition::Requeue { delay_seconds } => match self.target_of(&plan.letter) {
                Some(queue) => Step::Requeue {
                    queue,
                    delay_seconds,
                    record_as: None,
                },
                None => Step::Archive {
                    reason: format!(
                        "{}; would re-queue but the source queue is unknown and no default target is set",
                        classification.reason()
                    ),
                },
            },
            Disposition::Park { seconds } => Step::Park { seconds },
            Disposition::Archive => Step::Archive {
                reason: if verdict.exhausted {
                    format!(
                        "{}; gave up after {prior} re-queues",
                        classification.reason()
                    )
                } else {
                    classification.reason()
                },
            },
        };
        plan.verdict = Some(verdict);
        plan.classification = Some(classification);
    }

    fn target_of(&self, letter: &OpenedLetter) -> Option<String> {
        letter
            .source()
            .map(str::to_string)
            .or_else(|| self.config.default_target.clone())
    }

    async fn requeue(&self, plans: &mut [Plan], now: DateTime<Utc>) {
        let mut by_queue: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, plan) in plans.iter().enumerate() {
            if let Step::Requeue { queue, .. } = &plan.step {
                by_queue.entry(queue.clone()).or_default().push(index);
            }
        }
        for (queue, indices) in by_queue {
            let outgoing: Vec<OutgoingMessage> = indices
                .iter()
                .map(|&i| self.requeue_message(&plans[i], i, now))
                .collect();
            let results = if same_queue(&queue, self.ports.dlq.queue_id()) {
                // A source that names the DLQ itself: the message would only come back here.
                let refusal = PortError::permanent(
                    "send",
                    &queue,
                    "it is the DLQ being healed, so the message would only come back to it",
                );
                vec![Err(refusal); outgoing.len()]
            } else {
                match self.ports.queues.send(&queue, &outgoing).await {
                    Ok(results) => results,
                    Err(error) => vec![Err(error); outgoing.len()],
                }
            };
            for (&index, result) in indices.iter().zip(results) {
                let plan = &mut plans[index];
                let Step::Requeue {
                    delay_seconds,
                    record_as,
                    ..
                } = plan.step.clone()
                else {
                    continue;
                };
                match result {
                    Ok(_) => {
                        plan.outcome = Some(Outcome::Requeued {
                            queue: queue.clone(),
                            delay_seconds,
                        });
                        plan.record = Some(match record_as {
                            Some(record) => *record,
                            None => plan.ledger_record(RecordedAction::Requeued, None, None, now),
                        });
                    }
                    Err(error) if !error.retryable => {
                        // The source queue is gone: keep the message where a person can find it,
                        // and tell one, since every retryable failure of that queue ends here
                        // until it is back.
                        if let Some(verdict) = plan.verdict.as_mut() {
                            verdict.alert = true;
                        }
                        tracing::warn!(
                            message_id = %plan.letter.message.message_id,
                            queue = %alert::shown_source(&queue),
                            error = %alert::shown_error(&error.to_string()),
                            "cannot re-queue the message; archiving it instead"
                        );
                        let reason = format!("re-queue to {queue} impossible: {error}");
                        plan.alert_error = Some(reason.clone());
                        plan.step = Step::Archive { reason };
                    }
                    Err(error) => plan.step = Step::Fail(error.to_string()),
                }
            }
        }
    }

    fn requeue_message(&self, plan: &Plan, index: usize, now: DateTime<Utc>) -> OutgoingMessage {
        let verdict = plan.verdict.expect("a re-queue has a verdict");
        let class = plan
            .classification
            .as_ref()
            .map_or(FailureClass::Unknown, |c| c.class);
        let first_failed_at = plan.first_failed_at().unwrap_or(now);
        let mut context = plan.letter.context.context().cloned().unwrap_or_else(|| {
            FailureContext::new(
                crate::context::ErrorInfo::message(plan.letter.error_text()),
                now,
            )
        });
        if context.source.is_none() {
            context.source = plan.letter.source().map(str::to_string);
        }
        context.heal = Some(HealState {
            key: plan.key.clone(),
            attempts: verdict.attempt,
            first_failed_at,
            last_class: class,
            extra: Default::default(),
        });
        let mut attributes = plan.letter.message.attributes.clone();
        if attributes.len() < MAX_ATTRIBUTES {
            attributes.insert(
                CONTEXT_ATTRIBUTE.to_string(),
                Attribute::string(context.to_json()),
            );
        }
        let delay_seconds = match plan.step {
            Step::Requeue { delay_seconds, .. } => delay_seconds,
            _ => 0,
        };
        let deduplication_id = plan.letter.message.group_id.as_ref().map(|_| {
            let digest = Sha256::digest(format!("{}#{}", plan.key, verdict.attempt));
            digest[..16].iter().map(|b| format!("{b:02x}")).collect()
        });
        OutgoingMessage {
            entry_id: format!("m{index}"),
            body: plan.letter.message.body.clone(),
            attributes,
            delay_seconds,
            group_id: plan.letter.message.group_id.clone(),
            deduplication_id,
        }
    }

    async fn park(&self, plans: &mut [Plan], now: DateTime<Utc>) {
        let indices: Vec<usize> = plans
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.step, Step::Park { .. } | Step::Repark { .. }))
            .map(|(i, _)| i)
            .collect();
        if indices.is_empty() {
            return;
        }
        let entries: Vec<(String, u32)> = indices
            .iter()
            .map(|&i| {
                let seconds = match plans[i].step {
                    Step::Park { seconds } | Step::Repark { seconds } => seconds,
                    _ => 0,
                };
                (plans[i].letter.message.receipt_handle.clone(), seconds)
            })
            .collect();
        let results = match self.ports.dlq.change_visibility(&entries).await {
            Ok(results) => results,
            Err(error) => vec![Err(error); entries.len()],
        };
        for ((&index, (_, seconds)), result) in indices.iter().zip(entries).zip(results) {
            let plan = &mut plans[index];
            match result {
                Ok(()) => {
                    if matches!(plan.step, Step::Park { .. }) {
                        let due = now + Duration::seconds(seconds as i64);
                        plan.record =
                            Some(plan.ledger_record(RecordedAction::Parked, None, Some(due), now));
                    }
                    plan.outcome = Some(Outcome::Parked { seconds });
                }
                Err(error) => plan.step = Step::Fail(error.to_string()),
            }
        }
    }

    /// The archive objects, one per class, of the messages to archive that are not archived yet.
    fn archive_objects(&self, plans: &mut [Plan], now: DateTime<Utc>) -> ArchiveObjects {
        let mut by_class: BTreeMap<FailureClass, Vec<usize>> = BTreeMap::new();
        for (index, plan) in plans.iter_mut().enumerate() {
            if let (Step::Archive { .. }, None) = (&plan.step, &plan.outcome) {
                if plan.classification.is_none() {
                    plan.classification = Some(Classification {
                        class: FailureClass::Unknown,
                        rule: NO_RULE.into(),
                        signal: None,
                    });
                }
                let class = plan
                    .classification
                    .as_ref()
                    .map_or(FailureClass::Unknown, |c| c.class);
                by_class.entry(class).or_default().push(index);
            }
        }
        let mut objects = ArchiveObjects::default();
        for (class, indices) in by_class {
            // The batch id is derived from the messages, so storing the same batch again after a
            // crash overwrites the object instead of adding a second copy.
            let mut ids: Vec<&str> = indices
                .iter()
                .map(|&i| plans[i].letter.message.message_id.as_str())
                .collect();
            ids.sort_unstable();
            let batch_id: String = Sha256::digest(ids.join("\n"))[..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let object = archive_object_path(&self.config.archive_prefix, class, now, &batch_id);
            let records: Vec<ArchiveRecord> = indices
                .iter()
                .map(|&i| plans[i].archive_record(now))
                .collect();
            objects.batches.push(ArchiveBatch { object, records });
            objects.owners.push(indices);
        }
        objects
    }

    /// Store the objects; one result per object.
    async fn store_archive(&self, objects: &ArchiveObjects) -> EntryResults<()> {
        if objects.batches.is_empty() {
            return Vec::new();
        }
        let mut results = self.ports.archive.store_all(&objects.batches).await;
        // An adapter that answers for fewer objects than it was given stored the rest, if at
        // all, without saying so: those messages stay in the DLQ.
        results.resize_with(objects.batches.len(), || {
            Err(PortError::retryable(
                "store archive",
                &self.config.archive_prefix,
                "the archive gave no result for this object",
            ))
        });
        results
    }

    /// Mark the messages of stored objects archived, with their ledger records, and those of
    /// objects not stored failed.
    fn settle_archive(
        &self,
        plans: &mut [Plan],
        objects: ArchiveObjects,
        results: EntryResults<()>,
        now: DateTime<Utc>,
    ) {
        let owned = objects.batches.into_iter().zip(objects.owners);
        for ((batch, indices), stored) in owned.zip(results) {
            let object = batch.object;
            for (line, &index) in indices.iter().enumerate() {
                let plan = &mut plans[index];
                match &stored {
                    Ok(()) => {
                        let reference = ArchiveRef {
                            object: object.clone(),
                            line: line as u32 + 1,
                        };
                        plan.record = Some(plan.ledger_record(
                            RecordedAction::Archived,
                            Some(reference.to_string()),
                            None,
                            now,
                        ));
                        plan.outcome = Some(Outcome::Archived { reference });
                    }
                    Err(error) => plan.step = Step::Fail(error.to_string()),
                }
            }
        }
    }

    /// Raise the batch's alerts; the metric events about them are returned, to be recorded with
    /// the batch's other metrics in one write.
    async fn raise_alerts(&self, plans: &mut [Plan], now: DateTime<Utc>) -> Vec<MetricEvent> {
        let mut groups: BTreeMap<String, (Alert, Vec<usize>)> = BTreeMap::new();
        // A flood repeats one error text: its fingerprint (normalizing and hashing the text, about
        // 17,000 instructions) is worked out once per class, source and text in the batch.
        let mut fingerprints: HashMap<(FailureClass, Option<&str>, String), String> =
            HashMap::new();
        for (index, plan) in plans.iter().enumerate() {
            let wants_alert = plan.verdict.is_some_and(|v| v.alert) && plan.outcome.is_some();
            if !wants_alert {
                continue;
            }
            let class = plan
                .classification
                .as_ref()
                .map_or(FailureClass::Unknown, |c| c.class);
            let error = plan
                .alert_error
                .clone()
                .unwrap_or_else(|| plan.letter.error_text());
            let source = plan.letter.source();
            let fingerprint = fingerprints
                .entry((class, source, error.clone()))
                .or_insert_with(|| alert::fingerprint(class, &error, source))
                .clone();
            let entry = groups.entry(fingerprint.clone()).or_insert_with(|| {
                (
                    Alert {
                        fingerprint,
                        class,
                        source: source.map(alert::shown_source),
                        count: 0,
                        sample_keys: Vec::new(),
                        error: alert::shown_error(&error),
                        digest: false,
                        first_seen: now,
                        last_seen: now,
                    },
                    Vec::new(),
                )
            });
            entry.0.count += 1;
            if entry.0.sample_keys.len() < MAX_SAMPLE_KEYS {
                entry.0.sample_keys.push(plan.key.clone());
            }
            entry.1.push(index);
        }
        if groups.is_empty() {
            return Vec::new();
        }
        // One call per class, so the dedup outcome can be counted per class.
        type ClassAlerts = (Vec<Alert>, Vec<(String, Vec<usize>)>);
        let mut by_class: BTreeMap<FailureClass, ClassAlerts> = BTreeMap::new();
        for (fingerprint, (alert, members)) in groups {
            let entry = by_class.entry(alert.class).or_default();
            entry.0.push(alert);
            entry.1.push((fingerprint, members));
        }
        let mut events = Vec::new();
        for (class, (alerts, members_by_fingerprint)) in by_class {
            let members = members_by_fingerprint
                .iter()
                .map(|(_, m)| m.len())
                .sum::<usize>();
            match self.ports.alerter.raise(alerts, now).await {
                Ok(report) => {
                    // The ledger, the report and the metrics count each message once: alerted
                    // when its alert went out, held back when the window kept it for the digest.
                    let mut held_back = 0;
                    for (fingerprint, indexes) in &members_by_fingerprint {
                        let held = report.held_back.contains(fingerprint);
                        if held {
                            held_back += indexes.len();
                        }
                        for &index in indexes {
                            let plan = &mut plans[index];
                            plan.alert = if held {
                                AlertOutcome::HeldBack
                            } else {
                                AlertOutcome::Sent
                            };
                            if let Some(record) = &mut plan.record {
                                record.alerted = !held;
                                record.alert_held_back = held;
                            }
                        }
                    }
                    events.push(MetricEvent {
                        name: m::ALERTED,
                        class: Some(class),
                        value: (members - held_back) as f64,
                    });
                    events.push(MetricEvent {
                        name: m::ALERTS_SUPPRESSED,
                        class: Some(class),
                        value: held_back as f64,
                    });
                }
                Err(error) => {
                    // The message itself is safe (re-queued or archived); re-handling it to retry
                    // the alert would duplicate that action, so the ledger says alerted = false.
                    tracing::error!(%error, %class, "raising alerts failed; the ledger records these messages as not alerted");
                    events.push(MetricEvent {
                        name: m::HEALER_ERRORS,
                        class: None,
                        value: members as f64,
                    });
                }
            }
        }
        events
    }

    async fn record(&self, plans: &mut [Plan]) {
        let records: Vec<LedgerRecord> = plans.iter().filter_map(|p| p.record.clone()).collect();
        if records.is_empty() {
            return;
        }
        if let Err(error) = self.ports.ledger.record(&records).await {
            tracing::error!(
                %error,
                messages = records.len(),
                "acted on these messages but could not record it; they stay in the DLQ and will be acted on again"
            );
            for plan in plans.iter_mut().filter(|p| p.record.is_some()) {
                plan.outcome = None;
                plan.step = Step::Fail(format!("acted, but {error}; the message stays in the DLQ"));
            }
        }
    }

    async fn delete_settled(&self, reports: &mut [MessageReport]) {
        let indices: Vec<usize> = (0..reports.len())
            .filter(|&i| reports[i].is_settled())
            .collect();
        if indices.is_empty() {
            return;
        }
        let handles: Vec<String> = indices
            .iter()
            .map(|&i| reports[i].receipt_handle.clone())
            .collect();
        let results = match self.ports.dlq.delete(&handles).await {
            Ok(results) => results,
            Err(error) => vec![Err(error); handles.len()],
        };
        for (&index, result) in indices.iter().zip(results) {
            match result {
                Ok(()) => reports[index].deleted = true,
                Err(error) => tracing::warn!(
                    message_id = %reports[index].message_id,
                    %error,
                    "handled but not deleted; the redelivery will find it in the ledger"
                ),
            }
        }
    }

    /// Record, in one write, the handling of a batch and how long it took, what became of its
    /// messages (received and each outcome by class, duplicates, errors, the mean age of the
    /// messages handled) and the alert events.
    fn emit_metrics<'r>(
        &self,
        reports: impl Iterator<Item = &'r MessageReport>,
        alert_events: Vec<MetricEvent>,
        now: DateTime<Utc>,
        took: std::time::Duration,
    ) {
        let mut events = alert_events;
        events.extend([
            MetricEvent {
                name: m::HEALER_INVOCATIONS,
                class: None,
                value: 1.0,
            },
            MetricEvent {
                name: m::HEALER_DURATION_MS,
                class: None,
                value: took.as_secs_f64() * 1000.0,
            },
        ]);
        let mut counts: BTreeMap<(&'static str, Option<FailureClass>), f64> = BTreeMap::new();
        let mut ages: BTreeMap<Option<FailureClass>, (f64, u32)> = BTreeMap::new();
        for report in reports {
            if let (Some(first_failed_at), true) = (report.first_failed_at, report.is_settled())
                && report.outcome != Outcome::AlreadyHandled
            {
                let age = ages.entry(report.class).or_default();
                age.0 += (now - first_failed_at).num_milliseconds().max(0) as f64 / 1000.0;
                age.1 += 1;
            }
            let mut count = |name: &'static str, class: Option<FailureClass>| {
                *counts.entry((name, class)).or_default() += 1.0
            };
            match &report.outcome {
                Outcome::AlreadyHandled => count(m::DUPLICATES, None),
                Outcome::Failed { .. } => count(m::HEALER_ERRORS, None),
                outcome => {
                    let class = report.class;
                    count(m::RECEIVED, class);
                    match outcome {
                        Outcome::Requeued { .. } => count(m::REQUEUED, class),
                        Outcome::Parked { .. } => count(m::PARKED, class),
                        _ => count(m::ARCHIVED, class),
                    }
                }
            }
        }
        events.extend(
            counts
                .into_iter()
                .map(|((name, class), value)| MetricEvent { name, class, value }),
        );
        // One sample per class and batch: the mean age of the messages handled.
        events.extend(ages.into_iter().map(|(class, (sum, count))| MetricEvent {
            name: m::MESSAGE_AGE_SECONDS,
            class,
            value: sum / count as f64,
        }));
        self.ports.metrics.record(now, &events);
    }

    /// Send the alert digests `due` says (those of closed windows after each batch; every one
    /// that holds repeats back when the healer stops); how many went out.
    pub async fn send_alert_digests(&self, due: DigestsDue) -> Result<u64, PortError> {
        let now = self.clock.now();
        let alerter = &self.ports.alerter;
        let report = match due {
            DigestsDue::OfClosedWindows => alerter.flush_digests(now).await?,
            DigestsDue::HeldBackNow => alerter.send_held_back_digests(now).await?,
        };
        Ok(report.sent)
    }
}

/// The classification a ledger record holds, for a message that is not classified again.
fn recorded_classification(record: &LedgerRecord) -> Classification {
    Classification {
        class: record.class,
        rule: record.rule.as_str().into(),
        signal: None,
    }
}

/// On a FIFO queue the messages of one group go back to their source in the order the batch
/// holds them. Each message's backoff is drawn on its own, so without this a message whose draw
/// came out shorter would overtake an earlier one of its group: a message behind a parked one of
/// its group is parked (again) at least as long. (Between batches the DLQ keeps the order itself:
/// it hands out no message of a group while an earlier one is parked in flight.)
fn keep_group_order(plans: &mut [Plan]) {
    let mut parked_for: HashMap<String, u32> = HashMap::new();
    for plan in plans.iter_mut() {
        let Some(group) = &plan.letter.message.group_id else {
            continue;
        };
        if let Some(&ahead) = parked_for.get(group) {
            match &mut plan.step {
                // A message already parked whose time came: it stays parked behind the other.
                Step::Requeue {
                    record_as: Some(_), ..
                } => plan.step = Step::Repark { seconds: ahead },
                Step::Requeue { .. } => plan.step = Step::Park { seconds: ahead },
                Step::Park { seconds } | Step::Repark { seconds } => {
                    *seconds = (*seconds).max(ahead);
                }
                Step::Archive { .. } | Step::DeleteOnly | Step::Fail(_) => {}
            }
        }
        if let Step::Park { seconds } | Step::Repark { seconds } = plan.step {
            parked_for.insert(group.clone(), seconds);
        }
    }
}

/// Twins in one batch (see [`Engine::plan`]): of the copies of one key, with one body, about to
/// take the same attempt, the first is handled and the others are settled as already handled.
fn settle_twins_within(plans: &mut [Plan]) {
    let mut taken: HashSet<(String, u32, String)> = HashSet::new();
    for plan in plans.iter_mut() {
        let Some(verdict) = &plan.verdict else {
            continue;
        };
        if plan.letter.context_key().is_none() {
            continue;
        }
        let attempt = (plan.key.clone(), verdict.attempt, plan.digest.clone());
        if !taken.insert(attempt) {
            plan.verdict = None;
            plan.step = Step::DeleteOnly;
        }
    }
}

/// The earlier deliveries of messages that a batch holds more than once: SQS delivers at least
/// once, and a delivery whose visibility timeout ran out while the batch was being received comes
/// again in a later receive of the same batch. Acting on every copy would re-queue or archive the
/// message twice with no ledger record yet to stop the second, so only the last delivery is
/// handled — its receipt handle is the one SQS deletes by — and the earlier ones are reported
/// as already handled, and not deleted with their stale handles.
struct SupersededDeliveries {
    /// Position in the batch as received, and the delivery.
    earlier: Vec<(usize, ReceivedMessage)>,
}

impl SupersededDeliveries {
    /// The last delivery of each message, in batch order, and the earlier ones set aside.
    fn split(messages: Vec<ReceivedMessage>) -> (Vec<ReceivedMessage>, SupersededDeliveries) {
        let received = messages.len();
        let mut last_position: HashMap<&str, usize> = HashMap::with_capacity(received);
        for (position, message) in messages.iter().enumerate() {
            last_position.insert(message.message_id.as_str(), position);
        }
        let mut superseded = SupersededDeliveries {
            earlier: Vec::new(),
        };
        if last_position.len() == received {
            return (messages, superseded);
        }
        let is_last: Vec<bool> = messages
            .iter()
            .enumerate()
            .map(|(position, m)| last_position[m.message_id.as_str()] == position)
            .collect();
        let mut handled = Vec::with_capacity(last_position.len());
        for (position, message) in messages.into_iter().enumerate() {
            if is_last[position] {
                handled.push(message);
            } else {
                superseded.earlier.push((position, message));
            }
        }
        (handled, superseded)
    }

    /// For each earlier delivery, with its position in the batch, a report with its message's
    /// key and class, already handled — or failed, when its last delivery failed, so that
    /// nothing reports the message settled.
    fn reports(self, handled: &[MessageReport]) -> Vec<(usize, MessageReport)> {
        if self.earlier.is_empty() {
            return Vec::new();
        }
        let of_message: HashMap<&str, &MessageReport> = handled
            .iter()
            .map(|report| (report.message_id.as_str(), report))
            .collect();
        self.earlier
            .into_iter()
            .map(|(position, delivery)| {
                let handled = of_message.get(delivery.message_id.as_str());
                let outcome = match handled.map(|r| &r.outcome) {
                    Some(Outcome::Failed { reason }) => Outcome::Failed {
                        reason: format!(
                            "delivered again in the same batch, and that delivery failed: {reason}"
                        ),
                    },
                    _ => Outcome::AlreadyHandled,
                };
                let report = MessageReport {
                    key: handled.map_or_else(|| delivery.message_id.clone(), |r| r.key.clone()),
                    class: handled.and_then(|r| r.class),
                    rule: handled.and_then(|r| r.rule.clone()),
                    alert: AlertOutcome::None,
                    outcome,
                    deleted: false,
                    first_failed_at: handled.and_then(|r| r.first_failed_at),
                    message_id: delivery.message_id,
                    receipt_handle: delivery.receipt_handle,
                };
                (position, report)
            })
            .collect()
    }

    /// The reports of the whole batch in the order received: those of the handled deliveries
    /// and those of the earlier ones (from [`SupersededDeliveries::reports`]).
    fn merge(
        handled: Vec<MessageReport>,
        mut earlier_reports: Vec<(usize, MessageReport)>,
    ) -> Vec<MessageReport> {
        if earlier_reports.is_empty() {
            return handled;
        }
        earlier_reports.reverse();
        let received = handled.len() + earlier_reports.len();
        let mut handled = handled.into_iter();
        (0..received)
            .filter_map(|position| match earlier_reports.last() {
                Some((at, _)) if *at == position => earlier_reports.pop().map(|(_, r)| r),
                _ => handled.next(),
            })
            .collect()
    }
}

/// A batch's archive objects and, for each, the indices of the plans whose records it holds,
/// in line order.
#[derive(Default)]
struct ArchiveObjects {
    batches: Vec<ArchiveBatch>,
    owners: Vec<Vec<usize>>,
}

/// Run two futures at once, polling `first` first, so that work it hands to another thread
/// starts before `second` runs.
async fn both<A: Future, B: Future>(first: A, second: B) -> (A::Output, B::Output) {
    let (mut first, mut second) = (std::pin::pin!(first), std::pin::pin!(second));
    let (mut first_out, mut second_out) = (None, None);
    std::future::poll_fn(|cx| {
        if first_out.is_none()
            && let Poll::Ready(out) = first.as_mut().poll(cx)
        {
            first_out = Some(out);
        }
        if second_out.is_none()
            && let Poll::Ready(out) = second.as_mut().poll(cx)
        {
            second_out = Some(out);
        }
        match (first_out.take(), second_out.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (first_out, second_out) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}

impl Plan {
    fn first_failed_at(&self) -> Option<DateTime<Utc>> {
        let context = self.letter.context.context();
        context
            .and_then(|c| c.heal.as_ref().map(|h| h.first_failed_at))
            .or_else(|| context.map(|c| c.failed_at))
            .or(self.letter.message.sent_at)
    }

    fn ledger_record(
        &self,
        action: RecordedAction,
        archive_ref: Option<String>,
        due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> LedgerRecord {
        let classification = self.classification.as_ref();
        LedgerRecord {
            key: self.key.clone(),
            attempt: self.verdict.map_or_else(
                || {
                    self.history
                        .iter()
                        .map(|r| r.attempt)
                        .max()
                        .unwrap_or(0)
                        .saturating_add(1)
                },
                |v| v.attempt,
            ),
            class: classification.map_or(FailureClass::Unknown, |c| c.class),
            rule: classification.map_or_else(|| NO_RULE.to_string(), |c| c.rule.to_string()),
            action,
            alerted: false,
            alert_held_back: false,
            at: now,
            source: self.letter.source().map(alert::shown_source),
            archive_ref,
            error: alert::shown_error(&self.letter.error_text()),
            dlq_message_id: self.letter.message.message_id.clone(),
            body_digest: self.digest.clone(),
            due_at,
        }
    }

    fn archive_record(&self, now: DateTime<Utc>) -> ArchiveRecord {
        let classification = self.classification.as_ref();
        let reason = match &self.step {
            Step::Archive { reason } => reason.clone(),
            _ => String::new(),
        };
        let body = &self.letter.message.body;
        let (text, b64) = match std::str::from_utf8(body) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(crate::serde_b64::encode(body))),
        };
        ArchiveRecord {
            key: self.key.clone(),
            attempt: self.verdict.map_or(1, |v| v.attempt),
            class: classification.map_or(FailureClass::Unknown, |c| c.class),
            rule: classification.map_or_else(|| NO_RULE.to_string(), |c| c.rule.to_string()),
            reason,
            body: text,
            body_b64: b64,
            attributes: self.letter.message.attributes.clone(),
            context: self.letter.raw_context(),
            context_problem: self.letter.context.problem(),
            source: self.letter.source().map(str::to_string),
            log_url: self
                .letter
                .context
                .context()
                .and_then(|c| c.log_url.clone()),
            message_id: self.letter.message.message_id.clone(),
            receive_count: self.letter.message.receive_count,
            group_id: self.letter.message.group_id.clone(),
            first_failed_at: self.first_failed_at(),
            archived_at: now,
            history: self.history.clone(),
        }
    }

    fn into_report(self) -> MessageReport {
        let first_failed_at = self.first_failed_at();
        let outcome = match (self.outcome, self.step) {
            (_, Step::Fail(reason)) => Outcome::Failed { reason },
            (Some(outcome), _) => outcome,
            (None, Step::DeleteOnly) => Outcome::AlreadyHandled,
            (None, step) => Outcome::Failed {
                reason: format!("internal: step {step:?} finished without an outcome"),
            },
        };
        MessageReport {
            first_failed_at,
            message_id: self.letter.message.message_id,
            receipt_handle: self.letter.message.receipt_handle,
            key: self.key,
            class: self.classification.as_ref().map(|c| c.class),
            rule: self.classification.map(|c| c.rule.to_string()),
            alert: self.alert,
            outcome,
            deleted: false,
        }
    }
}

#[cfg(test)]
mod tests;

/// Whether two queue references (a name, a queue URL or an ARN) name the same queue: the same
/// name, in the same account where both say one.
pub fn same_queue(a: &str, b: &str) -> bool {
    let (name_a, account_a) = queue_name_and_account(a);
    let (name_b, account_b) = queue_name_and_account(b);
    name_a == name_b && (account_a.is_none() || account_b.is_none() || account_a == account_b)
}

/// The name a queue reference ends in, and the account it names, if it names one: an ARN
/// (`arn:aws:sqs:REGION:ACCOUNT:NAME`), a URL (`https://HOST/ACCOUNT/NAME`) or a bare name.
fn queue_name_and_account(reference: &str) -> (&str, Option<&str>) {
    let reference = reference.trim_end_matches('/');
    if let Some(rest) = reference.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.split(':').collect();
        if let [_, _, _, account, name] = parts[..] {
            return (name, Some(account).filter(|a| !a.is_empty()));
        }
    }
    if let Some((_, path)) = reference.split_once("://") {
        let mut segments = path.rsplit('/');
        let name = segments.next().unwrap_or(path);
        let account = segments
            .next()
            .filter(|segment| !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()));
        return (name, account);
    }
    (reference, None)
}
