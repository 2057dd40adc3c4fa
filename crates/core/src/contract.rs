//! The port contract suite: what every adapter must do, whatever is behind it. Each function
//! drives one port through its documented semantics and panics with a message naming the broken
//! rule. The in-memory fakes, the local backend and the AWS adapters (on an emulator) all run it.
//!
//! Nothing here assumes more than SQS promises. Behaviour that only some backends provide (receive
//! order, the redrive source, refusing stale receipt handles) is checked only when the caller says
//! the backend has it, in [`QueueCapabilities`].

use crate::alert::{Alert, DigestsDue};
use crate::class::FailureClass;
use crate::message::{Attribute, Attributes, OutgoingMessage, ReceivedMessage};
use crate::ports::{
    AlertReport, Alerter, Archive, EntryResults, HistoryRequest, Ledger, MessageSource, PortError,
    QueueSender,
};
use crate::records::{ArchiveBatch, ArchiveRecord, ArchiveRef, LedgerRecord, RecordedAction};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

/// What a queue backend promises beyond SQS's guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCapabilities {
    /// Messages sent together are received in send order (SQS standard queues do not promise it).
    pub ordered: bool,
    /// Messages moved by native redrive carry their source queue in `redrive_source`.
    pub redrive_source: bool,
    /// A receipt handle of an earlier delivery is refused once the message was received again.
    pub refuses_stale_handles: bool,
    /// Changing the visibility of a message that is not in flight is refused.
    pub refuses_visibility_of_visible: bool,
}

impl QueueCapabilities {
    /// Only what SQS promises.
    pub const SQS: QueueCapabilities = QueueCapabilities {
        ordered: false,
        redrive_source: false,
        refuses_stale_handles: false,
        refuses_visibility_of_visible: false,
    };

    /// Everything this suite can check.
    pub const ALL: QueueCapabilities = QueueCapabilities {
        ordered: true,
        redrive_source: true,
        refuses_stale_handles: true,
        refuses_visibility_of_visible: true,
    };
}

const NO_WAIT: StdDuration = StdDuration::ZERO;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Receive until `count` messages arrived or `tries` receives came back short, and return them.
async fn receive_up_to(
    source: &dyn MessageSource,
    count: usize,
    tries: usize,
) -> Vec<ReceivedMessage> {
    let mut out: Vec<ReceivedMessage> = Vec::new();
    for _ in 0..tries {
        if out.len() >= count {
            break;
        }
        let got = source
            .receive(10, NO_WAIT)
            .await
            .unwrap_or_else(|e| panic!("contract: receive from {} failed: {e}", source.queue_id()));
        assert!(
            got.len() <= 10,
            "contract: receive returned {} messages, more than the maximum of 10",
            got.len()
        );
        out.extend(got);
    }
    out
}

fn all_ok<T: std::fmt::Debug>(what: &str, results: &EntryResults<T>, expected: usize) {
    assert_eq!(
        results.len(),
        expected,
        "contract: {what} must return one result per entry"
    );
    for (index, result) in results.iter().enumerate() {
        assert!(
            result.is_ok(),
            "contract: {what} entry {index} failed: {result:?}"
        );
    }
}

fn entry_refused<T: std::fmt::Debug>(
    what: &str,
    outcome: &Result<EntryResults<T>, PortError>,
    index: usize,
) {
    match outcome {
        Err(_) => {}
        Ok(results) => assert!(
            results.get(index).is_some_and(Result::is_err),
            "contract: {what} must be refused, got {results:?}"
        ),
    }
}

/// Drain a queue completely (delete everything visible), so a contract step starts clean.
async fn drain(source: &dyn MessageSource) -> usize {
    let mut drained = 0;
    loop {
        let got = receive_up_to(source, 10, 1).await;
        if got.is_empty() {
            return drained;
        }
        drained += got.len();
        let handles: Vec<String> = got.into_iter().map(|m| m.receipt_handle).collect();
        source
            .delete(&handles)
            .await
            .unwrap_or_else(|e| panic!("contract: delete while draining failed: {e}"));
    }
}

fn message(entry_id: &str, body: &str, tag: &str) -> OutgoingMessage {
    let mut attributes = Attributes::new();
    attributes.insert("tag".into(), Attribute::string(tag));
    OutgoingMessage {
        attributes,
        ..OutgoingMessage::new(entry_id, body.as_bytes().to_vec())
    }
}

/// The queue contract, on an empty queue `queue_name` that `source` receives from and whose
/// visibility timeout is at least 10 seconds. `advance` moves the backend's clock forward (or
/// sleeps, for a real one). Leaves the queue empty.
pub async fn queue_contract(
    sender: &dyn QueueSender,
    source: &dyn MessageSource,
    queue_name: &str,
    advance: &dyn Fn(Duration),
    capabilities: QueueCapabilities,
) {
    assert!(
        receive_up_to(source, 1, 1).await.is_empty(),
        "contract: the queue must start empty"
    );

    // Send a batch: one id per entry, all different.
    let batch = vec![
        message("a", "{\"n\":1}", "one"),
        message("b", "{\"n\":2}", "two"),
        message("c", "{\"n\":3}", "three"),
    ];
    let sent = sender
        .send(queue_name, &batch)
        .await
        .unwrap_or_else(|e| panic!("contract: send to {queue_name} failed: {e}"));
    all_ok("send", &sent, 3);
    let ids: Vec<String> = sent.into_iter().map(|r| r.unwrap_or_default()).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "contract: message ids must differ: {ids:?}"
    );

    // Receive them all once: count 1, body and attributes intact, distinct handles.
    let first = receive_up_to(source, 3, 10).await;
    assert_eq!(
        first.len(),
        3,
        "contract: three sent messages must be received, got {first:?}"
    );
    let by_id: BTreeMap<&str, &ReceivedMessage> =
        first.iter().map(|m| (m.message_id.as_str(), m)).collect();
    for (id, sent) in ids.iter().zip(&batch) {
        let got = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("contract: message {id} was not received"));
        assert_eq!(got.body, sent.body, "contract: body of {id} changed");
        assert_eq!(
            got.attributes.get("tag"),
            sent.attributes.get("tag"),
            "contract: attributes of {id} changed"
        );
        assert_eq!(
            got.receive_count, 1,
            "contract: first delivery must have receive count 1"
        );
    }
    assert_eq!(
        first
            .iter()
            .map(|m| &m.receipt_handle)
            .collect::<BTreeSet<_>>()
            .len(),
        3,
        "contract: receipt handles must differ"
    );
    if capabilities.ordered {
        let order: Vec<&String> = first.iter().map(|m| &m.message_id).collect();
        assert_eq!(
            order,
            ids.iter().collect::<Vec<_>>(),
            "contract: messages must be received oldest first"
        );
    }

    // In flight: invisible.
    assert!(
        receive_up_to(source, 1, 2).await.is_empty(),
        "contract: received messages must be invisible during their visibility timeout"
    );

    let get = |id: &String| -> ReceivedMessage {
        first
            .iter()
            .find(|m| &m.message_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("contract: message {id} missing"))
    };
    let (one, two, three) = (get(&ids[0]), get(&ids[1]), get(&ids[2]));

    // Delete one; deleting it again is refused (or at least harmless).
    let deleted = source
        .delete(std::slice::from_ref(&one.receipt_handle))
        .await
        .unwrap_or_else(|e| panic!("contract: delete failed: {e}"));
    all_ok("delete", &deleted, 1);
    if capabilities.refuses_stale_handles {
        let again = source
            .delete(std::slice::from_ref(&one.receipt_handle))
            .await;
        entry_refused("deleting an already deleted message", &again, 0);
    }

    // Release two at once: it comes back with count 2 and a new handle.
    let released = source
        .change_visibility(&[(two.receipt_handle.clone(), 0)])
        .await
        .unwrap_or_else(|e| panic!("contract: change visibility failed: {e}"));
    all_ok("change visibility to 0", &released, 1);
    let again = receive_up_to(source, 1, 5).await;
    assert_eq!(
        again.len(),
        1,
        "contract: a message made visible again must be received again, got {again:?}"
    );
    let two_again = &again[0];
    assert_eq!(two_again.message_id, two.message_id);
    assert_eq!(
        two_again.receive_count, 2,
        "contract: the second delivery must have receive count 2"
    );
    assert_ne!(
        two_again.receipt_handle, two.receipt_handle,
        "contract: every delivery must get a new receipt handle"
    );
    if capabilities.refuses_stale_handles {
        let stale = source
            .delete(std::slice::from_ref(&two.receipt_handle))
            .await;
        entry_refused("deleting with the handle of an earlier delivery", &stale, 0);
        let stale = source
            .change_visibility(&[(two.receipt_handle.clone(), 10)])
            .await;
        entry_refused(
            "changing visibility with the handle of an earlier delivery",
            &stale,
            0,
        );
    }

    // Shorten three's timeout and let it pass: it comes back.
    let shortened = source
        .change_visibility(&[(three.receipt_handle.clone(), 1)])
        .await
        .unwrap_or_else(|e| panic!("contract: change visibility failed: {e}"));
    all_ok("change visibility to 1 s", &shortened, 1);
    advance(Duration::seconds(2));
    let back = receive_up_to(source, 1, 5).await;
    assert_eq!(
        back.iter().map(|m| &m.message_id).collect::<Vec<_>>(),
        vec![&three.message_id],
        "contract: a message must come back when its visibility timeout passes"
    );
    if capabilities.refuses_visibility_of_visible {
        // Let its timeout lapse, then try to extend it: it is no longer in flight.
        let lapse = source
            .change_visibility(&[(back[0].receipt_handle.clone(), 1)])
            .await
            .unwrap_or_else(|e| panic!("contract: change visibility failed: {e}"));
        all_ok("change visibility to 1 s", &lapse, 1);
        advance(Duration::seconds(2));
        let late = source
            .change_visibility(&[(back[0].receipt_handle.clone(), 30)])
            .await;
        entry_refused(
            "changing visibility of a message that is not in flight",
            &late,
            0,
        );
        assert_eq!(
            drain(source).await,
            1,
            "contract: exactly one message (the lapsed one) should be left to drain"
        );
    } else {
        drain_handles(source, &back).await;
    }
    drain_handles(source, std::slice::from_ref(two_again)).await;
    assert!(
        receive_up_to(source, 1, 2).await.is_empty(),
        "contract: deleted messages must not come back"
    );

    // Delays: invisible until they pass.
    if !source.is_fifo() {
        let delayed = OutgoingMessage {
            delay_seconds: 3,
            ..message("d", "{\"delayed\":true}", "delayed")
        };
        let sent = sender
            .send(queue_name, std::slice::from_ref(&delayed))
            .await
            .unwrap_or_else(|e| panic!("contract: send with delay failed: {e}"));
        all_ok("send with delay", &sent, 1);
        assert!(
            receive_up_to(source, 1, 2).await.is_empty(),
            "contract: a delayed message must not be received before its delay passes"
        );
        advance(Duration::seconds(4));
        let arrived = receive_up_to(source, 1, 5).await;
        assert_eq!(
            arrived.len(),
            1,
            "contract: a delayed message must arrive after its delay"
        );
        assert_eq!(arrived[0].body, delayed.body);
        drain_handles(source, &arrived).await;
    }

    // Limits: each refused as an entry error (or the whole call), never silently sent.
    let too_late = OutgoingMessage {
        delay_seconds: 901,
        ..message("late", "x", "late")
    };
    let mut crowded = message("crowded", "x", "crowded");
    for i in 0..11 {
        crowded
            .attributes
            .insert(format!("a{i}"), Attribute::string("v"));
    }
    let huge = OutgoingMessage::new("huge", vec![b'x'; 1_048_577]);
    for (what, bad) in [
        ("a delay over 900 s", too_late),
        ("more than 10 attributes", crowded),
        ("a body over 1 MiB", huge),
    ] {
        let outcome = sender.send(queue_name, std::slice::from_ref(&bad)).await;
        entry_refused(&format!("sending a message with {what}"), &outcome, 0);
    }
    assert!(
        receive_up_to(source, 1, 2).await.is_empty(),
        "contract: refused messages must not be enqueued"
    );

    // A queue that does not exist: a permanent error, for the call or every entry.
    let missing = format!("{queue_name}-missing-{:x}", rand::random::<u32>());
    match sender.send(&missing, &[message("m", "x", "missing")]).await {
        Err(error) => assert!(
            !error.retryable,
            "contract: sending to a missing queue must be a permanent error: {error}"
        ),
        Ok(results) => assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| !e.retryable)),
            "contract: sending to a missing queue must be a permanent error: {results:?}"
        ),
    }

    // A batch of 12: no receive returns more than 10, and all arrive.
    if !source.is_fifo() {
        let many: Vec<OutgoingMessage> = (0..12)
            .map(|i| message(&format!("m{i}"), &format!("{{\"i\":{i}}}"), "many"))
            .collect();
        for chunk in many.chunks(10) {
            let sent = sender
                .send(queue_name, chunk)
                .await
                .unwrap_or_else(|e| panic!("contract: send failed: {e}"));
            all_ok("send", &sent, chunk.len());
        }
        let one_call = source
            .receive(50, NO_WAIT)
            .await
            .unwrap_or_else(|e| panic!("contract: receive failed: {e}"));
        assert!(
            one_call.len() <= 10 && !one_call.is_empty(),
            "contract: receive(50) must return between 1 and 10 messages, got {}",
            one_call.len()
        );
        drain_handles(source, &one_call).await;
        assert_eq!(
            one_call.len() + drain(source).await,
            12,
            "contract: all 12 messages must arrive exactly once"
        );
    }
}

async fn drain_handles(source: &dyn MessageSource, messages: &[ReceivedMessage]) {
    let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    let results = source
        .delete(&handles)
        .await
        .unwrap_or_else(|e| panic!("contract: delete failed: {e}"));
    all_ok("delete", &results, handles.len());
}

/// The native redrive contract: `source` receives from `queue_name`, whose redrive policy moves
/// messages to the queue `dlq` receives from after `max_receive_count` deliveries. Both start
/// empty; both are left empty.
pub async fn redrive_contract(
    sender: &dyn QueueSender,
    source: &dyn MessageSource,
    queue_name: &str,
    dlq: &dyn MessageSource,
    max_receive_count: u32,
    capabilities: QueueCapabilities,
) {
    let mut outgoing = message("r", "{\"redrive\":true}", "redrive");
    if source.is_fifo() {
        outgoing.group_id = Some("g".into());
        outgoing.deduplication_id = Some(unique("dedup"));
    }
    let sent = sender
        .send(queue_name, std::slice::from_ref(&outgoing))
        .await
        .unwrap_or_else(|e| panic!("contract: send failed: {e}"));
    all_ok("send", &sent, 1);
    let id = sent
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    for delivery in 1..=max_receive_count {
        let got = receive_up_to(source, 1, 5).await;
        assert_eq!(
            got.len(),
            1,
            "contract: delivery {delivery} of {max_receive_count} must happen"
        );
        assert_eq!(got[0].message_id, id);
        assert_eq!(
            got[0].receive_count, delivery,
            "contract: receive count must grow by one per delivery"
        );
        let released = source
            .change_visibility(&[(got[0].receipt_handle.clone(), 0)])
            .await
            .unwrap_or_else(|e| panic!("contract: change visibility failed: {e}"));
        all_ok("change visibility to 0", &released, 1);
    }
    let beyond = receive_up_to(source, 1, 2).await;
    assert!(
        beyond.is_empty(),
        "contract: a message delivered {max_receive_count} times must go to the DLQ, not be delivered again: {beyond:?}"
    );
    let dead = receive_up_to(dlq, 1, 10).await;
    assert_eq!(
        dead.len(),
        1,
        "contract: the redriven message must arrive in the DLQ"
    );
    assert_eq!(
        dead[0].message_id, id,
        "contract: redrive keeps the message id"
    );
    assert_eq!(
        dead[0].body, outgoing.body,
        "contract: redrive keeps the body"
    );
    assert_eq!(
        dead[0].attributes.get("tag"),
        outgoing.attributes.get("tag"),
        "contract: redrive keeps the attributes"
    );
    if capabilities.redrive_source {
        let source_name = dead[0]
            .redrive_source
            .as_deref()
            .unwrap_or_else(|| panic!("contract: a redriven message must name its source queue"));
        assert!(
            source_name.ends_with(queue_name.rsplit(['/', ':']).next().unwrap_or(queue_name)),
            "contract: redrive source {source_name:?} must name {queue_name}"
        );
    }
    drain_handles(dlq, &dead).await;
}

/// A re-queued ledger record for tests.
pub fn ledger_record(key: &str, attempt: u32, at: DateTime<Utc>, digest: &str) -> LedgerRecord {
    LedgerRecord {
        key: key.to_string(),
        attempt,
        class: FailureClass::Timeout,
        rule: "timeouts".into(),
        action: RecordedAction::Requeued,
        alerted: false,
        alert_held_back: false,
        at,
        source: Some("orders".into()),
        archive_ref: None,
        error: "timed out".into(),
        dlq_message_id: format!("m-{key}-{attempt}"),
        body_digest: digest.to_string(),
        due_at: None,
    }
}

/// The ledger contract: identity (key, attempt), history in attempt order, latest key per digest.
/// Uses fresh random keys, so a shared table is fine.
pub async fn ledger_contract(ledger: &dyn Ledger) {
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let (k1, k2, missing) = (unique("key"), unique("key"), unique("missing"));
    let (digest, other_digest) = (unique("digest"), unique("digest"));
    let first = ledger_record(&k1, 1, t0, &digest);
    let second = LedgerRecord {
        alert_held_back: true,
        ..ledger_record(&k1, 2, t0 + Duration::minutes(1), &digest)
    };
    let newer_key = ledger_record(&k2, 1, t0 + Duration::minutes(5), &digest);
    let elsewhere = ledger_record(&k2, 2, t0 + Duration::minutes(6), &other_digest);
    ledger
        .record(&[
            second.clone(),
            first.clone(),
            newer_key.clone(),
            elsewhere.clone(),
        ])
        .await
        .unwrap_or_else(|e| panic!("contract: ledger write failed: {e}"));

    // Writing the same identity again replaces it.
    let replaced = LedgerRecord {
        action: RecordedAction::Archived,
        alerted: true,
        archive_ref: Some("archive/timeout/2026/11/27/b.jsonl#1".into()),
        ..first.clone()
    };
    ledger
        .record(std::slice::from_ref(&replaced))
        .await
        .unwrap_or_else(|e| panic!("contract: ledger write failed: {e}"));
    ledger
        .record(std::slice::from_ref(&replaced))
        .await
        .unwrap_or_else(|e| panic!("contract: ledger write failed: {e}"));

    let history = ledger
        .history(&[
            HistoryRequest {
                key: k1.clone(),
                up_to_attempt: 10,
            },
            HistoryRequest {
                key: missing.clone(),
                up_to_attempt: 10,
            },
        ])
        .await
        .unwrap_or_else(|e| panic!("contract: ledger read failed: {e}"));
    assert!(
        !history.contains_key(&missing),
        "contract: keys without records must be absent from history"
    );
    assert_eq!(
        history.get(&k1),
        Some(&vec![replaced.clone(), second.clone()]),
        "contract: history must hold one record per attempt, oldest attempt first, as last written"
    );

    let keys = ledger
        .keys_by_digest(&[digest.clone(), other_digest.clone(), unique("digest")])
        .await
        .unwrap_or_else(|e| panic!("contract: ledger read failed: {e}"));
    assert_eq!(
        keys.len(),
        2,
        "contract: digests never seen must be absent: {keys:?}"
    );
    assert_eq!(
        keys.get(&digest).map(|m| (&m.key, m.attempt)),
        Some((&k2, 1)),
        "contract: a digest maps to the key and attempt recorded most recently"
    );
    assert_eq!(keys.get(&other_digest).map(|m| &m.key), Some(&k2));
    let bounded = ledger
        .history(&[HistoryRequest {
            key: k1.clone(),
            up_to_attempt: 1,
        }])
        .await
        .unwrap_or_else(|e| panic!("contract: ledger read failed: {e}"));
    assert_eq!(
        bounded.get(&k1).and_then(|records| records.first()),
        Some(&replaced),
        "contract: a bounded history still holds the attempts within its bound"
    );
    let empty = ledger
        .history(&[])
        .await
        .unwrap_or_else(|e| panic!("contract: ledger read failed: {e}"));
    assert!(empty.is_empty(), "contract: no keys, no history");
}

/// An archive record for tests: UTF-8 body when `body` is text, base64 otherwise.
pub fn sample_archive_record(key: &str, body: &[u8], at: DateTime<Utc>) -> ArchiveRecord {
    let text = std::str::from_utf8(body).ok().map(str::to_string);
    let mut attributes = Attributes::new();
    attributes.insert("tenant".into(), Attribute::string("acme"));
    ArchiveRecord {
        key: key.to_string(),
        attempt: 1,
        class: FailureClass::Validation,
        rule: "validation".into(),
        reason: "the consumer refused the content".into(),
        body_b64: text.is_none().then(|| crate::serde_b64::encode(body)),
        body: text,
        attributes,
        context: Some(
            serde_json::json!({"v": 1, "error": {"message": "bad"}, "failed_at": "2026-11-27T10:00:00Z"}),
        ),
        context_problem: None,
        source: Some("orders".into()),
        log_url: None,
        message_id: format!("m-{key}"),
        receive_count: 1,
        group_id: None,
        first_failed_at: Some(at),
        archived_at: at,
        history: Vec::new(),
    }
}

/// The archive contract: store a batch (one record with a non-UTF-8 body), fetch each line back,
/// overwrite the object, and refuse lines and objects that do not exist. Objects go under
/// `prefix`.
pub async fn archive_contract(archive: &dyn Archive, prefix: &str) {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let object =
        crate::records::archive_object_path(prefix, FailureClass::Validation, at, &unique("batch"));
    let text = sample_archive_record(&unique("key"), b"{\"order\":1}", at);
    let binary = sample_archive_record(&unique("key"), &[0xff, 0xfe, 0x00, 0x41], at);
    let batch = ArchiveBatch {
        object: object.clone(),
        records: vec![text.clone(), binary.clone()],
    };
    archive
        .store(&batch)
        .await
        .unwrap_or_else(|e| panic!("contract: archive store failed: {e}"));
    for (line, expected) in [(1, &text), (2, &binary)] {
        let reference = ArchiveRef {
            object: object.clone(),
            line,
        };
        let fetched = archive
            .fetch(&reference)
            .await
            .unwrap_or_else(|e| panic!("contract: fetch {reference} failed: {e}"));
        assert_eq!(
            &fetched, expected,
            "contract: {reference} must read back as stored"
        );
    }
    let fetched = archive
        .fetch(&ArchiveRef {
            object: object.clone(),
            line: 2,
        })
        .await
        .unwrap_or_else(|e| panic!("contract: fetch failed: {e}"));
    assert_eq!(
        fetched.body_bytes(),
        Ok(vec![0xff, 0xfe, 0x00, 0x41]),
        "contract: a non-UTF-8 body must round-trip"
    );
    assert!(
        archive
            .fetch(&ArchiveRef {
                object: object.clone(),
                line: 3
            })
            .await
            .is_err(),
        "contract: a line past the end must be an error"
    );
    assert!(
        archive
            .fetch(&ArchiveRef {
                object: format!("{object}.missing"),
                line: 1
            })
            .await
            .is_err(),
        "contract: an object that does not exist must be an error"
    );

    // Storing the same object again overwrites it.
    let replacement = sample_archive_record(&unique("key"), b"{\"order\":2}", at);
    archive
        .store(&ArchiveBatch {
            object: object.clone(),
            records: vec![replacement.clone()],
        })
        .await
        .unwrap_or_else(|e| panic!("contract: archive store failed: {e}"));
    let fetched = archive
        .fetch(&ArchiveRef {
            object: object.clone(),
            line: 1,
        })
        .await
        .unwrap_or_else(|e| panic!("contract: fetch failed: {e}"));
    assert_eq!(
        fetched, replacement,
        "contract: storing an object again overwrites it"
    );
    assert!(
        archive
            .fetch(&ArchiveRef { object, line: 2 })
            .await
            .is_err(),
        "contract: an overwritten object keeps none of its old lines"
    );
}

/// An alert about one message for tests.
pub fn sample_alert(fingerprint: &str, key: &str, at: DateTime<Utc>) -> Alert {
    Alert {
        fingerprint: fingerprint.to_string(),
        class: FailureClass::Auth,
        source: Some("orders".into()),
        count: 1,
        sample_keys: vec![key.to_string()],
        error: "401 Unauthorized".into(),
        digest: false,
        first_seen: at,
        last_seen: at,
    }
}

/// Raise `alerts` at `now`; the report.
async fn raised(alerter: &dyn Alerter, alerts: Vec<Alert>, now: DateTime<Utc>) -> AlertReport {
    alerter
        .raise(alerts, now)
        .await
        .unwrap_or_else(|e| panic!("contract: raise failed: {e}"))
}

/// Send the digests `due` at `now`; how many went out.
async fn digests_sent(alerter: &dyn Alerter, now: DateTime<Utc>, due: DigestsDue) -> u64 {
    let report = match due {
        DigestsDue::OfClosedWindows => alerter.flush_digests(now).await,
        DigestsDue::HeldBackNow => alerter.send_held_back_digests(now).await,
    };
    report
        .unwrap_or_else(|e| panic!("contract: sending digests ({due:?}) failed: {e}"))
        .sent
}

/// The alerter contract with a dedup window of `window`: the first alert of a fingerprint goes
/// out, the rest of its window is held back, and the digest goes out once when the window closed.
pub async fn alerter_contract(alerter: &dyn Alerter, window: Duration) {
    let t0 = Utc::now();
    let fingerprint = unique("fp");
    let report = raised(alerter, vec![sample_alert(&fingerprint, "k1", t0)], t0).await;
    assert_eq!(
        (report.sent, report.suppressed),
        (1, 0),
        "contract: the first alert of a fingerprint goes out at once"
    );
    let t1 = t0 + window / 10;
    let report = raised(
        alerter,
        vec![
            sample_alert(&fingerprint, "k2", t1),
            sample_alert(&fingerprint, "k3", t1),
        ],
        t1,
    )
    .await;
    assert_eq!(
        (report.sent, report.suppressed),
        (0, 2),
        "contract: alerts within the window are held back"
    );
    assert_eq!(
        report.held_back,
        BTreeSet::from([fingerprint.clone()]),
        "contract: the report names the fingerprints held back"
    );
    let other = raised(alerter, vec![sample_alert(&unique("fp"), "k4", t1)], t1).await;
    assert_eq!(
        other.sent, 1,
        "contract: another fingerprint has its own window"
    );
    assert!(
        other.held_back.is_empty(),
        "contract: an alert that went out is not held back"
    );
    let early = digests_sent(alerter, t1, DigestsDue::OfClosedWindows).await;
    assert_eq!(early, 0, "contract: no digest before the window closes");
    let stopping = digests_sent(alerter, t1, DigestsDue::HeldBackNow).await;
    assert_eq!(
        stopping, 1,
        "contract: a stopping process sends the digest of the open window that holds repeats \
         back, and none for the window that holds none"
    );
    let twice = digests_sent(alerter, t1, DigestsDue::HeldBackNow).await;
    assert_eq!(twice, 0, "contract: a held-back digest goes out once");
    let still_open = raised(alerter, vec![sample_alert(&fingerprint, "k6", t1)], t1).await;
    assert_eq!(
        (still_open.sent, still_open.suppressed),
        (0, 1),
        "contract: the window stays open after its held-back digest"
    );
    let closed = t0 + window + Duration::seconds(1);
    let flushed = digests_sent(alerter, closed, DigestsDue::OfClosedWindows).await;
    assert_eq!(
        flushed, 1,
        "contract: one digest goes out when the window closed"
    );
    let again = digests_sent(
        alerter,
        closed + Duration::seconds(1),
        DigestsDue::OfClosedWindows,
    )
    .await;
    assert_eq!(again, 0, "contract: a digest goes out only once");
    let later = raised(
        alerter,
        vec![sample_alert(&fingerprint, "k5", closed)],
        closed,
    )
    .await;
    assert_eq!(
        (later.sent, later.suppressed),
        (1, 0),
        "contract: after a window closed, the next alert goes out at once"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use crate::testing::{MemoryAlerter, MemoryArchive, MemoryLedger, MemoryQueues};
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_queues_pass_the_queue_contract() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queues = MemoryQueues::new(clock.clone());
        let source = queues.queue("orders");
        let advance = |by: Duration| clock.advance(by);
        let capabilities = QueueCapabilities {
            redrive_source: false,
            ..QueueCapabilities::ALL
        };
        queue_contract(&*queues, &*source, "orders", &advance, capabilities).await;
    }

    #[tokio::test]
    async fn memory_ledger_passes_the_ledger_contract() {
        ledger_contract(&MemoryLedger::default()).await;
    }

    #[tokio::test]
    async fn memory_archive_passes_the_archive_contract() {
        archive_contract(&MemoryArchive::default(), "archive").await;
    }

    #[tokio::test]
    async fn memory_alerter_passes_the_alerter_contract() {
        alerter_contract(
            &MemoryAlerter::new(Duration::minutes(10)),
            Duration::minutes(10),
        )
        .await;
    }
}
