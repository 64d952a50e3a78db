//! Turns across replicas: a leased, fenced ticket queue per conversation in
//! Redis (`{t}:l` lease holding the current holder's token, `{t}:q` list of
//! waiting tokens in arrival order; the holder is never in the queue).
//!
//! - **Fair order**: `acquire.lua` takes a free lease only when nobody
//!   waits (the uncontended case needs no queue), else appends the token to
//!   the queue. Arrival order at Redis is service order.
//! - **No polling race**: a releasing holder hands the lease straight to the
//!   next token and announces it on the pub/sub channel of the replica
//!   that queued it (the token names it: `shared.rs`); each process keeps
//!   a map token → waiting request. A waiter also checks every
//!   `CHECK_EVERY` (a missed notice, a dead holder), so waiting costs one
//!   small script per waiter per interval, not a spin.
//! - **Crashed holder**: its lease is no longer extended and expires after
//!   `store.lock_lease`; the next check skips it.
//! - **Fencing**: the lease holds the holder's token; `commit.lua` refuses a
//!   write whose token no longer holds the lease (a holder that froze past
//!   its lease and was taken over).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::acquire::{Acquired, AtMember};
use super::alias::ViaAlias;
use super::background::{keep_leases_alive, listen_for_handovers, sweep_orphans};
use super::conn::RedisConn;
use super::scripts::Scripts;
use super::shared::{HeldLease, LeaseKeys, Shared, CHECK_EVERY};
use crate::backend::{Loaded, TurnError};
use crate::key::ConvKey;

pub struct RedisTurns {
    pub(super) shared: Arc<Shared>,
}

impl RedisTurns {
    /// `lease`: how long a silent holder keeps the turn; `queue_ttl`: how
    /// long a waiting token may sit in a queue (the longest wait and then
    /// some).
    pub fn new(
        conn: RedisConn,
        scripts: Arc<Scripts>,
        (lease, queue_ttl): (Duration, Duration),
        audit: bool,
    ) -> RedisTurns {
        let notice_tag = super::shared::draw_notice_tag();
        let shared = Arc::new(Shared {
            channel: super::shared::notice_channel(&conn.turn_channel(), notice_tag),
            notice_tag,
            conn,
            lease,
            queue_ttl,
            waiters: Mutex::new(HashMap::new()),
            scripts,
            audit,
            replica: RandomState::new().hash_one(std::process::id()),
            tokens: RandomState::new(),
            counter: AtomicU64::new(0),
            orphans: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            releasing: std::sync::atomic::AtomicUsize::new(0),
            released: tokio::sync::Notify::new(),
        });
        tokio::spawn(listen_for_handovers(Arc::downgrade(&shared)));
        tokio::spawn(sweep_orphans(Arc::downgrade(&shared)));
        tokio::spawn(keep_leases_alive(Arc::downgrade(&shared)));
        RedisTurns { shared }
    }
}

/// A held Redis turn: its token (the fence), its lease kept alive by the
/// process's one keep-alive task while it is registered in `Shared::held`.
/// Dropped unreleased, it leaves the queue off the request path.
pub(super) struct RedisTurn {
    pub(super) token: u64,
    pub(super) keys: LeaseKeys,
    pub(super) shared: Arc<Shared>,
    /// Told by the keep-alive when the lease was no longer ours (a late
    /// report committed on another replica, or a take-over).
    lost: Option<oneshot::Receiver<()>>,
    /// Released by the commit already (`commit.lua` ends the turn).
    pub(super) released: bool,
}

impl RedisTurn {
    /// The turn `token` holds now, its lease kept alive from here on.
    pub(super) fn holding(shared: &Arc<Shared>, keys: LeaseKeys, token: u64) -> RedisTurn {
        let (lost_tx, lost) = oneshot::channel();
        let lease = HeldLease {
            keys: keys.clone(),
            extended: tokio::time::Instant::now(),
            lost: lost_tx,
        };
        shared.held.lock().insert(token, lease);
        RedisTurn {
            token,
            keys,
            shared: Arc::clone(shared),
            lost: Some(lost),
            released: false,
        }
    }

    /// Extends the lease and `WAIT`s for `replicas`, in one round trip on
    /// one connection: the extension is a write after everything this
    /// turn read, so the count covers the record read with it, even on a
    /// connection opened since (where `WAIT` alone would count nothing
    /// this client wrote). A plain `PEXPIRE` (the turn was taken a moment
    /// ago; `extend.lua`'s token check is the keep-alive's): no script
    /// cache to miss, which would cost a second `WAIT`. A lease found gone
    /// counts no replica.
    pub(super) async fn extend_and_wait(
        &self,
        replicas: u32,
        wait_ms: u64,
    ) -> Result<i64, crate::backend::StoreError> {
        let mut extend = redis::cmd("PEXPIRE");
        extend
            .arg(&self.keys.lease)
            .arg(self.shared.lease.as_millis() as u64);
        let (extended, acked): (i64, i64) = self
            .shared
            .conn
            .query_and_wait(&extend, replicas, wait_ms)
            .await?;
        Ok(if extended == 1 { acked } else { 0 })
    }

    /// Leaves the turn now (passing it to the next waiter), rather than
    /// off the request path on drop: for a request that begins again right
    /// after, which must not find its own old turn in the way.
    pub(super) async fn leave(mut self) {
        self.shared.held.lock().remove(&self.token);
        self.shared.leave(&self.keys, self.token).await;
        self.released = true;
    }

    /// Resolves once the keep-alive found the lease no longer ours.
    pub(super) async fn lost(&mut self) {
        if let Some(rx) = self.lost.as_mut() {
            let told = rx.await.is_ok();
            // A finished receiver must not be polled again.
            self.lost = None;
            if told {
                // Not ours any more: nothing to release on drop.
                self.released = true;
                return;
            }
        }
        // Ended without a word (aborted): never resolves.
        std::future::pending().await
    }
}

impl Drop for RedisTurn {
    fn drop(&mut self) {
        self.shared.held.lock().remove(&self.token);
        if self.released {
            return;
        }
        spawn_leave(&self.shared, self.keys.clone(), self.token);
    }
}

/// Leaves the queue (releasing the turn if `token` holds it) off the
/// request path; if Redis cannot be told, the sweeper retries (and the
/// lease expires in any case).
fn spawn_leave(shared: &Arc<Shared>, keys: LeaseKeys, token: u64) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let shared = Arc::clone(shared);
        shared.releasing.fetch_add(1, Ordering::SeqCst);
        rt.spawn(async move {
            shared.leave(&keys, token).await;
            shared.releasing.fetch_sub(1, Ordering::SeqCst);
            shared.released.notify_waiters();
        });
    }
}

/// A request's place in a conversation's queue while it waits. Dropped
/// without [`QueuePlace::taken`] (the wait failed, or the request was
/// cancelled because its client went away), it leaves the queue at once,
/// so the turn passes to the next request instead of waiting out a lease
/// nobody will use.
struct QueuePlace {
    shared: Arc<Shared>,
    keys: LeaseKeys,
    token: u64,
    held: bool,
}

impl QueuePlace {
    /// The turn is ours: from now on `RedisTurn` releases it.
    fn taken(mut self) {
        self.held = true;
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.shared.forget(self.token);
        if !self.held {
            spawn_leave(&self.shared, self.keys.clone(), self.token);
        }
    }
}

/// A turn taken by [`RedisTurns::acquire`].
pub(super) struct Taken {
    pub(super) turn: RedisTurn,
    /// The member whose turn it is (a linked channel's request).
    pub(super) member: Option<ConvKey>,
    /// The record, when the turn was granted at once.
    pub(super) prefetched: Option<Loaded>,
    /// On a Cluster: the channel's alias the member was reached by.
    pub(super) via: Option<ViaAlias>,
    /// On a Cluster: the member's linked channels (aliases to slide).
    pub(super) channels: Vec<String>,
}

impl RedisTurns {
    /// Waits (at most `wait`) for the conversation's turn (its member's,
    /// for a linked channel: returned). A turn granted at once brings the
    /// record along (one round trip); after a wait the record is read
    /// separately (it changed meanwhile anyway). On a Cluster a linked
    /// channel's alias is followed to the member's slot (one more round
    /// trip), and an alias the member disowned is dropped (`cluster_links.rs`).
    pub(super) async fn acquire(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<Taken, TurnError> {
        let s = &self.shared;
        let conv_keys = s.conn.keys(key);
        let own = LeaseKeys::of(&conv_keys);
        let token = s.fresh_token();
        let deadline = tokio::time::Instant::now() + wait;
        // Listen before queueing, so a hand-over cannot slip past us.
        let (tx, notice) = oneshot::channel();
        s.waiters.lock().insert(token, tx);
        // From here on, however this future ends (an error, the wait bound,
        // or being dropped mid-wait), the place is given up unless taken.
        // On an error the script may have run (or may still run) without us
        // seeing the reply: dropping `place` leaves the queue either way.
        let mut place = QueuePlace {
            shared: Arc::clone(s),
            keys: own.clone(),
            token,
            held: false,
        };
        let (mut acquired, via) = self
            .follow_to_member(&mut place, (key, &conv_keys), dedupe_id, deadline)
            .await
            .map_err(|e| e.unwrap_or(TurnError::WaitExceeded(wait)))?;
        let keys = place.keys.clone();
        if acquired.prefetched.is_none() {
            self.wait_for_grant(&keys, token, notice, deadline)
                .await
                .map_err(|()| TurnError::WaitExceeded(wait))?;
        }
        place.taken();
        Ok(Taken {
            turn: RedisTurn::holding(s, keys, token),
            member: acquired.member,
            prefetched: acquired.prefetched.take(),
            via,
            channels: std::mem::take(&mut acquired.channels),
        })
    }

    /// acquire.lua for `key`, `place` moved to wherever the token is
    /// queued: the key's own turn, or a linked channel's member's (on one
    /// server resolved by the script itself; on a Cluster, the alias it
    /// points by is followed to the member's slot by member_acquire.lua,
    /// and an alias the member disowned is dropped and the key acquired as
    /// its own). `Err(None)`: the deadline passed while aliases kept
    /// changing.
    async fn follow_to_member(
        &self,
        place: &mut QueuePlace,
        (key, conv_keys): (&ConvKey, &super::keys::ConvKeys),
        dedupe_id: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<(Acquired, Option<ViaAlias>), Option<TurnError>> {
        let s = &self.shared;
        let (own, token) = (place.keys.clone(), place.token);
        let mut disowned: Option<String> = None;
        loop {
            if tokio::time::Instant::now() >= deadline && disowned.is_some() {
                return Err(None);
            }
            let acquired = s
                .run_acquire(
                    &own,
                    token,
                    (key, conv_keys),
                    dedupe_id,
                    disowned.as_deref(),
                )
                .await?;
            let Some(alias) = acquired.to_member.clone() else {
                if let Some(member) = &acquired.member {
                    place.keys = LeaseKeys::of(&s.conn.keys(member));
                }
                return Ok((acquired, None));
            };
            let (member, via) =
                ViaAlias::parse(s.conn.prefix(), conv_keys, alias).map_err(|e| Some(e.into()))?;
            let member_keys = s.conn.keys(&member);
            place.keys = LeaseKeys::of(&member_keys);
            let at = s
                .run_member_acquire(&place.keys, token, (&member, &member_keys), &via, dedupe_id)
                .await?;
            let (prefetched, channels) = match at {
                AtMember::Stale => {
                    place.keys = own.clone();
                    disowned = Some(via.alias);
                    continue;
                }
                AtMember::Queued => (None, Vec::new()),
                AtMember::Granted(mut loaded, channels) => {
                    loaded.member = Some(member.clone());
                    (Some(*loaded), channels)
                }
            };
            let acquired = Acquired {
                member: Some(member),
                prefetched,
                to_member: None,
                channels,
            };
            return Ok((acquired, Some(via)));
        }
    }

    /// Waits for the hand-over notice, checking by itself every
    /// `CHECK_EVERY`; `Err` at the deadline.
    async fn wait_for_grant(
        &self,
        keys: &LeaseKeys,
        token: u64,
        mut notice: oneshot::Receiver<()>,
        deadline: tokio::time::Instant,
    ) -> Result<(), ()> {
        let s = &self.shared;
        let args = [token.to_string()];
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // The caller drops its queue place; if the turn arrived
                // meanwhile, it is passed on.
                return Err(());
            }
            let nap = CHECK_EVERY.min(deadline - now);
            tokio::select! {
                // A hand-over sets the lease to our token before announcing it.
                _ = &mut notice => return Ok(()),
                _ = tokio::time::sleep(nap) => {
                    let granted = s.run(&s.scripts.any().check, keys, &args).await.is_ok_and(|g| g == 1);
                    if granted {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits (at most `within`) until spawned releases reached Redis.
    pub(super) async fn quiesce(&self, within: Duration) {
        let s = &self.shared;
        let settled = tokio::time::timeout(within, async {
            loop {
                let notified = s.released.notified();
                let orphans = s.orphans.lock().len();
                if s.releasing.load(Ordering::SeqCst) == 0 && orphans == 0 {
                    return;
                }
                // Orphans are retried by the sweeper; look again shortly
                // (a timeout here is that "shortly").
                tokio::time::timeout(CHECK_EVERY, notified).await.ok();
            }
        })
        .await;
        if settled.is_err() {
            tracing::warn!(
                ?within,
                "shutdown: some turn releases had not reached redis; their leases expire instead"
            );
        }
    }
}
