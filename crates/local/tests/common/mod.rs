//! Helpers shared by the integration tests: a store in a fresh temporary directory on a manual
//! clock.

#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use dlq_healer_core::engine::{DEFAULT_ALERT_WINDOW, Engine, EngineConfig, Ports};
use dlq_healer_core::ports::ManualClock;
use dlq_healer_core::rules::RuleSet;
use dlq_healer_local::{
    LocalAlerter, LocalArchive, LocalMetrics, LocalQueues, LocalStore, QueueSettings,
};
use std::sync::Arc;

/// A store in its own temporary directory, on a manual clock.
pub struct Fixture {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The store.
    pub store: LocalStore,
    /// Its clock.
    pub clock: Arc<ManualClock>,
}

impl Fixture {
    /// A fresh store.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap(),
        ));
        let store = LocalStore::open_with_clock(dir.path().join("healer.db"), clock.clone())
            .expect("open store");
        Fixture { dir, store, clock }
    }

    /// An engine with the default rules on the store, healing `dlq` (which must exist), archiving
    /// under `archive` in the fixture's directory, without a webhook.
    pub fn engine(&self, dlq: &str, config: EngineConfig) -> Engine {
        let queues = self.store.queues();
        let ports = Ports {
            dlq: Arc::new(queues.queue(dlq).expect("the DLQ exists")),
            queues: Arc::new(queues),
            ledger: Arc::new(self.store.ledger()),
            archive: Arc::new(
                LocalArchive::new(self.store.clone(), self.dir.path().join("archive"))
                    .expect("archive directory"),
            ),
            alerter: Arc::new(LocalAlerter::new(
                self.store.clone(),
                DEFAULT_ALERT_WINDOW,
                None,
            )),
            metrics: Arc::new(LocalMetrics::new(self.store.clone())),
        };
        Engine::new(
            Arc::new(RuleSet::defaults()),
            ports,
            self.clock.clone(),
            config,
        )
    }

    /// A queue `name` with the given visibility timeout whose messages go to a new queue `dlq`
    /// after `max_receive_count` receives; the store's queues.
    pub fn queue_with_dlq(
        &self,
        name: &str,
        visibility_seconds: u32,
        max_receive_count: u32,
    ) -> LocalQueues {
        let queues = self.store.queues();
        queues
            .create_queue("dlq", QueueSettings::default())
            .unwrap();
        queues
            .create_queue(
                name,
                QueueSettings::default()
                    .with_visibility_timeout(visibility_seconds)
                    .with_redrive("dlq", max_receive_count),
            )
            .unwrap();
        queues
    }

    /// SQL that gives a fresh file the message table of versions 1 to 3, before
    /// `message_payloads` (version 4): each message's body and attributes in its own row.
    pub const PAYLOADS_IN_MESSAGES: &'static str = "
        ALTER TABLE messages ADD COLUMN body BLOB NOT NULL DEFAULT x'';
        ALTER TABLE messages ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
        UPDATE messages SET
            body = (SELECT p.body FROM message_payloads AS p WHERE p.seq = messages.seq),
            attributes = (SELECT p.attributes FROM message_payloads AS p WHERE p.seq = messages.seq);
        DROP TABLE message_payloads;";

    /// Run `sql` on the file (to make it what an older version wrote), then open it again as this
    /// build does, which upgrades it.
    pub fn reopen_after(&self, sql: &str) -> LocalStore {
        let raw = rusqlite::Connection::open(self.store.path()).expect("open the file");
        raw.execute_batch(sql).expect("rewrite the file");
        drop(raw);
        let reopened = self.reopen();
        assert_eq!(
            reopened.schema_version().unwrap(),
            dlq_healer_local::store::SCHEMA_VERSION,
            "upgraded when opened"
        );
        reopened
    }

    /// Another connection to the same file, as a second process would open it.
    pub fn reopen(&self) -> LocalStore {
        LocalStore::open_with_clock(self.store.path(), self.clock.clone()).expect("reopen store")
    }
}
