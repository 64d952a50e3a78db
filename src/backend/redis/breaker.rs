//! The Redis circuit breaker: after a run of failed operations, fail fast
//! for a cooldown instead of each operation waiting out `op_timeout`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A circuit breaker: after `threshold` consecutive failed operations Redis
/// is considered down for `cooldown`, and operations fail at once instead of
/// each waiting out `op_timeout`. After the cooldown the next operation goes
/// through as a probe; one success closes the circuit.
pub(super) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open.
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn is_open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    pub(super) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    pub(super) fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let until = self.now_ms() + self.cooldown.as_millis() as u64;
            if self.open_until_ms.swap(until, Ordering::Relaxed) <= self.now_ms() {
                tracing::warn!(failures = n, cooldown = ?self.cooldown, "redis circuit open: failing fast");
            }
        }
    }
}
