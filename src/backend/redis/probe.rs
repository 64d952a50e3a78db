//! Reconnecting as soon as Redis answers again, not on the next request.
//!
//! When an operation finds Redis unreachable (the connection dropped, a
//! connect refused, a timeout), one background task per process starts
//! probing: every [`PROBE_EVERY`] it connects afresh and sends `PING`
//! within `op_timeout`. The first answer puts the new connection in place
//! and closes the circuit breaker, so requests are served again within a
//! probe interval of Redis coming back, instead of failing fast for the
//! rest of `breaker_cooldown` or paying for a dead connection first.
//! A failed probe changes nothing (it does not count as a failure, or keep
//! the circuit open longer); the task ends with its first success, or with
//! the connection. One server and Sentinel's primary only (see
//! [`RedisConn::probe_until_back`] for the Cluster).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info};

use super::conn::{RedisConn, WeakConn};

/// How often an unreachable Redis is tried.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(20);

impl RedisConn {
    /// Starts the probe unless one is running. Not on a Cluster: a `PING`
    /// that one node answers says nothing of the slots of another that is
    /// down, so each probe would build a whole new cluster connection while
    /// requests for the dead slots fail again; the cluster client follows
    /// failovers and slot moves itself.
    pub(super) fn probe_until_back(&self) {
        if self.is_cluster() || self.probing().swap(true, Ordering::AcqRel) {
            return;
        }
        // Outside a runtime (a unit test's drop) nothing can run it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.probing().store(false, Ordering::Release);
            return;
        };
        runtime.spawn(probe(self.downgrade()));
    }
}

async fn probe(conn: WeakConn) {
    let mut tries = 0u32;
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(conn) = conn.upgrade() else { return };
        tries += 1;
        match conn.reconnect_and_ping().await {
            Ok(()) => {
                conn.probing().store(false, Ordering::Release);
                info!(tries, "redis answers again: reconnected");
                return;
            }
            Err(e) => debug!(error = %e, tries, "redis probe: not yet"),
        }
    }
}
