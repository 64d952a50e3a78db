//! After a store outage, replicas settle before serving state again.
//!
//! During an outage with `on_unavailable = "passthrough"` each replica
//! spools what its bot reported; when the store returns, each writes its
//! spool back within a moment. A replica that saw the outage end waits
//! `store.recovery_settle` before it reads conversations again, so a
//! conversation another replica spooled is written back before this one
//! serves it from the pre-outage record.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

pub(super) struct Recovery {
    settle: Duration,
    down: AtomicBool,
    recovered_at: Mutex<Option<Instant>>,
}

impl Recovery {
    pub(super) fn new(settle: Duration) -> Recovery {
        Recovery {
            settle,
            down: AtomicBool::new(false),
            recovered_at: Mutex::new(None),
        }
    }

    /// Records what the last store operation showed.
    pub(super) fn seen(&self, up: bool) {
        if !up {
            self.down.store(true, Ordering::Relaxed);
        } else if self.down.swap(false, Ordering::Relaxed) {
            *self.recovered_at.lock() = Some(Instant::now());
        }
    }

    /// How much of the settle window is left (none outside of one).
    pub(super) fn remaining(&self) -> Option<Duration> {
        let at = (*self.recovered_at.lock())?;
        self.settle
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
    }
}

impl<B: crate::backend::Backend> super::Pipeline<B> {
    /// Records whether the store answered (the metric, and the end of an
    /// outage for `recovery`).
    pub fn store_seen(&self, up: bool) {
        self.metrics.set_store_up(up);
        self.recovery.seen(up);
    }

    /// `store.on_unavailable = "passthrough"`: requests go on, degraded,
    /// while the store is out.
    pub fn passes_through_when_store_down(&self) -> bool {
        self.settings.on_unavailable == crate::config::OnUnavailable::Passthrough
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_settle_window_opens_when_the_store_returns() {
        let r = Recovery::new(Duration::from_secs(2));
        r.seen(true);
        assert_eq!(r.remaining(), None, "no outage, no window");
        r.seen(false);
        assert_eq!(r.remaining(), None, "still down");
        r.seen(true);
        assert_eq!(r.remaining(), Some(Duration::from_secs(2)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(r.remaining(), Some(Duration::from_millis(500)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.remaining(), None);
    }
}
