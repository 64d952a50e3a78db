//! What a process's Redis turns share: the connection, the scripts, the
//! waiters told of hand-overs, the orphaned tokens to sweep, and the
//! per-turn lease keys; used by the turns (`turns.rs`), the acquire
//! (`acquire.rs`) and the background tasks (`background.rs`), none of
//! which needs another for it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::conn::RedisConn;
use super::scripts::Scripts;
use crate::backend::TurnError;

/// How often a waiter checks by itself, notices aside.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A token's last four decimal digits name the replica that made it (its
/// notice tag): the scripts announce a hand-over on that replica's
/// channel (`<prefix>:turns:<tag>`, `string.sub(token, -4)`), so a grant
/// reaches the one replica whose request waits, not the whole fleet.
const NOTICE_TAGS: u64 = 10_000;

/// This replica's notice tag, drawn at random: two replicas drawing the
/// same one (about 0.3% of 8-replica fleets) each also receive the
/// other's notices, which only costs them a lookup.
pub(super) fn draw_notice_tag() -> u64 {
    RandomState::new().hash_one(std::process::id()) % NOTICE_TAGS
}

/// The channel a replica with notice tag `tag` is told of hand-overs on.
pub(super) fn notice_channel(base: &str, tag: u64) -> String {
    format!("{base}:{tag:04}")
}

pub(super) struct Shared {
    pub(super) conn: RedisConn,
    pub(super) lease: Duration,
    /// How long a waiting token may sit in a queue.
    pub(super) queue_ttl: Duration,
    /// This replica's hand-over channel (`notice_channel`).
    pub(super) channel: String,
    /// This replica's notice tag: every token it makes ends with it.
    pub(super) notice_tag: u64,
    pub(super) waiters: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    pub(super) scripts: Arc<Scripts>,
    /// The audit trail is on: an expiry noticed on load is audited.
    pub(super) audit: bool,
    pub(super) tokens: RandomState,
    pub(super) counter: AtomicU64,
    /// This process among the replicas: its deferred turns are reported
    /// to it in process, never adopted from the store by itself.
    pub(super) replica: u64,
    /// Tokens we gave up on (a timed-out acquire, a failed release) while
    /// Redis was unreachable. An operation that timed out may still run
    /// when Redis comes back, leaving our token queued or even holding the
    /// lease; the sweeper removes them as soon as Redis answers again.
    pub(super) orphans: Mutex<Vec<(LeaseKeys, u64, tokio::time::Instant)>>,
    /// Turns held now, whose leases one background task keeps alive
    /// (`background::keep_leases_alive`): no task per turn.
    pub(super) held: Mutex<HashMap<u64, HeldLease>>,
    /// Releases spawned and not finished yet (for `quiesce`).
    pub(super) releasing: std::sync::atomic::AtomicUsize,
    pub(super) released: tokio::sync::Notify,
}

/// A held turn's lease, as the keep-alive sees it.
pub(super) struct HeldLease {
    pub(super) keys: LeaseKeys,
    /// When the lease was taken or last extended.
    pub(super) extended: tokio::time::Instant,
    /// Told when the lease is found no longer ours.
    pub(super) lost: oneshot::Sender<()>,
}

impl Shared {
    /// A token no other turn, here or on another replica, will ever use.
    pub(super) fn fresh_token(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // At least 1 before the tag (never 0: commit.lua reads '0' as
        // "unfenced"), and small enough that the tag still fits in a u64.
        let high = self.tokens.hash_one((n, now)) % (u64::MAX / NOTICE_TAGS - 1) + 1;
        high * NOTICE_TAGS + self.notice_tag
    }

    /// The token of the turn this process holds on `lease`, if any (a link
    /// on a Cluster is fenced by the channel's turn: `cluster_links.rs`).
    pub(super) fn held_token(&self, lease: &str) -> Option<u64> {
        self.held
            .lock()
            .iter()
            .find(|(_, held)| held.keys.lease == lease)
            .map(|(token, _)| *token)
    }

    pub(super) fn forget(&self, token: u64) {
        self.waiters.lock().remove(&token);
    }

    pub(super) async fn run(
        &self,
        script: &redis::Script,
        keys: &LeaseKeys,
        args: &[String],
    ) -> Result<i64, TurnError> {
        let mut inv = script.prepare_invoke();
        inv.key(&keys.lease).key(&keys.queue);
        for a in args {
            inv.arg(a);
        }
        self.conn
            .eval(&inv)
            .await
            .map_err(|e| TurnError::Store(e.into()))
    }

    pub(super) async fn release(&self, keys: &LeaseKeys, token: u64) -> Result<i64, TurnError> {
        self.run(&self.scripts.any().release, keys, &[token.to_string()])
            .await
    }

    /// Leaves the queue; if Redis cannot be told now, the sweeper will.
    pub(super) async fn leave(&self, keys: &LeaseKeys, token: u64) {
        if self.release(keys, token).await.is_err() {
            self.orphans
                .lock()
                .push((keys.clone(), token, tokio::time::Instant::now()));
        }
    }
}

#[derive(Clone)]
pub(super) struct LeaseKeys {
    pub(super) lease: String,
    pub(super) queue: String,
}

impl LeaseKeys {
    /// The turn keys of a conversation.
    pub(super) fn of(keys: &super::keys::ConvKeys) -> LeaseKeys {
        LeaseKeys {
            lease: keys.lease(),
            queue: keys.queue(),
        }
    }
}
