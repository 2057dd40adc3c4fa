//! The local archive: files on disk, the index, damaged files.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::Fixture;
use dlq_healer_core::FailureClass;
use dlq_healer_core::contract::sample_archive_record;
use dlq_healer_core::ports::Archive;
use dlq_healer_core::records::{ArchiveBatch, ArchiveRef, archive_object_path};
use dlq_healer_local::LocalArchive;

fn archive(fixture: &Fixture) -> LocalArchive {
    LocalArchive::new(fixture.store.clone(), fixture.dir.path().join("archive")).unwrap()
}

#[tokio::test]
async fn batches_are_json_lines_files_indexed_by_key_and_class() {
    let fixture = Fixture::new();
    let archive = archive(&fixture);
    let day = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let object = archive_object_path("archive", FailureClass::Validation, day, "batch-1");
    let records = vec![
        sample_archive_record("k1", b"{\"a\":1}", day),
        sample_archive_record("k2", &[0x80, 0x81, 0xff], day + Duration::seconds(1)),
    ];
    archive
        .store(&ArchiveBatch {
            object: object.clone(),
            records: records.clone(),
        })
        .await
        .unwrap();

    let file = fixture
        .dir
        .path()
        .join("archive/archive/validation/2026/11/27/batch-1.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("\"body_b64\":\"gIH/\"")
    );
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let found = archive.find_by_key("k2").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].reference,
        ArchiveRef {
            object: object.clone(),
            line: 2
        }
    );
    let fetched = archive.fetch(&found[0].reference).await.unwrap();
    assert_eq!(fetched.body_bytes().unwrap(), vec![0x80, 0x81, 0xff]);
    assert_eq!(fetched, records[1]);

    let by_class = archive
        .query(Some(FailureClass::Validation), Some(day), None, Some(1))
        .unwrap();
    assert_eq!(by_class.len(), 1);
    assert_eq!(by_class[0].key, "k2", "newest first");
    assert!(
        archive
            .query(Some(FailureClass::Auth), None, None, None)
            .unwrap()
            .is_empty()
    );
    assert!(archive.find_by_key("nobody").unwrap().is_empty());
}

#[tokio::test]
async fn a_damaged_line_is_a_clear_error_naming_file_and_line() {
    let fixture = Fixture::new();
    let archive = archive(&fixture);
    let day = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let object = archive_object_path("", FailureClass::Auth, day, "b");
    archive
        .store(&ArchiveBatch {
            object: object.clone(),
            records: vec![
                sample_archive_record("k1", b"x", day),
                sample_archive_record("k2", b"y", day),
            ],
        })
        .await
        .unwrap();
    let second = ArchiveRef {
        object: object.clone(),
        line: 2,
    };
    // Read whole before the damage: the file read is kept for the next record, and must not be
    // taken for the file once it was written over.
    assert_eq!(archive.fetch(&second).await.unwrap().key, "k2");
    let path = archive.object_path(&object).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&path, format!("{first}\n{{\"key\": \"k2\", trunc\n")).unwrap();

    assert!(
        archive
            .fetch(&ArchiveRef {
                object: object.clone(),
                line: 1
            })
            .await
            .is_ok()
    );
    let error = archive.fetch(&second).await.unwrap_err();
    assert!(!error.retryable);
    assert!(error.message.contains("line 2"), "{error}");
    assert!(error.message.contains("b.jsonl"), "{error}");
    assert!(error.message.contains("damaged"), "{error}");
}

#[tokio::test]
async fn objects_outside_the_root_are_refused() {
    let fixture = Fixture::new();
    let archive = archive(&fixture);
    let day = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    for object in ["../escape.jsonl", "/etc/passwd", ""] {
        let error = archive
            .store(&ArchiveBatch {
                object: object.to_string(),
                records: vec![sample_archive_record("k", b"x", day)],
            })
            .await
            .unwrap_err();
        assert!(!error.retryable, "{object}: {error}");
    }
    assert!(!fixture.dir.path().join("escape.jsonl").exists());
}

#[test]
fn an_archive_root_that_cannot_be_created_is_a_clear_error() {
    let fixture = Fixture::new();
    let blocker = fixture.dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let error = LocalArchive::new(fixture.store.clone(), blocker.join("archive")).unwrap_err();
    assert!(error.to_string().contains("archive"), "{error}");
}

#[tokio::test]
async fn store_all_writes_every_object_and_answers_for_each() {
    store_all_answers_for_each_object(Fixture::new()).await;
}

#[test]
fn store_all_works_outside_a_tokio_runtime_too() {
    // Polled by hand: without a runtime the objects are written on threads of their own, and
    // the future is ready at its first poll.
    let mut future = std::pin::pin!(store_all_answers_for_each_object(Fixture::new()));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        future.as_mut().poll(&mut context).is_ready(),
        "store_all waited on something without a runtime"
    );
}

async fn store_all_answers_for_each_object(fixture: Fixture) {
    let archive = archive(&fixture);
    let day = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let batch = |class, key: &str| ArchiveBatch {
        object: archive_object_path("archive", class, day, &format!("batch-{key}")),
        records: vec![sample_archive_record(key, b"{\"a\":1}", day)],
    };
    let batches = vec![
        batch(FailureClass::Auth, "a"),
        ArchiveBatch {
            object: "../outside.jsonl".into(),
            records: vec![sample_archive_record("b", b"{}", day)],
        },
        batch(FailureClass::Validation, "c"),
        batch(FailureClass::BadPayload, "d"),
    ];
    let results = archive.store_all(&batches).await;
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    let refused = results[1].as_ref().unwrap_err();
    assert!(refused.message.contains("'..'"), "{refused}");
    for (index, key) in [(0, "a"), (2, "c"), (3, "d")] {
        let reference = ArchiveRef {
            object: batches[index].object.clone(),
            line: 1,
        };
        assert_eq!(archive.fetch(&reference).await.unwrap().key, key);
        assert_eq!(archive.find_by_key(key).unwrap().len(), 1, "{key} indexed");
    }
    assert!(archive.find_by_key("b").unwrap().is_empty());
    assert!(!fixture.dir.path().join("outside.jsonl").exists());
}
