//! S3Archive against the emulator: the shared archive contract, encryption and content type,
//! and clear permanent errors for missing objects, missing lines and corrupt lines.

mod common;

use aws_sdk_s3::types::ServerSideEncryption;
use dlq_healer_aws::{AwsClients, S3Archive};
use dlq_healer_core::contract;
use dlq_healer_core::ports::Archive;
use dlq_healer_core::records::{ArchiveBatch, ArchiveRef};

async fn bucket(clients: &AwsClients) -> String {
    let name = common::unique("archive").to_lowercase();
    clients
        .s3
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

#[tokio::test]
async fn s3_passes_the_archive_contract() {
    let clients = common::clients().await;
    let archive = S3Archive::new(clients.s3.clone(), bucket(&clients).await);
    contract::archive_contract(&archive, "archive").await;
}

#[tokio::test]
async fn objects_are_encrypted_json_lines() {
    let clients = common::clients().await;
    let bucket = bucket(&clients).await;
    let at = chrono::Utc::now();
    let records = vec![
        contract::sample_archive_record("k1", b"{\"a\":1}", at),
        contract::sample_archive_record("k2", &[0xff, 0x00], at),
    ];
    for (archive, object, expected) in [
        (
            S3Archive::new(clients.s3.clone(), &bucket),
            "archive/validation/2026/11/27/sse.jsonl",
            ServerSideEncryption::Aes256,
        ),
        (
            S3Archive::new(clients.s3.clone(), &bucket).with_kms_key("alias/dlq-healer"),
            "archive/validation/2026/11/27/kms.jsonl",
            ServerSideEncryption::AwsKms,
        ),
    ] {
        archive
            .store(&ArchiveBatch {
                object: object.into(),
                records: records.clone(),
            })
            .await
            .expect("store");
        let head = clients
            .s3
            .head_object()
            .bucket(&bucket)
            .key(object)
            .send()
            .await
            .expect("head object");
        assert_eq!(head.server_side_encryption(), Some(&expected), "{object}");
        assert_eq!(
            head.content_type(),
            Some("application/x-ndjson"),
            "{object}"
        );
        let body = clients
            .s3
            .get_object()
            .bucket(&bucket)
            .key(object)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        let text = std::str::from_utf8(&body).expect("JSON Lines are UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for (line, record) in lines.iter().zip(&records) {
            let parsed: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
            assert_eq!(parsed["key"], record.key.as_str());
        }
        assert!(text.ends_with('\n'));
    }
}

#[tokio::test]
async fn missing_objects_lines_and_corrupt_lines_are_permanent_errors_naming_what() {
    let clients = common::clients().await;
    let bucket = bucket(&clients).await;
    let archive = S3Archive::new(clients.s3.clone(), &bucket);
    let object = "archive/unknown/2026/11/27/corrupt.jsonl";
    let good = contract::sample_archive_record("k1", b"{}", chrono::Utc::now());
    let mut body = serde_json::to_vec(&good).expect("json");
    body.extend_from_slice(b"\n{\"key\": \"truncated\n");
    clients
        .s3
        .put_object()
        .bucket(&bucket)
        .key(object)
        .body(body.into())
        .send()
        .await
        .expect("put");
    let fetch = |line: u32, object: &str| {
        let reference = ArchiveRef {
            object: object.to_string(),
            line,
        };
        let archive = archive.clone();
        async move { archive.fetch(&reference).await }
    };
    assert_eq!(fetch(1, object).await, Ok(good));
    for (line, object, says) in [
        (2, object, "is not an archive record"),
        (3, object, "has no line 3"),
        (0, object, "start at 1"),
        (1, "archive/nope.jsonl", "does not exist"),
    ] {
        let error = fetch(line, object).await.expect_err("refused");
        assert!(!error.retryable, "{error}");
        let text = error.to_string();
        assert!(text.contains(says), "{text}");
        assert!(text.contains(&bucket) && text.contains(object), "{text}");
        if line > 0 {
            assert!(text.contains(&format!("#{line}")), "{text}");
        }
    }

    let missing_bucket = S3Archive::new(clients.s3.clone(), common::unique("no-bucket"));
    let error = missing_bucket
        .fetch(&ArchiveRef {
            object: object.into(),
            line: 1,
        })
        .await
        .expect_err("no bucket");
    assert!(!error.retryable, "{error}");
    let error = missing_bucket
        .store(&ArchiveBatch {
            object: object.into(),
            records: Vec::new(),
        })
        .await
        .expect_err("no bucket");
    assert!(!error.retryable, "{error}");
    assert!(error.message.contains("NoSuchBucket"), "{error}");
}
