//! Pacing of moves: a token-bucket [`RateLimiter`] and a [`Ramp`] that starts slow and grows
//! while moved messages stay away from the DLQ. Pure: time is passed in as the elapsed time since
//! a start, read from a [`Pacer`] (the real clock, or a fake one in tests).

use async_trait::async_trait;
use std::time::{Duration, Instant};

/// Time for pacing: how long since the start, and a way to wait.
#[async_trait]
pub trait Pacer: Send + Sync {
    /// Time elapsed since the pacer started.
    fn now(&self) -> Duration;
    /// Wait this long.
    async fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct RealPacer(Instant);

impl Default for RealPacer {
    fn default() -> Self {
        RealPacer(Instant::now())
    }
}

#[async_trait]
impl Pacer for RealPacer {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`. Taking more tokens than
/// are there goes into debt, and the caller waits until the debt is paid: over any window of
/// `w` seconds at most `burst + rate * w` tokens are taken.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl RateLimiter {
    /// A full bucket at `now`. `rate` must be positive; `burst` is at least 1.
    pub fn new(rate: f64, burst: f64, now: Duration) -> Self {
        let burst = burst.max(1.0);
        RateLimiter {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Change the rate from `now` on.
    pub fn set_rate(&mut self, rate: f64, now: Duration) {
        self.refill(now);
        self.rate = rate.max(f64::MIN_POSITIVE);
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Take `n` tokens at `now`; returns how long to wait before using them.
    pub fn take(&mut self, n: u32, now: Duration) -> Duration {
        self.refill(now);
        self.tokens -= f64::from(n);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// What a [`Ramp`] says after an observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RampStep {
    /// Go on at this rate (messages per second).
    Rate(f64),
    /// Stop: moved messages are coming back to the DLQ.
    Stop {
        /// How many came back.
        returned: u64,
    },
}

/// Start at a tenth of the target rate (at least 1/s) and double every `step` while nothing moved
/// comes back to the DLQ; stop as soon as something does.
#[derive(Debug, Clone)]
pub struct Ramp {
    target: f64,
    current: f64,
    step: Duration,
    next_at: Duration,
}

impl Ramp {
    /// A ramp towards `target` per second, stepping every `step`, started at `now`.
    pub fn new(target: f64, step: Duration, now: Duration) -> Self {
        Ramp {
            target,
            current: (target / 10.0).max(1.0).min(target),
            step,
            next_at: now + step,
        }
    }

    /// The rate to start with.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// Observe at `now` how many moved messages have come back so far.
    pub fn observe(&mut self, now: Duration, returned: u64) -> RampStep {
        if returned > 0 {
            return RampStep::Stop { returned };
        }
        while now >= self.next_at && self.current < self.target {
            self.current = (self.current * 2.0).min(self.target);
            self.next_at += self.step;
        }
        RampStep::Rate(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Drive a limiter on a fake clock: take one token per message, advance by each wait.
    fn send_times(rate: f64, burst: f64, messages: usize, chunk: u32) -> Vec<Duration> {
        let mut now = Duration::ZERO;
        let mut limiter = RateLimiter::new(rate, burst, now);
        let mut times = Vec::new();
        while times.len() < messages {
            let n = chunk.min((messages - times.len()) as u32);
            now += limiter.take(n, now);
            times.extend(std::iter::repeat_n(now, n as usize));
        }
        times
    }

    #[test]
    fn limiter_keeps_the_rate_in_every_window() {
        let times = send_times(5.0, 5.0, 100, 5);
        // 100 messages at 5/s with a burst of 5: the last goes out at 19 s.
        assert_eq!(times.last().copied(), Some(Duration::from_secs(19)));
        for start in 0..20 {
            let from = Duration::from_secs(start);
            let to = from + Duration::from_secs(1);
            let count = times.iter().filter(|t| **t >= from && **t < to).count();
            assert!(count <= 5, "{count} messages in second {start}");
        }
    }

    proptest! {
        #[test]
        fn no_window_exceeds_burst_plus_rate(
            rate in 1u32..50, chunk in 1u32..10, messages in 1usize..300, window_ms in 100u64..5000,
        ) {
            let rate = f64::from(rate);
            let burst = f64::from(chunk).max(1.0);
            let times = send_times(rate, burst, messages, chunk);
            let window = Duration::from_millis(window_ms);
            for (i, start) in times.iter().enumerate() {
                let in_window = times[i..].iter().take_while(|t| **t < *start + window).count();
                let allowed = burst + rate * window.as_secs_f64() + 1e-9;
                prop_assert!(in_window as f64 <= allowed, "{} in {:?}", in_window, window);
            }
        }
    }

    #[test]
    fn ramp_doubles_while_quiet_and_stops_on_returns() {
        let step = Duration::from_secs(10);
        let mut ramp = Ramp::new(40.0, step, Duration::ZERO);
        assert_eq!(ramp.current(), 4.0);
        assert_eq!(ramp.observe(Duration::from_secs(5), 0), RampStep::Rate(4.0));
        assert_eq!(
            ramp.observe(Duration::from_secs(10), 0),
            RampStep::Rate(8.0)
        );
        assert_eq!(
            ramp.observe(Duration::from_secs(35), 0),
            RampStep::Rate(32.0)
        );
        assert_eq!(
            ramp.observe(Duration::from_secs(45), 0),
            RampStep::Rate(40.0)
        );
        assert_eq!(
            ramp.observe(Duration::from_secs(500), 0),
            RampStep::Rate(40.0)
        );
        assert_eq!(
            ramp.observe(Duration::from_secs(501), 2),
            RampStep::Stop { returned: 2 }
        );
        assert_eq!(Ramp::new(0.5, step, Duration::ZERO).current(), 0.5);
    }

    #[test]
    fn rate_changes_apply_from_now() {
        let mut limiter = RateLimiter::new(1.0, 1.0, Duration::ZERO);
        assert_eq!(limiter.take(1, Duration::ZERO), Duration::ZERO);
        assert_eq!(limiter.take(1, Duration::ZERO), Duration::from_secs(1));
        limiter.set_rate(10.0, Duration::from_secs(1));
        assert_eq!(limiter.rate(), 10.0);
        assert_eq!(
            limiter.take(1, Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
