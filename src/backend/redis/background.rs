//! The Redis turns' background work: hand-over notices routed to waiting
//! requests, the sweeper for tokens abandoned while Redis was unreachable,
//! and one keep-alive for the leases of every held turn.

use std::sync::Weak;
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

/// Keeps the leases of this process's held turns alive: one task for all
/// of them (a turn costs an entry in `Shared::held`, not a task). Each
/// lease is extended once a third of its length passed since it was taken
/// or last extended (checked every twelfth), the extensions of one tick
/// run together; a lease found no longer ours (a deferred turn reported on
/// another replica, a take-over) tells its turn and leaves the table.
pub(super) async fn keep_leases_alive(shared: Weak<Shared>) {
    let Some(s) = shared.upgrade() else { return };
    let every = (s.lease / 3).max(Duration::from_millis(10));
    drop(s);
    let tick = every / 4;
    loop {
        tokio::time::sleep(tick).await;
        let Some(s) = shared.upgrade() else { return };
        let now = tokio::time::Instant::now();
        let due: Vec<(u64, LeaseKeys)> = s
            .held
            .lock()
            .iter_mut()
            .filter(|(_, held)| now.duration_since(held.extended) >= every)
            .map(|(token, held)| {
                held.extended = now;
                (*token, held.keys.clone())
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        let shared_ref: &Shared = &s;
        let extend = &shared_ref.scripts.any().extend;
        let runs = due.iter().map(|(token, keys)| {
            let args = [token.to_string()];
            async move { shared_ref.run(extend, keys, &args).await }
        });
        let results = futures_util::future::join_all(runs).await;
        for ((token, _), result) in due.iter().zip(results) {
            match result {
                Ok(1) => {}
                Ok(_) => {
                    // A deferred turn reported on another replica ends so;
                    // otherwise the commit is refused by its fence and logged.
                    debug!("turn lease no longer ours: ended elsewhere or taken over");
                    if let Some(held) = s.held.lock().remove(token) {
                        held.lost.send(()).ok();
                    }
                }
                // Redis unreachable: tried again next time; if it stays
                // away the lease expires.
                Err(e) => debug!(error = %e, "lease extension failed"),
            }
        }
    }
}
