//! The order producer's Lambda bootstrap: `POST /orders` and `GET /health` behind an API Gateway
//! HTTP API, sending accepted orders to MAIN_QUEUE_URL. Env: MAIN_QUEUE_URL (required), LOG_LEVEL.

use dlq_healer_lambda::env::{self, ProducerSettings};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    env::init_logging(&env::process_env("LOG_LEVEL").unwrap_or_default());
    let settings = match ProducerSettings::from_lookup(&env::process_env) {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!(%error, "producer init failed");
            return Err(error.into());
        }
    };
    let clients = dlq_healer_lambda::aws::clients().await;
    lambda_http::run(dlq_healer_lambda::aws::producer(&settings, &clients)).await
}
