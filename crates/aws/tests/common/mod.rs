//! The AWS API emulator for tests (`dlq_healer_testkit`), and clients on it.

// Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

use dlq_healer_aws::{AwsClients, AwsSettings, CallCounter};
pub use dlq_healer_testkit::{emulator, unique};

/// Settings pointing at the emulator.
pub fn settings() -> AwsSettings {
    dlq_healer_testkit::aws_settings!()
}

/// Clients on the emulator.
pub async fn clients() -> AwsClients {
    AwsClients::connect(&settings(), None).await
}

/// Clients on the emulator that count their calls.
pub async fn counted_clients() -> (AwsClients, CallCounter) {
    let counter = CallCounter::default();
    (
        AwsClients::connect(&settings(), Some(counter.clone())).await,
        counter,
    )
}

/// A fresh table with the ledger layout of `ledger_schema`, named after `prefix`; its name.
pub async fn create_ledger_table(client: &aws_sdk_dynamodb::Client, prefix: &str) -> String {
    let name = unique(prefix);
    dlq_healer_testkit::create_ledger_table(client, &name, &dlq_healer_testkit::ledger_layout!())
        .await;
    name
}
