//! Turns across replicas: a leased, fenced ticket queue per conversation in
//! Redis (`{t}:q` list of tokens in arrival order, `{t}:l` lease holding the
//! current holder's token).
//!
//! - **Fair order**: `acquire.lua` appends the request's token to the queue;
//!   the head holds the lease. Arrival order at Redis is service order.
//! - **No polling race**: a releasing holder hands the lease straight to the
//!   next token and announces it on one pub/sub channel; each process keeps
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
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Script;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Turn, TurnError, Turns};
use crate::key::ConvKey;
use crate::redis_conn::{script, ConvKeys, RedisConn};
use crate::store::Loaded;

/// How often a waiter checks by itself, notices aside.
const CHECK_EVERY: Duration = Duration::from_millis(250);

pub struct RedisTurns {
    shared: Arc<Shared>,
}

struct Shared {
    conn: RedisConn,
    lease_ms: u64,
    /// Snapshot TTL, refreshed when acquire.lua loads the record.
    ttl_ms: u64,
    queue_ttl_ms: u64,
    channel: String,
    waiters: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    acquire: Script,
    check: Script,
    release: Script,
    extend: Script,
    tokens: RandomState,
    counter: AtomicU64,
    /// Tokens we gave up on (a timed-out acquire, a failed release) while
    /// Redis was unreachable. An operation that timed out may still run
    /// when Redis comes back, leaving our token queued or even holding the
    /// lease; the sweeper removes them as soon as Redis answers again.
    orphans: Mutex<Vec<(LeaseKeys, u64, tokio::time::Instant)>>,
    /// Releases spawned and not finished yet (for `quiesce`).
    releasing: std::sync::atomic::AtomicUsize,
    released: tokio::sync::Notify,
}

impl RedisTurns {
    /// `lease`: how long a silent holder keeps the turn; `max_wait`: the
    /// longest wait (sizes the queue's TTL).
    pub fn new(conn: RedisConn, lease: Duration, max_wait: Duration, ttl: Duration) -> RedisTurns {
        let shared = Arc::new(Shared {
            channel: conn.turn_channel(),
            conn,
            lease_ms: lease.as_millis() as u64,
            ttl_ms: ttl.as_millis() as u64,
            queue_ttl_ms: (max_wait + lease * 2).as_millis() as u64,
            waiters: Mutex::new(HashMap::new()),
            acquire: script(concat!(
                include_str!("../store/redis/load_lib.lua"),
                include_str!("redis/turn_lib.lua"),
                include_str!("redis/acquire.lua")
            )),
            check: script(concat!(
                include_str!("redis/turn_lib.lua"),
                include_str!("redis/check.lua")
            )),
            release: script(concat!(
                include_str!("redis/turn_lib.lua"),
                include_str!("redis/release.lua")
            )),
            extend: script(include_str!("redis/extend.lua")),
            tokens: RandomState::new(),
            counter: AtomicU64::new(0),
            orphans: Mutex::new(Vec::new()),
            releasing: std::sync::atomic::AtomicUsize::new(0),
            released: tokio::sync::Notify::new(),
        });
        tokio::spawn(listen_for_handovers(Arc::downgrade(&shared)));
        tokio::spawn(sweep_orphans(Arc::downgrade(&shared)));
        RedisTurns { shared }
    }
}

impl Shared {
    /// A token no other turn, here or on another replica, will ever use.
    fn fresh_token(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Never 0: commit.lua reads '0' as "unfenced".
        self.tokens.hash_one((n, now)).max(1)
    }

    fn forget(&self, token: u64) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(&token);
        }
    }

    async fn run(
        &self,
        script: &Script,
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
            .map_err(|e| TurnError::Unavailable(e.to_string()))
    }

    /// acquire.lua; with `load`, a granted turn brings the record along.
    async fn run_acquire(
        &self,
        keys: &LeaseKeys,
        token: u64,
        load: Option<(&ConvKeys, Option<&str>)>,
    ) -> Result<(bool, Option<Loaded>), TurnError> {
        let mut inv = self.acquire.prepare_invoke();
        let (snapshot, dedupe) = match load {
            Some((k, id)) => (k.snapshot(), k.dedupe(id.unwrap_or(""))),
            // Same slot, never read: acquire.lua ignores them without ARGV[6].
            None => (keys.lease.clone(), keys.lease.clone()),
        };
        inv.key(&keys.lease)
            .key(&keys.queue)
            .key(snapshot)
            .key(dedupe);
        inv.arg(token)
            .arg(self.lease_ms)
            .arg(self.queue_ttl_ms)
            .arg(&self.channel)
            .arg(self.ttl_ms)
            .arg(if load.is_some() { "1" } else { "0" })
            .arg(if load.is_some_and(|(_, id)| id.is_some()) {
                "1"
            } else {
                "0"
            });
        let reply: Vec<redis::Value> = self
            .conn
            .eval(&inv)
            .await
            .map_err(|e| TurnError::Unavailable(e.to_string()))?;
        match reply.as_slice() {
            [redis::Value::Int(1)] => Ok((true, None)),
            [redis::Value::Int(1), rest @ ..] => {
                let loaded = crate::store::redis::parse_loaded(rest)
                    .map_err(|e| TurnError::Unavailable(e.to_string()))?;
                Ok((true, Some(loaded)))
            }
            _ => Ok((false, None)),
        }
    }

    async fn release(&self, keys: &LeaseKeys, token: u64) -> Result<i64, TurnError> {
        let args = [
            token.to_string(),
            self.lease_ms.to_string(),
            self.channel.clone(),
        ];
        self.run(&self.release, keys, &args).await
    }

    /// Leaves the queue; if Redis cannot be told now, the sweeper will.
    async fn leave(&self, keys: &LeaseKeys, token: u64) {
        if self.release(keys, token).await.is_err() {
            if let Ok(mut o) = self.orphans.lock() {
                o.push((keys.clone(), token, tokio::time::Instant::now()));
            }
        }
    }
}

/// Releases abandoned tokens once Redis answers again. Entries older than
/// the queue's TTL are dropped: Redis has expired them by then.
async fn sweep_orphans(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(s) = shared.upgrade() else { return };
        let pending: Vec<_> = match s.orphans.lock() {
            Ok(mut o) if !o.is_empty() => std::mem::take(&mut *o),
            _ => continue,
        };
        let max_age = Duration::from_millis(s.queue_ttl_ms);
        let mut keep = Vec::new();
        for (keys, token, since) in pending {
            if since.elapsed() > max_age {
                continue;
            }
            if s.release(&keys, token).await.is_err() {
                keep.push((keys, token, since));
            }
        }
        if let Ok(mut o) = s.orphans.lock() {
            o.extend(keep);
        };
    }
}

#[derive(Clone)]
struct LeaseKeys {
    lease: String,
    queue: String,
}

/// Routes hand-over notices to the waiting requests of this process.
/// Reconnects by itself; while it is down, waiters' own checks carry on.
async fn listen_for_handovers(shared: Weak<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let (client, channel) = (s.conn.client().clone(), s.channel.clone());
        drop(s);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    debug!(error = %e, "turn channel subscribe failed");
                } else {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(s) = shared.upgrade() else { return };
                        let token = std::str::from_utf8(msg.get_payload_bytes())
                            .ok()
                            .and_then(|t| t.parse::<u64>().ok());
                        if let Some(token) = token {
                            let waiter = s.waiters.lock().ok().and_then(|mut w| w.remove(&token));
                            if let Some(tx) = waiter {
                                let _ = tx.send(());
                            }
                        }
                    }
                }
            }
            Err(e) => debug!(error = %e, "turn channel connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

pub struct RedisTurn {
    token: u64,
    keys: LeaseKeys,
    shared: Arc<Shared>,
    extender: JoinHandle<()>,
    /// The record acquire.lua read along with the grant.
    prefetched: Option<Loaded>,
    /// Released by the store's commit already.
    released: bool,
}

impl Turn for RedisTurn {
    fn fence(&self) -> u64 {
        self.token
    }

    fn take_loaded(&mut self) -> Option<Loaded> {
        self.prefetched.take()
    }

    fn mark_released(&mut self) {
        self.released = true;
    }
}

impl Drop for RedisTurn {
    fn drop(&mut self) {
        self.extender.abort();
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

impl Turns for RedisTurns {
    type Turn = RedisTurn;

    async fn acquire(&self, key: &ConvKey, wait: Duration) -> Result<RedisTurn, TurnError> {
        self.acquire_inner(key, wait, None).await
    }

    async fn acquire_for_request(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<RedisTurn, TurnError> {
        self.acquire_inner(key, wait, Some(dedupe_id)).await
    }

    async fn quiesce(&self, within: Duration) {
        self.quiesce_inner(within).await
    }
}

impl RedisTurns {
    /// `load`: `Some(dedupe id)` to read the record along with an
    /// immediate grant.
    async fn acquire_inner(
        &self,
        key: &ConvKey,
        wait: Duration,
        load: Option<Option<&str>>,
    ) -> Result<RedisTurn, TurnError> {
        let s = &self.shared;
        let conv_keys = s.conn.keys(key);
        let keys = LeaseKeys {
            lease: conv_keys.lease(),
            queue: conv_keys.queue(),
        };
        let token = s.fresh_token();
        let deadline = tokio::time::Instant::now() + wait;
        // Listen before queueing, so a hand-over cannot slip past us.
        let (tx, mut notice) = oneshot::channel();
        if let Ok(mut w) = s.waiters.lock() {
            w.insert(token, tx);
        }
        // From here on, however this future ends (an error, the wait bound,
        // or being dropped mid-wait), the place is given up unless taken.
        let place = QueuePlace {
            shared: Arc::clone(s),
            keys: keys.clone(),
            token,
            held: false,
        };
        let args = [
            token.to_string(),
            s.lease_ms.to_string(),
            s.queue_ttl_ms.to_string(),
            s.channel.clone(),
        ];
        let load_keys = load.map(|id| (&conv_keys, id));
        // On an error the script may have run (or may still run) without us
        // seeing the reply: dropping `place` leaves the queue either way.
        let (mut granted, prefetched) = s.run_acquire(&keys, token, load_keys).await?;
        while !granted {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // Dropping `place` leaves the queue; if the turn arrived
                // meanwhile, it is passed on.
                return Err(TurnError::WaitExceeded(wait));
            }
            let nap = CHECK_EVERY.min(deadline - now);
            tokio::select! {
                // A hand-over sets the lease to our token before announcing it.
                _ = &mut notice => granted = true,
                _ = tokio::time::sleep(nap) => {
                    granted = s.run(&s.check, &keys, &args).await.map(|g| g == 1).unwrap_or(false);
                }
            }
        }
        place.taken();
        let extender = tokio::spawn(keep_alive(Arc::clone(s), keys.clone(), token));
        Ok(RedisTurn {
            token,
            keys,
            shared: Arc::clone(s),
            extender,
            prefetched,
            released: false,
        })
    }

    async fn quiesce_inner(&self, within: Duration) {
        let s = &self.shared;
        let _ = tokio::time::timeout(within, async {
            loop {
                let notified = s.released.notified();
                let orphans = s.orphans.lock().map(|o| o.len()).unwrap_or(0);
                if s.releasing.load(Ordering::SeqCst) == 0 && orphans == 0 {
                    return;
                }
                // Orphans are retried by the sweeper; look again shortly.
                let _ = tokio::time::timeout(CHECK_EVERY, notified).await;
            }
        })
        .await;
    }
}

/// Extends the lease every third of its length while the turn is held.
async fn keep_alive(shared: Arc<Shared>, keys: LeaseKeys, token: u64) {
    let every = Duration::from_millis((shared.lease_ms / 3).max(10));
    let args = [
        token.to_string(),
        shared.lease_ms.to_string(),
        shared.queue_ttl_ms.to_string(),
    ];
    loop {
        tokio::time::sleep(every).await;
        match shared.run(&shared.extend, &keys, &args).await {
            Ok(1) => {}
            Ok(_) => {
                warn!("turn lease taken over while held; this request's write will be refused");
                return;
            }
            // Redis unreachable: try again; if it stays away the lease expires.
            Err(e) => debug!(error = %e, "lease extension failed"),
        }
    }
}
