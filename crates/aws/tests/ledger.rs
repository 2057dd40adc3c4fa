//! The DynamoDB ledger on the emulator: the shared ledger contract, batching (and its call
//! counts), bounded histories, digest items, and the queries by key and by class and time.

mod common;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveSpecification};
use chrono::{DateTime, Duration, TimeZone, Utc};
use dlq_healer_aws::DynamoLedger;
use dlq_healer_aws::ledger::DIGEST_PREFIX;
use dlq_healer_aws::ledger_schema::{CLASS_ATTRIBUTE, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use dlq_healer_core::FailureClass;
use dlq_healer_core::contract;
use dlq_healer_core::ports::{HistoryRequest, Ledger};
use dlq_healer_core::records::{LedgerRecord, RecordedAction};

/// A fresh table with the ledger layout of `ledger_schema`, and TTL on.
async fn create_table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = common::create_ledger_table(client, "ledger").await;
    client
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    name
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

fn record(key: &str, attempt: u32, action: RecordedAction, digest: &str) -> LedgerRecord {
    LedgerRecord {
        key: key.to_string(),
        attempt,
        class: FailureClass::Timeout,
        rule: "timeouts".into(),
        action,
        alerted: false,
        alert_held_back: false,
        at: t0() + Duration::minutes(i64::from(attempt)),
        source: Some("orders".into()),
        archive_ref: None,
        error: "timed out".into(),
        dlq_message_id: format!("m-{key}-{attempt}"),
        body_digest: digest.to_string(),
        due_at: None,
    }
}

async fn item_count(client: &aws_sdk_dynamodb::Client, table: &str) -> (usize, usize) {
    let items = client.scan().table_name(table).send().await.unwrap();
    let digests = items
        .items()
        .iter()
        .filter(|i| {
            i.get(PARTITION_KEY)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with(DIGEST_PREFIX))
        })
        .count();
    (items.items().len() - digests, digests)
}

#[tokio::test]
async fn dynamo_ledger_passes_the_ledger_contract() {
    let clients = common::clients().await;
    let table = create_table(&clients.dynamodb).await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &table);
    contract::ledger_contract(&ledger).await;
    // Twice on the same table: the suite does not need an empty ledger.
    contract::ledger_contract(&ledger).await;
    // 4 records per run (the replaced one counted once); digests: `digest` and `other_digest`.
    assert_eq!(item_count(&clients.dynamodb, &table).await, (8, 4));
}

#[tokio::test]
async fn batches_over_25_with_duplicates_keep_the_last_version() {
    let (clients, counter) = common::counted_clients().await;
    let table = create_table(&clients.dynamodb).await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &table);
    let mut records: Vec<LedgerRecord> = (0..60)
        .map(|i| {
            record(
                &format!("k{i}"),
                1,
                RecordedAction::Archived,
                &format!("d{i}"),
            )
        })
        .collect();
    // Ten identities written twice in the same call: the later version wins.
    for i in 0..10 {
        records.push(LedgerRecord {
            rule: "second version".into(),
            ..record(
                &format!("k{i}"),
                1,
                RecordedAction::Archived,
                &format!("d{i}"),
            )
        });
    }
    counter.reset();
    ledger.record(&records).await.unwrap();
    assert_eq!(
        counter.snapshot().operations.get("DynamoDB.BatchWriteItem"),
        Some(&3),
        "60 distinct items need 3 calls of 25"
    );
    assert_eq!(item_count(&clients.dynamodb, &table).await, (60, 0));
    let k3 = ledger.records_by_key("k3").await.unwrap();
    assert_eq!(k3.len(), 1);
    assert_eq!(k3[0].rule, "second version");
    assert_eq!(
        ledger.records_by_key("k30").await.unwrap()[0].rule,
        "timeouts"
    );
}

#[tokio::test]
async fn histories_are_bounded_and_ordered_by_attempt() {
    let clients = common::clients().await;
    let table = create_table(&clients.dynamodb).await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &table);
    let records: Vec<LedgerRecord> = (1..=5)
        .rev()
        .map(|a| record("key", a, RecordedAction::Requeued, "d"))
        .chain((1..=30).map(|a| record("long", a, RecordedAction::Requeued, "e")))
        .collect();
    ledger.record(&records).await.unwrap();
    let history = ledger
        .history(&[
            HistoryRequest {
                key: "key".into(),
                up_to_attempt: 3,
            },
            HistoryRequest {
                key: "long".into(),
                up_to_attempt: 40,
            },
            HistoryRequest {
                key: "none".into(),
                up_to_attempt: 2,
            },
            HistoryRequest {
                key: "".into(),
                up_to_attempt: 2,
            },
        ])
        .await
        .unwrap();
    let attempts = |key: &str| -> Vec<u32> { history[key].iter().map(|r| r.attempt).collect() };
    assert_eq!(attempts("key"), vec![1, 2, 3]);
    assert_eq!(
        attempts("long"),
        (1..=30).collect::<Vec<_>>(),
        "a Query past the batch bound"
    );
    assert!(!history.contains_key("none"));
    assert_eq!(
        history["key"][1], records[3],
        "records read back as written"
    );
    // The same key asked twice: the larger bound wins.
    let twice = ledger
        .history(&[
            HistoryRequest {
                key: "key".into(),
                up_to_attempt: 2,
            },
            HistoryRequest {
                key: "key".into(),
                up_to_attempt: 4,
            },
        ])
        .await
        .unwrap();
    assert_eq!(twice["key"].len(), 4);
    assert_eq!(ledger.records_by_key("key").await.unwrap().len(), 5);
}

#[tokio::test]
async fn digest_items_are_written_only_for_requeued_and_parked_records() {
    let clients = common::clients().await;
    let table = create_table(&clients.dynamodb).await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &table);
    let parked = LedgerRecord {
        due_at: Some(t0() + Duration::hours(2)),
        ..record("p", 1, RecordedAction::Parked, "dp")
    };
    ledger
        .record(&[
            record("r", 1, RecordedAction::Requeued, "dr"),
            parked.clone(),
            record("a", 1, RecordedAction::Archived, "da"),
        ])
        .await
        .unwrap();
    assert_eq!(item_count(&clients.dynamodb, &table).await, (3, 2));
    let found = ledger
        .keys_by_digest(&["dr".into(), "dp".into(), "da".into(), "".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found["dr"].key, "r");
    assert_eq!(found["dp"].action, RecordedAction::Parked);
    assert!(
        !found.contains_key("da"),
        "archived records leave no digest item"
    );
    assert_eq!(ledger.records_by_key("p").await.unwrap(), vec![parked]);
    // A later archive of "r" keeps the digest item at its last retried record.
    ledger
        .record(&[record("r", 2, RecordedAction::Archived, "dr")])
        .await
        .unwrap();
    let found = ledger.keys_by_digest(&["dr".into()]).await.unwrap();
    assert_eq!(
        (found["dr"].attempt, found["dr"].action),
        (1, RecordedAction::Requeued)
    );
    // Digest items carry no class, so they stay out of the index.
    let item = clients
        .dynamodb
        .get_item()
        .table_name(&table)
        .key(
            PARTITION_KEY,
            AttributeValue::S(format!("{DIGEST_PREFIX}dr")),
        )
        .key(SORT_KEY, AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key(CLASS_ATTRIBUTE));
    assert!(item.contains_key(TTL_ATTRIBUTE));
}

#[tokio::test]
async fn queries_by_class_and_time_use_the_index() {
    let (clients, counter) = common::counted_clients().await;
    let table = create_table(&clients.dynamodb).await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &table);
    let mut records = Vec::new();
    for i in 0..10u32 {
        let class = if i % 2 == 0 {
            FailureClass::Auth
        } else {
            FailureClass::Timeout
        };
        records.push(LedgerRecord {
            class,
            at: t0() + Duration::minutes(i64::from(i)),
            ..record(
                &format!("q{i}"),
                1,
                RecordedAction::Requeued,
                &format!("d{i}"),
            )
        });
    }
    ledger.record(&records).await.unwrap();
    counter.reset();
    let keys =
        |found: &[LedgerRecord]| -> Vec<String> { found.iter().map(|r| r.key.clone()).collect() };
    let auth = ledger
        .query(FailureClass::Auth, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        keys(&auth),
        vec!["q8", "q6", "q4", "q2", "q0"],
        "newest first"
    );
    assert_eq!(
        counter.snapshot().operations.get("DynamoDB.Query"),
        Some(&1)
    );
    let window = ledger
        .query(
            FailureClass::Auth,
            Some(t0() + Duration::minutes(2)),
            Some(t0() + Duration::minutes(6)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&window),
        vec!["q4", "q2"],
        "since inclusive, until exclusive"
    );
    let since = ledger
        .query(
            FailureClass::Timeout,
            Some(t0() + Duration::minutes(5)),
            None,
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!(keys(&since), vec!["q9", "q7"]);
    let until = ledger
        .query(
            FailureClass::Timeout,
            None,
            Some(t0() + Duration::minutes(3)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(keys(&until), vec!["q1"]);
    assert!(
        ledger
            .query(FailureClass::Validation, None, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(since[0], records[9]);
}

#[tokio::test]
async fn reading_100_digests_is_one_call_and_writing_100_records_is_four() {
    let (clients, counter) = common::counted_clients().await;
    let table = create_table(&clients.dynamodb).await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &table);

    let archived: Vec<LedgerRecord> = (0..100)
        .map(|i| {
            record(
                &format!("a{i}"),
                1,
                RecordedAction::Archived,
                &format!("x{i}"),
            )
        })
        .collect();
    counter.reset();
    ledger.record(&archived).await.unwrap();
    let writes = counter.snapshot().operations["DynamoDB.BatchWriteItem"];
    assert_eq!(writes, 4, "100 records, 25 per call");

    // Re-queued records bring their digest items along in the same calls.
    let requeued: Vec<LedgerRecord> = (0..100)
        .map(|i| {
            record(
                &format!("r{i}"),
                1,
                RecordedAction::Requeued,
                &format!("y{i}"),
            )
        })
        .collect();
    counter.reset();
    ledger.record(&requeued).await.unwrap();
    let writes_with_digests = counter.snapshot().operations["DynamoDB.BatchWriteItem"];
    assert_eq!(writes_with_digests, 8, "100 records + 100 digest items");

    let digests: Vec<String> = (0..100).map(|i| format!("y{i}")).collect();
    counter.reset();
    let found = ledger.keys_by_digest(&digests).await.unwrap();
    assert_eq!(found.len(), 100);
    assert_eq!(
        counter.snapshot().operations.get("DynamoDB.BatchGetItem"),
        Some(&1)
    );
    assert_eq!(counter.snapshot().total_operations(), 1);

    let requests: Vec<HistoryRequest> = (0..100)
        .map(|i| HistoryRequest {
            key: format!("r{i}"),
            up_to_attempt: 1,
        })
        .collect();
    counter.reset();
    let history = ledger.history(&requests).await.unwrap();
    assert_eq!(history.len(), 100);
    assert_eq!(counter.snapshot().total_operations(), 1);
    // Bounded at 2 attempts: 200 keys, two calls.
    let requests: Vec<HistoryRequest> = requests
        .into_iter()
        .map(|r| HistoryRequest {
            up_to_attempt: 2,
            ..r
        })
        .collect();
    counter.reset();
    ledger.history(&requests).await.unwrap();
    assert_eq!(counter.snapshot().operations["DynamoDB.BatchGetItem"], 2);
    println!(
        "calls: 100 archived records -> {writes} BatchWriteItem; 100 re-queued -> {writes_with_digests}; 100 digests -> 1 BatchGetItem"
    );
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error() {
    let clients = common::clients().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), common::unique("missing"));
    let error = ledger
        .record(&[record("k", 1, RecordedAction::Archived, "d")])
        .await
        .unwrap_err();
    assert!(!error.retryable, "{error}");
    let error = ledger.keys_by_digest(&["d".into()]).await.unwrap_err();
    assert!(!error.retryable, "{error}");
    assert!(ledger.history(&[]).await.unwrap().is_empty());
}
