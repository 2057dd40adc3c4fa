//! Ledger queries and idempotency; metrics accumulation.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::Fixture;
use dlq_healer_core::FailureClass;
use dlq_healer_core::metrics as m;
use dlq_healer_core::ports::{Ledger, MetricEvent, Metrics};
use dlq_healer_core::records::{LedgerRecord, RecordedAction};
use dlq_healer_local::LedgerQuery;

fn record(key: &str, attempt: u32, class: FailureClass, minutes: i64) -> LedgerRecord {
    LedgerRecord {
        key: key.into(),
        attempt,
        class,
        rule: "r".into(),
        action: RecordedAction::Archived,
        alerted: true,
        alert_held_back: false,
        at: Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap() + Duration::minutes(minutes),
        source: None,
        archive_ref: Some("a/b.jsonl#3".into()),
        error: "bad".into(),
        dlq_message_id: "m".into(),
        body_digest: format!("d-{key}"),
        due_at: Some(Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()),
    }
}

#[tokio::test]
async fn writing_the_same_key_and_attempt_twice_keeps_one_record() {
    let fixture = Fixture::new();
    let ledger = fixture.store.ledger();
    let first = record("k", 1, FailureClass::Auth, 0);
    ledger
        .record(&[first.clone(), first.clone()])
        .await
        .unwrap();
    ledger.record(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(ledger.count().unwrap(), 1);
    assert_eq!(ledger.records_by_key("k").unwrap(), vec![first]);
}

#[tokio::test]
async fn records_are_queried_by_class_and_time_newest_first() {
    let fixture = Fixture::new();
    let ledger = fixture.store.ledger();
    ledger
        .record(&[
            record("a", 1, FailureClass::Auth, 0),
            record("b", 1, FailureClass::Timeout, 1),
            record("a", 2, FailureClass::Auth, 2),
            record("c", 1, FailureClass::Auth, 3),
        ])
        .await
        .unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let auth = ledger
        .query(&LedgerQuery {
            class: Some(FailureClass::Auth),
            ..Default::default()
        })
        .unwrap();
    let keys: Vec<(String, u32)> = auth.iter().map(|r| (r.key.clone(), r.attempt)).collect();
    assert_eq!(
        keys,
        vec![("c".into(), 1), ("a".into(), 2), ("a".into(), 1)]
    );
    let window = ledger
        .query(&LedgerQuery {
            since: Some(start + Duration::minutes(1)),
            until: Some(start + Duration::minutes(3)),
            limit: Some(10),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(window.len(), 2);
    let limited = ledger
        .query(&LedgerQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited[0].key, "c");
    assert_eq!(ledger.records_by_key("a").unwrap().len(), 2);
}

#[test]
fn metrics_accumulate_per_minute_name_and_class() {
    let fixture = Fixture::new();
    let metrics = fixture.store.metrics();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 5).unwrap();
    let event = |name, class, value| MetricEvent { name, class, value };
    metrics.record(
        t0,
        &[
            event(m::RECEIVED, Some(FailureClass::Auth), 2.0),
            event(m::RECEIVED, Some(FailureClass::Timeout), 1.0),
            event(m::HEALER_DURATION_MS, None, 30.0),
        ],
    );
    metrics.record(
        t0 + Duration::seconds(30),
        &[event(m::RECEIVED, Some(FailureClass::Auth), 3.0)],
    );
    metrics.record(
        t0 + Duration::minutes(2),
        &[
            event(m::RECEIVED, Some(FailureClass::Auth), 1.0),
            event(m::HEALER_DURATION_MS, None, 10.0),
        ],
    );
    // Another connection (a dashboard process) sees the same numbers.
    let dashboard = fixture.reopen().metrics();
    let received = dashboard.totals_of(m::RECEIVED).unwrap();
    assert_eq!(received.get(&Some(FailureClass::Auth)), Some(&6.0));
    assert_eq!(received.get(&Some(FailureClass::Timeout)), Some(&1.0));
    let duration = dashboard
        .totals()
        .unwrap()
        .into_iter()
        .find(|t| t.name == m::HEALER_DURATION_MS)
        .unwrap();
    assert_eq!(
        (duration.class, duration.sum, duration.samples),
        (None, 40.0, 2)
    );
    let series = dashboard.series(t0).unwrap();
    let auth_points: Vec<(i64, f64, u64)> = series
        .iter()
        .filter(|p| p.name == m::RECEIVED && p.class == Some(FailureClass::Auth))
        .map(|p| (p.minute.timestamp() % 3600, p.sum, p.samples))
        .collect();
    assert_eq!(auth_points, vec![(0, 5.0, 2), (120, 1.0, 1)]);
    assert_eq!(
        dashboard.series(t0 + Duration::minutes(1)).unwrap().len(),
        2,
        "only the later minute"
    );
}

#[test]
fn metrics_failures_are_logged_not_raised() {
    let fixture = Fixture::new();
    let metrics = fixture.store.metrics();
    fixture
        .store
        .set_busy_timeout(std::time::Duration::from_millis(100))
        .unwrap();
    let mut blocker = rusqlite::Connection::open(fixture.store.path()).unwrap();
    let tx = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let event = MetricEvent {
        name: m::RECEIVED,
        class: None,
        value: 1.0,
    };
    assert!(metrics.try_record(Utc::now(), &[event]).is_err());
    // Through the port: no panic, no error to the caller.
    metrics.record(Utc::now(), &[event]);
    tx.rollback().unwrap();
    assert!(metrics.totals().unwrap().is_empty());
}
