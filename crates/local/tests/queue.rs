//! Queue behaviour beyond the shared contract: depths, purge, FIFO, settings, limits.

mod common;

use chrono::Duration;
use common::Fixture;
use dlq_healer_core::message::{Attribute, OutgoingMessage, ReceivedMessage};
use dlq_healer_core::ports::{MessageSource, QueueSender};
use dlq_healer_local::queue::MAX_MESSAGE_BYTES;
use dlq_healer_local::{LocalError, QueueDepth, QueueSettings};
use std::time::Duration as StdDuration;

const NOW: StdDuration = StdDuration::ZERO;

#[tokio::test]
async fn depths_count_visible_in_flight_and_delayed() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let mut batch: Vec<OutgoingMessage> = (0..3)
        .map(|i| OutgoingMessage::new(format!("{i}"), "x"))
        .collect();
    batch[2].delay_seconds = 60;
    queues.send("orders", &batch).await.unwrap();
    let source = queues.queue("orders").unwrap();
    let got = source.receive(1, NOW).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        queues.depth("orders").unwrap(),
        QueueDepth {
            visible: 1,
            in_flight: 1,
            delayed: 1
        }
    );
    fixture.clock.advance(Duration::seconds(61));
    assert_eq!(queues.depth("orders").unwrap().visible, 3);
    assert_eq!(queues.depths().unwrap()[0].0.name, "orders");
    assert_eq!(queues.purge("orders").unwrap(), 3);
    assert_eq!(queues.depth("orders").unwrap().total(), 0);
    assert!(matches!(
        queues.depth("nope").unwrap_err(),
        LocalError::NoSuchQueue(_)
    ));
}

#[tokio::test]
async fn receive_takes_the_oldest_visible_first() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues.create_queue("q", QueueSettings::default()).unwrap();
    let mut late = OutgoingMessage::new("late", "late");
    late.delay_seconds = 5;
    queues.send("q", &[late]).await.unwrap();
    fixture.clock.advance(Duration::seconds(1));
    queues
        .send("q", &[OutgoingMessage::new("early", "early")])
        .await
        .unwrap();
    fixture.clock.advance(Duration::seconds(10));
    let got = queues.queue("q").unwrap().receive(10, NOW).await.unwrap();
    let bodies: Vec<&[u8]> = got.iter().map(|m| m.body.as_slice()).collect();
    // "early" became visible at t=1, "late" at t=5.
    assert_eq!(bodies, vec![b"early".as_slice(), b"late".as_slice()]);
    assert!(got.iter().all(|m| m.sent_at.is_some()));
}

#[tokio::test]
async fn fifo_queues_keep_group_order_and_deduplicate() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders.fifo", QueueSettings::default().fifo())
        .unwrap();
    let message = |id: &str, group: &str, dedup: &str| OutgoingMessage {
        group_id: Some(group.into()),
        deduplication_id: Some(dedup.into()),
        ..OutgoingMessage::new(id, id.as_bytes().to_vec())
    };
    let sent = queues
        .send(
            "orders.fifo",
            &[
                message("a1", "a", "d1"),
                message("a2", "a", "d2"),
                message("b1", "b", "d3"),
                message("dup", "a", "d1"),
            ],
        )
        .await
        .unwrap();
    let ids: Vec<String> = sent.into_iter().map(Result::unwrap).collect();
    assert_eq!(ids[3], ids[0], "a duplicate gets the original's id");
    assert_eq!(queues.depth("orders.fifo").unwrap().visible, 3);

    let no_group = queues
        .send("orders.fifo", &[OutgoingMessage::new("x", "x")])
        .await
        .unwrap();
    assert!(no_group[0].as_ref().unwrap_err().message.contains("group"));

    let source = queues.queue("orders.fifo").unwrap();
    assert!(source.is_fifo());
    let first = source.receive(1, NOW).await.unwrap();
    assert_eq!(first[0].body, b"a1");
    // a2 waits while a1 is in flight; b1 is free.
    let second = source.receive(10, NOW).await.unwrap();
    assert_eq!(
        second.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        vec![b"b1".to_vec()]
    );
    source
        .delete(&[first[0].receipt_handle.clone()])
        .await
        .unwrap();
    let third = source.receive(10, NOW).await.unwrap();
    assert_eq!(third[0].body, b"a2");
    // After five minutes the deduplication id may be used again.
    fixture.clock.advance(Duration::minutes(6));
    let again = queues
        .send("orders.fifo", &[message("d1-again", "c", "d1")])
        .await
        .unwrap();
    assert_ne!(again[0].as_ref().unwrap(), &ids[0]);
}

#[tokio::test]
async fn limits_are_entry_errors_and_the_rest_of_the_batch_goes_through() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues.create_queue("q", QueueSettings::default()).unwrap();
    let exact = OutgoingMessage::new("exact", vec![b'a'; MAX_MESSAGE_BYTES]);
    let mut over = OutgoingMessage::new("over", vec![b'a'; MAX_MESSAGE_BYTES - 3]);
    over.attributes.insert("k".into(), Attribute::string("v"));
    let mut delayed = OutgoingMessage::new("delayed", "x");
    delayed.delay_seconds = 900;
    let mut too_late = OutgoingMessage::new("too-late", "x");
    too_late.delay_seconds = 901;
    let empty = OutgoingMessage::new("empty", Vec::new());
    let results = queues
        .send("q", &[exact, over, delayed, too_late, empty])
        .await
        .unwrap();
    assert!(results[0].is_ok(), "exactly 1 MiB is allowed");
    let over_error = results[1].as_ref().unwrap_err();
    assert!(
        over_error.message.contains("over the maximum"),
        "{over_error}"
    );
    assert!(!over_error.retryable);
    assert!(results[2].is_ok(), "900 s is allowed");
    assert!(results[3].as_ref().unwrap_err().message.contains("901"));
    assert!(results[4].is_err(), "empty bodies are refused like SQS");
    assert_eq!(queues.depth("q").unwrap().total(), 2);
}

#[tokio::test]
async fn a_missing_queue_is_a_permanent_error() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    let error = queues
        .send("local://nowhere", &[OutgoingMessage::new("e", "x")])
        .await
        .unwrap_err();
    assert!(!error.retryable);
    assert!(error.message.contains("nowhere"), "{error}");
    assert!(matches!(
        queues.queue("nowhere").unwrap_err(),
        LocalError::NoSuchQueue(_)
    ));
}

#[test]
fn queue_settings_are_checked_and_updated() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    let missing_dlq = queues
        .create_queue("orders", QueueSettings::default().with_redrive("dlq", 3))
        .unwrap_err();
    assert!(matches!(missing_dlq, LocalError::NoSuchQueue(ref q) if q == "dlq"));
    assert!(
        queues
            .create_queue("bad name!", QueueSettings::default())
            .is_err()
    );
    assert!(
        queues
            .create_queue(
                "q",
                QueueSettings::default().with_visibility_timeout(43_201)
            )
            .is_err()
    );
    queues
        .create_queue("dlq", QueueSettings::default())
        .unwrap();
    assert!(
        queues
            .create_queue("orders", QueueSettings::default().with_redrive("dlq", 0))
            .is_err()
    );
    assert!(
        queues
            .create_queue(
                "orders.fifo",
                QueueSettings::default().fifo().with_redrive("dlq", 3)
            )
            .unwrap_err()
            .to_string()
            .contains("must both be FIFO or both standard"),
        "a FIFO queue needs a FIFO DLQ"
    );
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    queues
        .create_queue("orders", QueueSettings::default().with_redrive("dlq", 4))
        .unwrap();
    let listed = queues.list_queues().unwrap();
    assert_eq!(listed.len(), 2);
    let orders = listed.iter().find(|q| q.name == "orders").unwrap();
    assert_eq!(
        orders.settings.redrive.as_ref().unwrap().max_receive_count,
        4
    );
    assert_eq!(
        queues.queue_settings("orders").unwrap(),
        Some(orders.settings.clone())
    );
    assert_eq!(queues.queue_settings("nope").unwrap(), None);
}

#[test]
fn a_fifo_queue_is_named_dot_fifo_and_only_a_fifo_queue_is() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    let error = queues
        .create_queue("orders", QueueSettings::default().fifo())
        .unwrap_err()
        .to_string();
    assert!(error.contains("call it orders.fifo"), "{error}");
    let error = queues
        .create_queue("orders.fifo", QueueSettings::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("is a FIFO queue, as on SQS"), "{error}");
    assert_eq!(queues.list_queues().unwrap().len(), 0);
}

#[test]
fn a_queue_cannot_change_between_standard_and_fifo() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("orders", QueueSettings::default())
        .unwrap();
    let error = queues
        .create_queue("orders", QueueSettings::default().fifo())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("is a standard queue and cannot become a FIFO one"),
        "{error}"
    );
    queues
        .create_queue("groups.fifo", QueueSettings::default().fifo())
        .unwrap();
    let error = queues
        .create_queue("groups.fifo", QueueSettings::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("is a FIFO queue and cannot become a standard one"),
        "{error}"
    );
    assert!(!queues.queue_settings("orders").unwrap().unwrap().fifo);
    assert!(queues.queue_settings("groups.fifo").unwrap().unwrap().fifo);
}

#[tokio::test]
async fn visibility_timeout_zero_does_not_deliver_twice_in_one_receive() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("q", QueueSettings::default().with_visibility_timeout(0))
        .unwrap();
    queues
        .send("q", &[OutgoingMessage::new("e", "x")])
        .await
        .unwrap();
    let source = queues.queue("q").unwrap();
    let got = source.receive(10, NOW).await.unwrap();
    assert_eq!(got.len(), 1);
    let again = source.receive(10, NOW).await.unwrap();
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test]
async fn a_queue_tells_its_visibility_timeout_as_set_now() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("q", QueueSettings::default().with_visibility_timeout(7))
        .unwrap();
    let source = queues.queue("q").unwrap();
    assert_eq!(
        source.visibility_timeout().await.unwrap(),
        Some(StdDuration::from_secs(7))
    );
    queues
        .create_queue("q", QueueSettings::default().with_visibility_timeout(45))
        .unwrap();
    assert_eq!(
        source.visibility_timeout().await.unwrap(),
        Some(StdDuration::from_secs(45)),
        "a queue opened before its settings changed reads the new timeout"
    );
}

#[tokio::test]
async fn long_polling_returns_when_a_message_arrives() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues.create_queue("q", QueueSettings::default()).unwrap();
    let source = queues.queue("q").unwrap();
    let started = std::time::Instant::now();
    assert!(
        source
            .receive(10, StdDuration::from_millis(250))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= StdDuration::from_millis(250));
    let sender = queues.clone();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(StdDuration::from_millis(150)).await;
        sender
            .send("q", &[OutgoingMessage::new("e", "late")])
            .await
            .unwrap();
    });
    let got = source
        .receive(10, StdDuration::from_secs(10))
        .await
        .unwrap();
    producer.await.unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn receive_batch_hands_out_a_whole_batch_once_with_sqs_semantics() {
    let fixture = Fixture::new();
    let queues = fixture.queue_with_dlq("orders", 30, 2);
    for chunk in 0..15 {
        let batch: Vec<OutgoingMessage> = (0..10)
            .map(|i| OutgoingMessage::new(format!("{i}"), format!("m{}", chunk * 10 + i)))
            .collect();
        queues.send("orders", &batch).await.unwrap();
    }
    let source = queues.queue("orders").unwrap();
    // A plain receive still stops at SQS's ten.
    let first = source.receive(100, NOW).await.unwrap();
    assert_eq!(first.len(), 10);
    let batch = source.receive_batch(120, NOW, &|| false).await.unwrap();
    assert_eq!(batch.len(), 120);
    let rest = receive_everything(&source).await;
    assert_eq!(rest.len(), 20);
    assert!(receive_everything(&source).await.is_empty());
    let delivered: Vec<_> = first.iter().chain(&batch).chain(&rest).collect();
    let mut bodies: Vec<&[u8]> = delivered.iter().map(|m| m.body.as_slice()).collect();
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies.len(), 150, "each message delivered once");
    let mut handles: Vec<&str> = delivered
        .iter()
        .map(|m| m.receipt_handle.as_str())
        .collect();
    handles.sort_unstable();
    handles.dedup();
    assert_eq!(handles.len(), 150, "a fresh receipt handle per delivery");
    assert!(delivered.iter().all(|m| m.receive_count == 1));
    assert_eq!(queues.depth("orders").unwrap().in_flight, 150);

    // After the visibility timeout: delivered again, counted, with new handles.
    fixture.clock.advance(Duration::seconds(31));
    let again = receive_everything(&source).await;
    assert_eq!(again.len(), 150);
    assert!(again.iter().all(|m| m.receive_count == 2));
    let stale = source
        .delete(&[batch[0].receipt_handle.clone()])
        .await
        .unwrap();
    assert!(stale[0].is_err(), "a handle of an earlier receive is stale");

    // At maxReceiveCount, the receive redrives them instead of delivering a third time.
    fixture.clock.advance(Duration::seconds(31));
    assert!(receive_everything(&source).await.is_empty());
    assert_eq!(queues.depth("orders").unwrap().total(), 0);
    assert_eq!(queues.depth("dlq").unwrap().visible, 150);
}

async fn receive_everything(source: &impl MessageSource) -> Vec<ReceivedMessage> {
    source.receive_batch(1000, NOW, &|| false).await.unwrap()
}

#[tokio::test]
async fn a_handle_is_honoured_only_for_its_own_delivery_on_its_own_queue() {
    let fixture = Fixture::new();
    let queues = fixture.queue_with_dlq("orders", 30, 5);
    queues
        .create_queue("other", QueueSettings::default())
        .unwrap();
    let batch: Vec<OutgoingMessage> = (0..2)
        .map(|i| OutgoingMessage::new(format!("{i}"), format!("m{i}")))
        .collect();
    queues.send("orders", &batch).await.unwrap();
    let source = queues.queue("orders").unwrap();
    let got = source.receive(10, NOW).await.unwrap();
    assert_eq!(got.len(), 2);
    let (first, second) = (&got[0].receipt_handle, &got[1].receipt_handle);
    let (first_row, first_random) = first.split_once('-').expect("row-random");
    let (second_row, _) = second.split_once('-').expect("row-random");
    assert_ne!(first_row, second_row);

    let refused = |results: Vec<Result<(), dlq_healer_core::ports::PortError>>| {
        results
            .into_iter()
            .map(|r| r.expect_err("refused").to_string())
            .collect::<Vec<_>>()
    };
    // Another row's number with this delivery's random part, a handle without a row number, and
    // a real handle on another queue: each finds nothing.
    let forged = format!("{second_row}-{first_random}");
    let errors = refused(
        source
            .delete(&[forged.clone(), "no-row-number".into(), "42".into()])
            .await
            .unwrap(),
    );
    let (stale, not_issued) = ("is stale", "was not issued by this queue");
    let say = |errors: &[String], expected: &[&str]| {
        assert_eq!(errors.len(), expected.len());
        for (error, expected) in errors.iter().zip(expected) {
            assert!(error.contains(expected), "{error}");
        }
    };
    say(&errors, &[stale, not_issued, not_issued]);
    let elsewhere = queues.queue("other").unwrap();
    say(
        &refused(elsewhere.delete(std::slice::from_ref(first)).await.unwrap()),
        &[stale],
    );
    let errors = refused(
        source
            .change_visibility(&[(forged, 60), ("no-row-number".into(), 60)])
            .await
            .unwrap(),
    );
    say(&errors, &[stale, not_issued]);
    assert_eq!(
        queues.depth("orders").unwrap().in_flight,
        2,
        "nothing deleted"
    );

    // The real handles still work.
    let deleted = source
        .delete(&[first.clone(), second.clone()])
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    assert_eq!(queues.depth("orders").unwrap().total(), 0);
}

#[tokio::test]
async fn a_paged_peek_reads_each_message_visible_at_its_start_once_without_receiving_it() {
    let fixture = Fixture::new();
    let queues = fixture.store.queues();
    queues
        .create_queue("dlq", QueueSettings::default())
        .unwrap();
    let batch: Vec<OutgoingMessage> = (0..25)
        .map(|i| OutgoingMessage::new(format!("{i}"), format!("{i}")))
        .collect();
    for chunk in batch.chunks(10) {
        queues.send("dlq", chunk).await.unwrap();
        fixture.clock.advance(Duration::milliseconds(1));
    }
    let dlq = queues.queue("dlq").unwrap();
    let mut cursor = dlq.peek_cursor();
    let mut read: Vec<String> = Vec::new();
    let body = |m: &dlq_healer_core::ReceivedMessage| String::from_utf8(m.body.clone()).unwrap();
    read.extend(dlq.peek_page(&mut cursor, 7).unwrap().iter().map(body));
    // Between pages: a healer receives ten, the seven read and the next three (which are visible
    // again only later), and a message is sent (visible only after the cursor was made).
    fixture.clock.advance(Duration::milliseconds(1));
    assert_eq!(dlq.receive(10, NOW).await.unwrap().len(), 10);
    queues
        .send("dlq", &[OutgoingMessage::new("late", "late")])
        .await
        .unwrap();
    loop {
        let page = dlq.peek_page(&mut cursor, 7).unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        assert!(
            page.iter()
                .all(|m| m.receipt_handle.is_empty() && m.receive_count == 1)
        );
        read.extend(page.iter().map(body));
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| !(7..10).contains(i))
        .map(|i| i.to_string())
        .collect();
    assert_eq!(
        read, expected,
        "in order, each once, none received or sent meanwhile"
    );
    assert_eq!(
        queues.depth("dlq").unwrap(),
        QueueDepth {
            visible: 16,
            in_flight: 10,
            delayed: 0
        },
        "peeking received nothing"
    );
    assert_eq!(dlq.peek(usize::MAX).unwrap().len(), 16);
    assert_eq!(dlq.peek(4).unwrap().len(), 4);
}
