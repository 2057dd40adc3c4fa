//! The DLQ when `DLQ_URL` is not set: the event source mapping names it only by ARN, in every
//! record. The healer needs the queue itself only to park messages (change visibility), so the
//! queue is resolved from the ARN on first use and kept for later invocations.

use async_trait::async_trait;
use dlq_healer_core::message::ReceivedMessage;
use dlq_healer_core::ports::{EntryResults, MessageSource, PortError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Turns a queue ARN into a queue to change visibility on.
#[async_trait]
pub trait DlqResolver: Send + Sync {
    /// The queue with this ARN.
    async fn resolve(&self, arn: &str) -> Result<Arc<dyn MessageSource>, PortError>;
}

/// A [`MessageSource`] standing for whichever DLQ the current event came from.
pub struct EventSourceDlq {
    resolver: Arc<dyn DlqResolver>,
    current: Mutex<Option<String>>,
    resolved: tokio::sync::Mutex<HashMap<String, Arc<dyn MessageSource>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventSourceDlq {
    /// A DLQ resolved by `resolver` from the event's source ARN.
    pub fn new(resolver: Arc<dyn DlqResolver>) -> Self {
        EventSourceDlq {
            resolver,
            current: Mutex::new(None),
            resolved: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Set the ARN of the event being handled (every record of one event has the same).
    pub fn enter(&self, arn: Option<&str>) {
        *lock(&self.current) = arn.map(str::to_string);
    }

    async fn queue(&self, operation: &str) -> Result<Arc<dyn MessageSource>, PortError> {
        let Some(arn) = lock(&self.current).clone() else {
            return Err(PortError::permanent(
                operation,
                "the DLQ",
                "the event has no eventSourceARN and DLQ_URL is not set",
            ));
        };
        let mut resolved = self.resolved.lock().await;
        if let Some(queue) = resolved.get(&arn) {
            return Ok(queue.clone());
        }
        let queue = self.resolver.resolve(&arn).await?;
        resolved.insert(arn, queue.clone());
        Ok(queue)
    }
}

#[async_trait]
impl MessageSource for EventSourceDlq {
    fn queue_id(&self) -> &str {
        "the event source DLQ"
    }

    fn is_fifo(&self) -> bool {
        lock(&self.current)
            .as_deref()
            .is_some_and(|arn| arn.ends_with(".fifo"))
    }

    async fn receive(
        &self,
        _max: usize,
        _wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, PortError> {
        Err(PortError::permanent(
            "receive",
            "the event source DLQ",
            "in Lambda the event source mapping receives; the healer does not",
        ))
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<EntryResults<()>, PortError> {
        self.queue("delete").await?.delete(receipt_handles).await
    }

    async fn change_visibility(
        &self,
        entries: &[(String, u32)],
    ) -> Result<EntryResults<()>, PortError> {
        self.queue("change visibility")
            .await?
            .change_visibility(entries)
            .await
    }
}
