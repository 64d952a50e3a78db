//! The Redis turns' background work: hand-over notices routed to waiting
//! requests, the sweeper for tokens abandoned while Redis was unreachable,
//! and the lease extension of a held turn.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tracing::debug;

use super::shared::{LeaseKeys, Shared, CHECK_EVERY};

/// Releases abandoned tokens once Redis answers again. Entries older than
/// the queue's TTL are dropped: Redis has expired them by then.
pub(super) async fn sweep_orphans(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(s) = shared.upgrade() else { return };
        let pending = std::mem::take(&mut *s.orphans.lock());
        if pending.is_empty() {
            continue;
        }
        let max_age = s.queue_ttl;
        let mut keep = Vec::new();
        for (keys, token, since) in pending {
            if since.elapsed() > max_age {
                continue;
            }
            if s.release(&keys, token).await.is_err() {
                keep.push((keys, token, since));
            }
        }
        s.orphans.lock().extend(keep);
    }
}

/// Routes hand-over notices to the waiting requests of this process.
/// Reconnects by itself, within [`RESUBSCRIBE_AT_MOST`] of Redis coming
/// back; while it is down, waiters' own checks carry on. Its connection
/// dropping is the first sign of Redis going away: the probe that puts
/// the main connection back as soon as Redis answers starts then, before
/// any request finds the connection dead (`probe.rs`).
pub(super) async fn listen_for_handovers(shared: Weak<Shared>) {
    let mut backoff = RESUBSCRIBE_FIRST;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let (client, channel) = (s.conn.node_client().await, s.channel.clone());
        drop(s);
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                debug!(error = %e, "turn channel: no primary known");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    debug!(error = %e, "turn channel subscribe failed");
                } else {
                    backoff = RESUBSCRIBE_FIRST;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(s) = shared.upgrade() else { return };
                        let token = std::str::from_utf8(msg.get_payload_bytes())
                            .ok()
                            .and_then(|t| t.parse::<u64>().ok());
                        if let Some(token) = token {
                            let waiter = s.waiters.lock().remove(&token);
                            if let Some(tx) = waiter {
                                // Refused only when the waiter already left
                                // (its queue place is given up by then).
                                tx.send(()).ok();
                            }
                        }
                    }
                    // The subscription's connection dropped.
                    let Some(s) = shared.upgrade() else { return };
                    s.conn.probe_until_back();
                }
            }
            Err(e) => debug!(error = %e, "turn channel connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESUBSCRIBE_AT_MOST);
    }
}

/// The turn channel's reconnect backoff: from this, doubling...
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(20);
/// ...up to this, so hand-over notices flow again within it of Redis
/// coming back (waiters poll every `CHECK_EVERY` meanwhile).
const RESUBSCRIBE_AT_MOST: Duration = Duration::from_millis(250);

/// Extends the lease every third of its length while the turn is held;
/// tells `lost` when it is no longer ours.
pub(super) async fn keep_alive(
    shared: Arc<Shared>,
    keys: LeaseKeys,
    token: u64,
    lost: tokio::sync::oneshot::Sender<()>,
) {
    let every = (shared.lease / 3).max(Duration::from_millis(10));
    let args = [token.to_string()];
    loop {
        tokio::time::sleep(every).await;
        match shared.run(&shared.scripts.any().extend, &keys, &args).await {
            Ok(1) => {}
            Ok(_) => {
                // A deferred turn reported on another replica ends so;
                // otherwise the commit is refused by its fence and logged.
                debug!("turn lease no longer ours: ended elsewhere or taken over");
                lost.send(()).ok();
                return;
            }
            // Redis unreachable: try again; if it stays away the lease expires.
            Err(e) => debug!(error = %e, "lease extension failed"),
        }
    }
}
