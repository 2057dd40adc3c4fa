//! Property tests of the local queue against a model: random interleavings of send, receive,
//! visibility expiry, delete, stale deletes and crashes before delete (received, never deleted).
//! Every message is in exactly one place; receive counts grow by one per delivery; redrive to the
//! DLQ happens exactly when a delivery would exceed `max_receive_count`; stale handles are refused.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::Fixture;
use dlq_healer_core::message::OutgoingMessage;
use dlq_healer_core::ports::{MessageSource, QueueSender};
use dlq_healer_local::{LocalQueue, LocalQueues};
use proptest::prelude::*;
use std::collections::BTreeMap;

const VISIBILITY: i64 = 30;

#[derive(Debug, Clone)]
enum Op {
    Send { count: usize, delay: u32 },
    Receive { max: usize },
    ReceiveDlq { max: usize },
    Advance { seconds: i64 },
    Delete { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..4usize, prop_oneof![Just(0u32), Just(5u32)])
            .prop_map(|(count, delay)| Op::Send { count, delay }),
        4 => (1..12usize).prop_map(|max| Op::Receive { max }),
        1 => (1..5usize).prop_map(|max| Op::ReceiveDlq { max }),
        3 => prop_oneof![Just(1i64), Just(10), Just(31), Just(61)]
            .prop_map(|seconds| Op::Advance { seconds }),
        3 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Main,
    Dlq,
    Deleted,
}

#[derive(Debug, Clone)]
struct Model {
    place: Place,
    receive_count: u32,
    visible_at: DateTime<Utc>,
    handle: Option<String>,
}

struct Harness {
    fixture: Fixture,
    queues: LocalQueues,
    main: LocalQueue,
    dlq: LocalQueue,
    max_receive_count: u32,
    model: BTreeMap<String, Model>,
    /// Every handle ever received: (body, handle, queue).
    handles: Vec<(String, String, Place)>,
    sent: usize,
}

impl Harness {
    fn new(max_receive_count: u32) -> Harness {
        let fixture = Fixture::new();
        let queues = fixture.queue_with_dlq("q", VISIBILITY as u32, max_receive_count);
        let main = queues.queue("q").unwrap();
        let dlq = queues.queue("dlq").unwrap();
        Harness {
            fixture,
            queues,
            main,
            dlq,
            max_receive_count,
            model: BTreeMap::new(),
            handles: Vec::new(),
            sent: 0,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.fixture.store.now()
    }

    /// Where the database says each message is.
    fn actual_places(&self) -> BTreeMap<String, (Place, u32)> {
        let connection = rusqlite::Connection::open(self.fixture.store.path()).unwrap();
        // Each message has its payload, and no payload outlives its message.
        let orphans: i64 = connection
            .query_row(
                "SELECT count(*) FROM message_payloads WHERE seq NOT IN (SELECT seq FROM messages)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "payloads left behind by deleted messages");
        let mut statement = connection
            .prepare(
                "SELECT p.body, m.queue, m.receive_count
                 FROM messages AS m LEFT JOIN message_payloads AS p ON p.seq = m.seq",
            )
            .unwrap();
        let rows = statement
            .query_map([], |r| {
                let body: Option<Vec<u8>> = r.get(0)?;
                let queue: String = r.get(1)?;
                let body = body.expect("every message has its payload");
                Ok((String::from_utf8(body).unwrap(), queue, r.get(2)?))
            })
            .unwrap();
        let mut out = BTreeMap::new();
        for row in rows {
            let (body, queue, count) = row.unwrap();
            let place = if queue == "q" {
                Place::Main
            } else {
                Place::Dlq
            };
            assert!(
                out.insert(body.clone(), (place, count)).is_none(),
                "{body} is stored twice"
            );
        }
        out
    }

    /// Every message is in exactly one place, and it is the place the model allows.
    fn check_places(&mut self, after_main_receive: Option<usize>) {
        let actual = self.actual_places();
        let now = self.now();
        for (body, model) in self.model.iter_mut() {
            match (model.place, actual.get(body)) {
                (Place::Deleted, None) => {}
                (Place::Deleted, Some(place)) => panic!("{body} was deleted but is in {place:?}"),
                (_, None) => panic!("{body} was lost: model says {:?}", model.place),
                (Place::Main, Some((Place::Dlq, count))) => {
                    // Only a receive from the main queue moves messages, and only those that
                    // were delivered max_receive_count times and are visible again.
                    assert!(
                        after_main_receive.is_some(),
                        "{body} moved to the DLQ without a receive"
                    );
                    assert_eq!(
                        model.receive_count, self.max_receive_count,
                        "{body} redriven after {} deliveries",
                        model.receive_count
                    );
                    assert!(model.visible_at <= now, "{body} redriven while in flight");
                    assert_eq!(*count, 0, "the DLQ count starts fresh");
                    model.place = Place::Dlq;
                    model.receive_count = 0;
                    model.handle = None;
                    model.visible_at = now;
                }
                (Place::Dlq, Some((Place::Main, _))) => panic!("{body} came back from the DLQ"),
                (place, Some((actual_place, count))) => {
                    assert_eq!(place, *actual_place);
                    assert_eq!(model.receive_count, *count, "{body} receive count");
                }
            }
        }
        assert_eq!(
            actual.len(),
            self.model
                .values()
                .filter(|m| m.place != Place::Deleted)
                .count(),
            "messages appeared from nowhere"
        );
        // A receive that came back short looked at everything visible: nothing visible that
        // was delivered too often stays behind in the main queue.
        if after_main_receive.is_some_and(|shortfall| shortfall > 0) {
            for (body, model) in &self.model {
                assert!(
                    !(model.place == Place::Main
                        && model.visible_at <= now
                        && model.receive_count >= self.max_receive_count),
                    "{body} should have been redriven"
                );
            }
        }
    }

    async fn receive(&mut self, which: Place, max: usize) {
        let now = self.now();
        let source = if which == Place::Main {
            &self.main
        } else {
            &self.dlq
        };
        let got = source
            .receive(max, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(got.len() <= max.min(10), "returned more than asked");
        for message in &got {
            let body = String::from_utf8(message.body.clone()).unwrap();
            let model = self
                .model
                .get_mut(&body)
                .expect("received a message never sent");
            assert_eq!(model.place, which, "{body} received from the wrong queue");
            assert!(model.visible_at <= now, "{body} delivered while invisible");
            assert_eq!(
                message.receive_count,
                model.receive_count + 1,
                "{body}: receive count grows by one per delivery"
            );
            if which == Place::Main {
                assert!(
                    message.receive_count <= self.max_receive_count,
                    "{body} delivered beyond max_receive_count"
                );
                assert_eq!(message.redrive_source, None);
            } else {
                assert_eq!(message.redrive_source.as_deref(), Some("q"));
            }
            assert!(
                !self
                    .handles
                    .iter()
                    .any(|(_, handle, _)| handle == &message.receipt_handle),
                "{body}: every delivery gets a fresh receipt handle"
            );
            model.receive_count += 1;
            model.visible_at = now + Duration::seconds(VISIBILITY);
            model.handle = Some(message.receipt_handle.clone());
            self.handles
                .push((body, message.receipt_handle.clone(), which));
        }
        if which == Place::Main {
            // Now the database must agree, with redrives accounted for.
            self.check_places(Some(max.min(10) - got.len()));
        }
        // Nothing visible and deliverable was left behind by a short receive.
        if got.len() < max.min(10) {
            for (body, model) in &self.model {
                let deliverable = model.place == which
                    && model.visible_at <= now
                    && (which == Place::Dlq || model.receive_count < self.max_receive_count);
                assert!(!deliverable, "{body} was visible but not delivered");
            }
        }
        if which == Place::Dlq {
            // The healer deletes what it took from the DLQ.
            let handles: Vec<String> = got.iter().map(|m| m.receipt_handle.clone()).collect();
            let results = self.dlq.delete(&handles).await.unwrap();
            assert!(results.iter().all(Result::is_ok));
            for message in got {
                let body = String::from_utf8(message.body).unwrap();
                if let Some(model) = self.model.get_mut(&body) {
                    model.place = Place::Deleted;
                }
            }
        }
    }

    async fn apply(&mut self, op: Op) {
        match op {
            Op::Send { count, delay } => {
                let now = self.now();
                let batch: Vec<OutgoingMessage> = (0..count)
                    .map(|i| {
                        self.sent += 1;
                        OutgoingMessage {
                            delay_seconds: delay,
                            ..OutgoingMessage::new(format!("e{i}"), format!("m{}", self.sent))
                        }
                    })
                    .collect();
                let results = self.queues.send("q", &batch).await.unwrap();
                for (message, result) in batch.iter().zip(results) {
                    result.unwrap();
                    self.model.insert(
                        String::from_utf8(message.body.clone()).unwrap(),
                        Model {
                            place: Place::Main,
                            receive_count: 0,
                            visible_at: now + Duration::seconds(i64::from(delay)),
                            handle: None,
                        },
                    );
                }
            }
            Op::Receive { max } => self.receive(Place::Main, max).await,
            Op::ReceiveDlq { max } => self.receive(Place::Dlq, max).await,
            Op::Advance { seconds } => self.fixture.clock.advance(Duration::seconds(seconds)),
            Op::Delete { pick } => {
                if self.handles.is_empty() {
                    return;
                }
                let (body, handle, queue) = self.handles[pick % self.handles.len()].clone();
                let model = self.model.get(&body).cloned().unwrap();
                let current = model.place == queue && model.handle.as_deref() == Some(&handle);
                let source = if queue == Place::Main {
                    &self.main
                } else {
                    &self.dlq
                };
                let results = source.delete(std::slice::from_ref(&handle)).await.unwrap();
                assert_eq!(
                    results[0].is_ok(),
                    current,
                    "delete of {body} with a {} handle: {:?}",
                    if current { "current" } else { "stale" },
                    results[0]
                );
                if current {
                    self.model.get_mut(&body).unwrap().place = Place::Deleted;
                }
            }
        }
        self.check_places(None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_queue_behaves_like_its_model(
        max_receive_count in 1u32..4,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut harness = Harness::new(max_receive_count);
            for op in ops {
                harness.apply(op).await;
            }
            // Drain: everything ends deleted or in the DLQ, nothing lost.
            for _ in 0..(max_receive_count + 2) {
                harness.fixture.clock.advance(Duration::seconds(VISIBILITY + 1));
                for _ in 0..10 {
                    harness.receive(Place::Main, 10).await;
                }
            }
            harness.fixture.clock.advance(Duration::seconds(VISIBILITY + 1));
            harness.receive(Place::Main, 10).await;
            harness.check_places(None);
            let in_main = harness.model.values().filter(|m| m.place == Place::Main).count();
            prop_assert_eq!(in_main, 0, "every message ends in the DLQ or deleted");
            Ok(())
        })?;
    }
}
