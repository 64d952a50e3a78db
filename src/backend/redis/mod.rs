//! The Redis backend: records and turns shared by every replica.
//!
//! - `endpoint.rs`: one server, Sentinel or Cluster; clients, connecting.
//! - `failover.rs`: follows Sentinel's `+switch-master` announcements.
//! - `conn.rs`: the connection, timeouts, error classification;
//!   `error.rs`: an operation's errors (`OpError`, mapped
//!   to the store's by kind) and the client's at startup.
//! - `breaker.rs`: the circuit breaker.
//! - `keys.rs`: key names, one hash tag per conversation.
//! - `scripts.rs`: every script, built with the deployment's constants.
//! - `records.rs`: `load.lua`, `commit.lua` (its keys and arguments laid
//!   out by `commit_call.rs`, the other scripts' by `calls.rs`); `views.rs`: reads for the admin API and
//!   maintenance (links, history, audit, scan); `marks.rs`: the key marks
//!   (`marks.lua`, replicas share their keys).
//! - `turns.rs`: the leased, fenced ticket queue (`check.lua`,
//!   `release.lua`, `extend.lua`, `turn_lib.lua`); `acquire.rs`: queueing
//!   for a turn (`acquire.lua`); `deferred.rs`: deferred turns
//!   (`defer.lua`, `adopt.lua`).
//! - `shared.rs`: what a process's turns share (connection, scripts,
//!   waiters, orphans); `background.rs`: hand-over notices, the orphan
//!   sweeper, lease extension.
//!
//! An uncontended request costs two round trips: `acquire.lua` (turn,
//! record, TTL refresh, dedupe lookup) and `commit.lua` (fence and version
//! check, write, dedupe record, release). Redis expires keys itself, so
//! `purge_expired` has nothing to do.

mod acquire;
mod alias;
mod audit_read;
mod audit_streams;
mod audit_view;
mod background;
mod breaker;
mod calls;
mod cluster_links;
mod commit_call;
mod conn;
mod deferred;
mod endpoint;
mod error;
mod failover;
mod keys;
mod marks;
mod probe;
mod records;
mod scripts;
mod sentinel;
mod shared;
mod turns;
mod views;

use std::sync::Arc;
use std::time::Duration;

pub use conn::RedisConn;
pub use endpoint::{Access, Topology};
pub use error::ConnError;
pub use keys::{escape_key_part, ConvKeys};

use super::audit::{AuditEntry, AuditNote, AuditQuery};
use super::{
    Adoption, Commit, CommitOutcome, Dumped, Held, Inspect, Lifecycle, Links, Loaded, Origin,
    RecordedResponse, Retention, ScanPage, StoreError, TurnError, TurnToken, Turns, Version,
};
use crate::key::ConvKey;
use crate::privacy::marks::{MarkWrites, Recorded};
use records::RedisRecords;
use scripts::{Constants, Scripts};
use turns::{RedisTurn, RedisTurns};

/// The Redis backend's timings.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// Snapshot TTL (sliding).
    pub ttl: Duration,
    /// How long a dedupe record answers redeliveries.
    pub dedupe_window: Duration,
    /// How long a silent turn holder keeps the turn.
    pub lease: Duration,
    /// The longest a request waits for its turn (sizes the queue's TTL).
    pub max_wait: Duration,
    /// Replicas that must confirm each commit (`WAIT`); 0: none.
    pub min_replica_acks: u32,
}

pub struct RedisBackend {
    records: Arc<RedisRecords>,
    turns: RedisTurns,
}

impl RedisBackend {
    /// Starts the turn machinery (hand-over listener, sweeper) on the
    /// current runtime; connects on first use.
    pub fn new(conn: RedisConn, timings: Timings) -> RedisBackend {
        RedisBackend::with_retention(conn, timings, &Retention::from(timings.ttl))
    }

    /// Like [`RedisBackend::new`], with a lifetime per route (`timings.ttl`
    /// is then unused) and the history kept.
    pub fn with_retention(
        conn: RedisConn,
        timings: Timings,
        retention: &Retention,
    ) -> RedisBackend {
        // A waiting token outlives the longest wait, and a holder's lease
        // on either side of it.
        let queue_ttl = timings.max_wait + timings.lease * 2;
        if conn.sentinels().is_some() {
            tokio::spawn(failover::follow_switches(conn.downgrade()));
        }
        let scripts = Arc::new(Scripts::new(
            &Constants {
                ttl: timings.ttl,
                dedupe_window: timings.dedupe_window,
                lease: timings.lease,
                queue_ttl,
                channel: conn.turn_channel(),
                prefix: conn.prefix().to_string(),
                history: retention.history,
                audit: audit_streams::kept_per_stream(retention.audit, conn.is_cluster()),
                cluster: conn.is_cluster(),
            },
            &retention.lifetimes,
        ));
        RedisBackend {
            records: Arc::new(RedisRecords::new(
                conn.clone(),
                Arc::clone(&scripts),
                timings.min_replica_acks,
                (retention.history, retention.audit),
            )),
            turns: RedisTurns::new(
                conn,
                scripts,
                (timings.lease, queue_ttl),
                retention.audit > 0,
            ),
        }
    }
}

/// A Redis turn: its token fences the commit, which also releases it.
pub struct RedisHeld {
    key: ConvKey,
    records: Arc<RedisRecords>,
    turn: RedisTurn,
    waited: Duration,
    /// On a Cluster: the channel's alias this member's turn was reached by.
    via: Option<alias::ViaAlias>,
}

impl Held for RedisHeld {
    fn waited(&self) -> Duration {
        self.waited
    }

    async fn finish(mut self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let fence = self.turn.token;
        let result = match commit.origin {
            Origin::Import { version, ttl_ms } => {
                let restored = (version, ttl_ms);
                self.records
                    .restore(&self.key, fence, commit, restored)
                    .await
            }
            _ if commit.link.is_some() && self.records.on_cluster() => {
                let channel_fence = match commit.link.as_deref() {
                    Some(crate::backend::LinkChange::Link(channel)) => {
                        let lease = self.records.conn.keys(channel).lease();
                        self.turn.shared.held_token(&lease)
                    }
                    _ => None,
                };
                let linked = self
                    .records
                    .commit_link_on_cluster(
                        &self.key,
                        fence,
                        commit,
                        (self.via.as_ref(), channel_fence),
                    )
                    .await;
                match linked {
                    // The member's commit never ran: dropping the turn
                    // releases it.
                    Ok(None) => return Ok(CommitOutcome::Conflict { current: 0 }),
                    Ok(Some(outcome)) => Ok(outcome),
                    Err(e) => Err(e),
                }
            }
            _ => self.records.commit(&self.key, fence, commit).await,
        };
        // commit.lua released the turn; when it failed, dropping the turn
        // releases it instead.
        self.turn.released = result.is_ok();
        result
    }

    fn stored_key(&self) -> &ConvKey {
        &self.key
    }

    async fn defer(
        &mut self,
        token: &TurnToken,
        dedupe: Option<(String, RecordedResponse)>,
        within: Duration,
    ) -> Result<(), StoreError> {
        // The deferral lives as long as the report timeout: past it a
        // report finds nothing, even while a dead holder's lease runs out.
        self.turn.defer(&self.key, token, dedupe, within).await
    }

    async fn lost(&mut self) {
        self.turn.lost().await
    }
}

impl Turns for RedisBackend {
    type Held = RedisHeld;

    async fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(RedisHeld, Loaded), TurnError> {
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let taken = self.turns.acquire(key, left, dedupe_id).await?;
            let (turn, member, via) = (taken.turn, taken.member, taken.via);
            // Granted at once, the one script was the read; after a wait, the
            // read follows (and sees whether the key moved meanwhile).
            let (loaded, waited, channels) = match taken.prefetched {
                Some(loaded) => (loaded, Duration::ZERO, taken.channels),
                None => {
                    let waited = started.elapsed();
                    let read = self
                        .records
                        .load_granted((key, member.as_ref()), via.as_ref(), dedupe_id)
                        .await?;
                    let Some((mut loaded, channels)) = read else {
                        // Linked or unlinked while we waited: the turn is
                        // not the one to hold. Passed on before beginning
                        // again (on a Cluster the channel's alias is
                        // followed only while its own turn is free).
                        turn.leave().await;
                        continue;
                    };
                    loaded.member = member.clone();
                    (loaded, waited, channels)
                }
            };
            let key = member.unwrap_or_else(|| key.clone());
            // A recorded answer replayed acknowledges what its commit wrote,
            // and that commit's `WAIT` may have fallen short (its request
            // got 503, the dedupe record stayed on the primary alone): so
            // with `min_replica_acks` the replay waits for the same
            // confirmation, or is `Unreplicated` (the turn passes on when
            // dropped here). The Sentinel chaos soak lost steps without it.
            if let (Some(_), Some((replicas, wait_ms))) =
                (&loaded.duplicate, self.records.confirmation())
            {
                let acked = turn.extend_and_wait(replicas, wait_ms).await?;
                self.records.enough_acks(acked)?;
            }
            self.records.slide_aliases(&key, channels);
            let held = RedisHeld {
                key,
                records: Arc::clone(&self.records),
                turn,
                waited,
                via,
            };
            return Ok((held, loaded));
        }
    }

    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<RedisHeld>, StoreError> {
        let adopted = self.turns.adopt(token).await?;
        Ok(adopted.map(|turn| RedisHeld {
            key: token.key().clone(),
            records: Arc::clone(&self.records),
            turn,
            waited: Duration::ZERO,
            via: None,
        }))
    }
}

impl Inspect for RedisBackend {
    async fn load(&self, key: &ConvKey) -> Result<Loaded, StoreError> {
        self.records.load(key, None).await
    }

    async fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        self.records.links(key).await
    }

    async fn dump(&self, key: &ConvKey) -> Result<Option<Dumped>, StoreError> {
        self.records.dump(key).await
    }

    async fn history(&self, key: &ConvKey) -> Result<Vec<Version>, StoreError> {
        self.records.history(key).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.records.audit(query).await
    }

    async fn note_view(
        &self,
        key: &ConvKey,
        note: &AuditNote,
        version: u64,
    ) -> Result<(), StoreError> {
        self.records.note_view(key, note, version).await
    }
}

impl Lifecycle for RedisBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        self.records.ping().await
    }

    async fn recorded_marks(&self) -> Result<Option<Recorded>, StoreError> {
        self.records.recorded_marks().await.map(Some)
    }

    async fn record_marks(
        &self,
        expected: Option<&str>,
        writes: &MarkWrites,
    ) -> Result<bool, StoreError> {
        self.records.record_marks(expected, writes).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn quiesce(&self, within: Duration) {
        self.turns.quiesce(within).await
    }

    async fn scan(&self, cursor: Option<String>, count: usize) -> Result<ScanPage, StoreError> {
        self.records.scan(cursor, count).await
    }
}
