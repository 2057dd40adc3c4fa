//! A background thread that repeats one piece of work at an interval until its owner drops it:
//! the store's checkpointer and the retention sweeper.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running thread; dropping it asks the thread to stop and waits for its work in hand.
pub(crate) struct Periodic {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the work sees of its owner: whether it was dropped.
pub(crate) struct StopRequest(Receiver<()>);

impl StopRequest {
    /// Whether the owner has dropped the [`Periodic`] (work in hand should wrap up).
    pub(crate) fn is_made(&self) -> bool {
        !matches!(self.0.try_recv(), Err(TryRecvError::Empty))
    }

    /// Wait `interval`; `false` if a stop was requested meanwhile.
    fn waited(&self, interval: Duration) -> bool {
        matches!(
            self.0.recv_timeout(interval),
            Err(RecvTimeoutError::Timeout)
        )
    }
}

/// When the first round of work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstRound {
    /// As soon as the thread starts.
    AtOnce,
    /// After one interval.
    AfterInterval,
}

impl Periodic {
    /// Start a thread named `name` that runs `work` every `interval`, the first time as `first`
    /// says.
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        first: FirstRound,
        mut work: impl FnMut(&StopRequest) + Send + 'static,
    ) -> std::io::Result<Periodic> {
        let (stop, stopped) = mpsc::channel::<()>();
        let stopped = StopRequest(stopped);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if first == FirstRound::AtOnce {
                    work(&stopped);
                }
                while stopped.waited(interval) {
                    work(&stopped);
                }
            })?;
        Ok(Periodic {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
