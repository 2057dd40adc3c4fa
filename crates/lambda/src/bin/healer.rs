//! The healer's Lambda bootstrap: SQS event source mapping on the DLQ, partial batch responses.
//! Env: MAIN_QUEUE_URL, ARCHIVE_BUCKET, FAILED_TABLE, ALERT_TOPIC_ARN (required); DLQ_URL,
//! DLQ_HEALER_RULES, ALERT_WINDOW_SECONDS, LOG_LEVEL (optional).

use aws_lambda_events::event::sqs::SqsEvent;
use dlq_healer_lambda::env::{self, HealerSettings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    env::init_logging(&env::process_env("LOG_LEVEL").unwrap_or_default());
    let healer = match init().await {
        Ok(healer) => Arc::new(healer),
        Err(error) => {
            tracing::error!(%error, "healer init failed");
            return Err(error);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let healer = healer.clone();
        async move { Ok::<_, Error>(healer.handle(event.payload).await) }
    }))
    .await
}

async fn init() -> Result<dlq_healer_lambda::HealerFunction, Error> {
    let settings = HealerSettings::from_lookup(&env::process_env)?;
    let clients = dlq_healer_lambda::aws::clients().await;
    Ok(dlq_healer_lambda::aws::healer(&settings, &clients)?)
}
