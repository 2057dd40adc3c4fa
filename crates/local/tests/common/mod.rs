//! Helpers shared by the integration tests: a store in a fresh temporary directory on a manual
//! clock.

#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use dlq_healer_core::ports::ManualClock;
use dlq_healer_local::LocalStore;
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

    /// Another connection to the same file, as a second process would open it.
    pub fn reopen(&self) -> LocalStore {
        LocalStore::open_with_clock(self.store.path(), self.clock.clone()).expect("reopen store")
    }
}
