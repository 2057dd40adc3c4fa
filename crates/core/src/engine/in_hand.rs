//! The DLQ messages that batches being healed hold, so that two batches healed at once never act
//! on the same message. A delivery whose visibility ran out while one batch held it can be
//! received by another batch (another loop of `run --concurrency`); neither finds a ledger
//! record yet, and both would act. The later batch waits instead until the earlier one is done,
//! then finds its record and deletes the message with the newest receipt handle.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Message ids held by the batches being healed, and the batches waiting for some of them.
#[derive(Debug, Default)]
pub(crate) struct MessagesInHand {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    held: HashSet<String>,
    waiting: Vec<Waker>,
}

impl MessagesInHand {
    /// Hold `ids` (distinct) until the returned hold is dropped, once no other batch holds any of
    /// them. All at once or none, so two batches never wait for each other.
    pub(crate) fn hold(&self, ids: Vec<String>) -> impl Future<Output = Held> + use<> {
        Hold {
            state: self.state.clone(),
            ids: Some(ids),
        }
    }
}

struct Hold {
    state: Arc<Mutex<State>>,
    ids: Option<Vec<String>>,
}

impl Future for Hold {
    type Output = Held;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Held> {
        let mut state = lock(&self.state);
        let ids = self.ids.as_ref().expect("a hold is not polled once ready");
        if ids.iter().any(|id| state.held.contains(id)) {
            state.waiting.push(cx.waker().clone());
            return Poll::Pending;
        }
        state.held.extend(ids.iter().cloned());
        drop(state);
        Poll::Ready(Held {
            state: self.state.clone(),
            ids: self.ids.take().expect("taken once"),
        })
    }
}

/// Messages held by one batch; let go when dropped.
pub(crate) struct Held {
    state: Arc<Mutex<State>>,
    ids: Vec<String>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        for id in &self.ids {
            state.held.remove(id);
        }
        for waker in state.waiting.drain(..) {
            waker.wake();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The sets stay consistent through a panic elsewhere: every change is one call.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(of: &[&str]) -> Vec<String> {
        of.iter().map(|id| id.to_string()).collect()
    }

    #[tokio::test]
    async fn a_batch_waits_for_the_messages_another_holds_and_no_longer() {
        let in_hand = MessagesInHand::default();
        let first = in_hand.hold(ids(&["a", "b"])).await;
        let _apart = in_hand.hold(ids(&["c"])).await;
        let mut second = Box::pin(in_hand.hold(ids(&["b", "d"])));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(second.as_mut().poll(&mut cx).is_pending(), "b is held");
        // "d" was not taken while the second batch waited.
        let d = in_hand.hold(ids(&["d"])).await;
        drop(d);
        drop(first);
        assert!(second.as_mut().poll(&mut cx).is_ready(), "b was let go");
    }
}
