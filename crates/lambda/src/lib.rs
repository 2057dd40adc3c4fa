//! The Lambda functions of dlq-healer: the healer on the DLQ, the demo order consumer on the main
//! queue, and the order producer behind API Gateway. Each is a struct built once at init (clients,
//! engine) whose `handle` is a plain async fn; the bootstraps in `src/bin/` only read the
//! environment, build it and hand it to the runtime, and tests call `handle` with hand-built events.
//!
//! # Layout
//! - [`env`]: the functions' environment variables (the original's names), logging setup.
//! - [`convert`]: SQS event records to core messages; partial batch responses.
//! - [`healer`]: [`HealerFunction`], the engine in Lambda mode behind an SQS event source mapping.
//! - [`event_dlq`]: the DLQ resolved from the event source ARN when `DLQ_URL` is not set.
//! - [`consumer`]: [`ConsumerFunction`], the order consumer that dead-letters failures.
//! - [`producer`]: the producer's axum [`producer::router`], served by Lambda or locally.
//! - [`aws`]: building each function on the AWS adapters from its environment, once, at init.

pub mod aws;
pub mod consumer;
pub mod convert;
pub mod env;
pub mod event_dlq;
pub mod healer;
pub mod producer;

pub use consumer::ConsumerFunction;
pub use healer::HealerFunction;
