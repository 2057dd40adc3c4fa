//! Retention: ledger records, sent alerts and metric minutes older than the cutoff go, newer ones
//! stay; the sweeper thread does it at once when started.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::Fixture;
use dlq_healer_core::FailureClass;
use dlq_healer_core::contract::{ledger_record, sample_alert};
use dlq_healer_core::metrics as m;
use dlq_healer_core::ports::{Alerter, Ledger, MetricEvent, Metrics};
use dlq_healer_core::records::LedgerRecord;
use dlq_healer_local::retention::ROWS_PER_TRANSACTION;
use dlq_healer_local::{Forgotten, LocalAlerter, RetentionSweeper};

/// A ledger record of `key`'s first attempt, decided at `at`.
fn record(key: &str, at: DateTime<Utc>) -> LedgerRecord {
    ledger_record(key, 1, at, &format!("d-{key}"))
}

fn received(class: FailureClass) -> MetricEvent {
    MetricEvent {
        name: m::RECEIVED,
        class: Some(class),
        value: 1.0,
    }
}

#[tokio::test]
async fn rows_older_than_the_cutoff_go_and_newer_ones_stay() {
    let fixture = Fixture::new();
    let now = fixture.store.now();
    let days = |n: i64| now - Duration::days(n);
    let ledger = fixture.store.ledger();
    ledger
        .record(&[
            record("old", days(120)),
            record("just-old", days(91)),
            record("just-new", days(89)),
            record("new", now),
        ])
        .await
        .unwrap();
    let metrics = fixture.store.metrics();
    metrics.record(days(100), &[received(FailureClass::Auth)]);
    metrics.record(now, &[received(FailureClass::Auth)]);
    let alerter = LocalAlerter::new(fixture.store.clone(), Duration::minutes(10), None);
    alerter
        .raise(vec![sample_alert("old", "k1", days(95))], days(95))
        .await
        .unwrap();
    alerter
        .raise(vec![sample_alert("new", "k2", now)], now)
        .await
        .unwrap();

    let forgotten = fixture.store.forget_older_than(Duration::days(90)).unwrap();

    assert_eq!(
        forgotten,
        Forgotten {
            ledger_records: 2,
            alerts: 1,
            metric_rows: 1,
        }
    );
    let reopened = fixture.reopen();
    assert!(reopened.ledger().records_by_key("old").unwrap().is_empty());
    assert!(
        reopened
            .ledger()
            .records_by_key("just-old")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        reopened.ledger().records_by_key("just-new").unwrap().len(),
        1
    );
    assert_eq!(reopened.ledger().records_by_key("new").unwrap().len(), 1);
    let alerts = LocalAlerter::new(reopened.clone(), Duration::minutes(10), None);
    let fingerprints: Vec<String> = alerts
        .recent(10)
        .unwrap()
        .into_iter()
        .map(|a| a.fingerprint)
        .collect();
    assert_eq!(fingerprints, vec!["new".to_string()]);
    let received = reopened.metrics().totals_of(m::RECEIVED).unwrap();
    assert_eq!(received.get(&Some(FailureClass::Auth)), Some(&1.0));
    // A second sweep finds nothing more.
    assert_eq!(
        reopened
            .forget_older_than(Duration::days(90))
            .unwrap()
            .total(),
        0
    );
}

#[tokio::test]
async fn more_old_rows_than_one_transaction_takes_all_go() {
    let fixture = Fixture::new();
    let now = fixture.store.now();
    let old = ROWS_PER_TRANSACTION * 2 + 17;
    let mut records: Vec<LedgerRecord> = (0..old)
        .map(|i| {
            record(
                &format!("old-{i}"),
                now - Duration::days(200) + Duration::seconds(i as i64),
            )
        })
        .collect();
    records.push(record("kept", now));
    let ledger = fixture.store.ledger();
    ledger.record(&records).await.unwrap();

    let forgotten = fixture.store.forget_older_than(Duration::days(90)).unwrap();

    assert_eq!(forgotten.ledger_records, old as u64);
    assert_eq!(ledger.count().unwrap(), 1);
    assert_eq!(ledger.records_by_key("kept").unwrap().len(), 1);
}

#[tokio::test]
async fn a_retention_longer_than_all_of_time_keeps_everything() {
    let fixture = Fixture::new();
    let now = fixture.store.now();
    let ledger = fixture.store.ledger();
    ledger
        .record(&[record("ancient", now - Duration::days(1_000))])
        .await
        .unwrap();

    assert_eq!(
        fixture
            .store
            .forget_older_than(Duration::days(100_000_000))
            .unwrap(),
        Forgotten::default()
    );
    assert_eq!(
        fixture
            .store
            .forget_older_than(Duration::days(90))
            .unwrap()
            .ledger_records,
        1
    );
}

#[tokio::test]
async fn the_sweeper_forgets_at_once() {
    let fixture = Fixture::new();
    let now = fixture.store.now();
    let ledger = fixture.store.ledger();
    ledger
        .record(&[record("old", now - Duration::days(91)), record("new", now)])
        .await
        .unwrap();

    let sweeper = RetentionSweeper::start(fixture.store.clone(), Duration::days(90)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ledger.count().unwrap() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first sweep did not run"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(sweeper);
    assert_eq!(ledger.records_by_key("new").unwrap().len(), 1);
}
