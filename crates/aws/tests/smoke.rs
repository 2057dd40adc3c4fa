mod common;

#[tokio::test]
async fn the_emulator_answers_every_service_and_counts_calls() {
    let (clients, counter) = common::counted_clients().await;
    let name = common::unique("smoke");
    let url = clients
        .sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    assert!(url.contains(&name));
    clients
        .s3
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    clients
        .s3
        .put_object()
        .bucket(&name)
        .key("a/b.jsonl")
        .body(b"{}\n".to_vec().into())
        .send()
        .await
        .unwrap();
    clients.sns.create_topic().name(&name).send().await.unwrap();
    clients.dynamodb.list_tables().send().await.unwrap();
    let counts = counter.snapshot();
    assert_eq!(
        counts.operations.get("SQS.CreateQueue"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.operations.get("S3.PutObject"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(counts.total_operations(), 5);
    assert!(counts.total_attempts() >= 5);
}
