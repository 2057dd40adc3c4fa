//! Test harness: the AWS API emulator (`dlq_healer_testkit`) and clients on it, and a Lambda
//! Runtime API on loopback (`runtime_api`) that a bootstrap binary polls for events, as it would
//! in Lambda.

#![allow(dead_code)]

pub mod runtime_api;

use dlq_healer_aws::AwsClients;
pub use dlq_healer_testkit::unique;

/// Clients on the emulator.
pub async fn clients() -> AwsClients {
    AwsClients::connect(&dlq_healer_testkit::aws_settings!(), None).await
}

/// A fresh ledger table with the layout of `dlq_healer_aws::ledger_schema`, as the SAM template
/// makes it; its name.
pub async fn create_ledger_table(client: &aws_sdk_dynamodb::Client) -> String {
    let name = unique("ledger");
    dlq_healer_testkit::create_ledger_table(client, &name, &dlq_healer_testkit::ledger_layout!())
        .await;
    name
}
