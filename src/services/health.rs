//! Whether the store answers, and the settle window after an outage.
//!
//! During an outage with `on_unavailable = "passthrough"` each replica
//! spools what its bot reported; when the store returns, each writes its
//! spool back within a moment. A replica that saw the outage end waits
//! `store.recovery_settle` before it reads conversations again, so a
//! conversation another replica spooled is written back before this one
//! serves it from the pre-outage record.
//!
//! Only outages count (`StoreError::is_outage`): a damaged record or a
//! refused script is bad data, and leaves the store up.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::{Config, OnUnavailable};
use crate::metrics::Metrics;

pub struct StoreHealth {
    settle: Duration,
    /// `store.on_unavailable = "passthrough"`.
    passthrough: bool,
    metrics: Arc<Metrics>,
    down: AtomicBool,
    recovered_at: Mutex<Option<Instant>>,
}

impl StoreHealth {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> StoreHealth {
        StoreHealth {
            settle: config.store.recovery_settle,
            passthrough: config.store.on_unavailable == OnUnavailable::Passthrough,
            metrics,
            down: AtomicBool::new(false),
            recovered_at: Mutex::new(None),
        }
    }

    /// Records what the last store operation showed: the gauge, and the
    /// end of an outage (which opens the settle window).
    pub fn seen(&self, up: bool) {
        self.metrics.set_store_up(up);
        if !up {
            self.down.store(true, Ordering::Relaxed);
        } else if self.down.swap(false, Ordering::Relaxed) {
            *self.recovered_at.lock() = Some(Instant::now());
        }
    }

    /// How much of the settle window is left (none outside of one).
    pub fn settling(&self) -> Option<Duration> {
        let at = (*self.recovered_at.lock())?;
        self.settle
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Requests go on, degraded, while the store is out.
    pub fn passes_through_when_down(&self) -> bool {
        self.passthrough
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_settle_window_opens_when_the_store_returns() {
        let mut config = Config::default();
        config.store.recovery_settle = Duration::from_secs(2);
        let metrics = Arc::new(Metrics::new(Vec::new()));
        let r = StoreHealth::new(&config, Arc::clone(&metrics));
        r.seen(true);
        assert_eq!(r.settling(), None, "no outage, no window");
        r.seen(false);
        assert_eq!(r.settling(), None, "still down");
        assert!(metrics.render().contains("statehold_store_up 0"));
        r.seen(true);
        assert!(metrics.render().contains("statehold_store_up 1"));
        assert_eq!(r.settling(), Some(Duration::from_secs(2)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(r.settling(), Some(Duration::from_millis(500)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.settling(), None);
    }
}
