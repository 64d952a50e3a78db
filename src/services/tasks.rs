//! The services' background work: the spool's write-back once the store
//! answers again, and the purge of expired records. Each loop returns when
//! `stop` resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::Services;
use crate::backend::Backend;

/// One last write-back attempt; what remains waits on disk for the next start.
pub async fn last_write_back<B: Backend>(svc: &Services<B>) {
    let Some(spool) = &svc.spool else {
        return;
    };
    let last = tokio::time::timeout(
        Duration::from_secs(2),
        spool.write_back(&svc.backend, &svc.metrics),
    )
    .await;
    if last.is_err() {
        warn!("last spool write-back did not finish within 2s");
    }
    let left = spool.depth();
    if left > 0 {
        warn!(left, "spooled snapshots kept on disk for the next start");
    }
}

/// Writes spooled snapshots back once the store answers again.
pub async fn write_back_loop<B: Backend>(svc: Arc<Services<B>>, stop: impl Future<Output = ()>) {
    let Some(spool) = svc.spool.clone() else {
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if spool.depth() == 0 || svc.backend.ping().await.is_err() {
            continue;
        }
        let settled = spool.write_back(&svc.backend, &svc.metrics).await;
        let depth = spool.depth();
        svc.metrics.set_spool_depth(depth);
        if settled > 0 {
            info!(settled, left = depth, "spool written back");
        }
    }
}

/// Deletes expired snapshots and dedupe records in the background, so
/// expired data does not wait for a read to go away.
pub async fn purge_loop<B: Backend>(
    svc: Arc<Services<B>>,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticker.tick() => {}
        }
        match svc.backend.purge_expired().await {
            Ok(0) => {}
            Ok(n) => info!(purged = n, "expired records purged"),
            Err(e) => warn!(error = %e, "purge failed"),
        }
    }
}
