//! The demo order consumer's Lambda bootstrap: SQS event source mapping on the main queue; failed
//! orders are dead-lettered to DLQ_URL. Env: DLQ_URL (required), LOG_LEVEL.

use aws_lambda_events::event::sqs::SqsEvent;
use dlq_healer_lambda::env::{self, ConsumerSettings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    env::init_logging(&env::process_env("LOG_LEVEL").unwrap_or_default());
    let settings = match ConsumerSettings::from_lookup(&env::process_env) {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(%error, "consumer init failed");
            return Err(error.into());
        }
    };
    let clients = dlq_healer_lambda::aws::clients().await;
    let consumer = Arc::new(dlq_healer_lambda::aws::consumer(&settings, &clients));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let consumer = consumer.clone();
        async move { Ok::<_, Error>(consumer.handle(event.payload).await) }
    }))
    .await
}
