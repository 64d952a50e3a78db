//! The embedded single-node backend: records in a redb file, turns in
//! process.
//!
//! Durability: every commit is a redb write transaction with immediate
//! durability (fsync) and is acknowledged only after it. To keep fsyncs from
//! capping throughput, one writer thread does *group commit*: it drains every
//! pending commit into one transaction and fsyncs once for the batch.
//!
//! - `store.rs`: opening the file, reads, handing writes to the writer.
//! - `writer.rs`: the writer thread (commits, TTL slides, purge).
//! - `rows.rs`: the tables and the byte layout of their rows.
//! - `turns.rs`: in-process turns.

mod change;
mod links;
mod read;
mod rows;
mod store;
mod turns;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use store::OpenError;

use super::audit::{AuditEntry, AuditNote, AuditQuery};
use super::{
    Adoption, Commit, CommitOutcome, Dumped, Held, Inspect, Lifecycle, Links, Loaded,
    RecordedResponse, Retention, ScanPage, StoreError, TurnError, TurnToken, Turns, Version,
};
use crate::key::ConvKey;
use read::TurnRead;
use store::EmbeddedStore;
use turns::{LocalTurn, LocalTurns};

pub struct EmbeddedBackend {
    records: Arc<EmbeddedStore>,
    turns: LocalTurns,
}

impl EmbeddedBackend {
    /// Opens (or creates) the database and starts its writer thread.
    /// `cache_bytes` bounds redb's page cache (its own default is 1 GiB,
    /// which would make RSS grow with the data).
    /// `retention`: every record's lifetime (a `Duration`), or per route,
    /// and the history kept ([`Retention`]).
    pub fn open(
        path: &Path,
        retention: impl Into<Retention>,
        dedupe_window: Duration,
        cache_bytes: usize,
    ) -> Result<EmbeddedBackend, OpenError> {
        Ok(EmbeddedBackend {
            records: Arc::new(EmbeddedStore::open(
                path,
                retention.into(),
                dedupe_window,
                cache_bytes,
            )?),
            turns: LocalTurns::default(),
        })
    }

    /// Finishes pending writes and closes the file (releasing its lock), for
    /// tools that hand the database to a statehold process afterwards.
    /// Turns still held keep the file open until they end.
    pub fn close(self) {
        if let Ok(records) = Arc::try_unwrap(self.records) {
            records.close();
        }
    }
}

/// An embedded turn: the in-process slot and the records to commit to.
pub struct EmbeddedHeld {
    key: ConvKey,
    records: Arc<EmbeddedStore>,
    _turn: LocalTurn,
    waited: Duration,
}

impl Held for EmbeddedHeld {
    fn waited(&self) -> Duration {
        self.waited
    }

    async fn finish(self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        // The turn is released when `self` drops, after the commit is durable.
        self.records.commit(&self.key, commit).await
    }

    fn stored_key(&self) -> &ConvKey {
        &self.key
    }

    /// The dedupe record is written like a commit that keeps the snapshot;
    /// the in-process turn simply stays held (reports reach this process).
    async fn defer(
        &mut self,
        _token: &TurnToken,
        dedupe: Option<(String, RecordedResponse)>,
        _within: Duration,
    ) -> Result<(), StoreError> {
        let keep = Commit::dedupe_only(dedupe);
        self.records.commit(&self.key, keep).await.map(|_| ())
    }

    async fn lost(&mut self) {
        std::future::pending().await
    }
}

impl Turns for EmbeddedBackend {
    type Held = EmbeddedHeld;

    async fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(EmbeddedHeld, Loaded), TurnError> {
        let started = tokio::time::Instant::now();
        // Guess the key is no channel; the read under the turn tells, and a
        // channel's request moves to its member's turn (links change only
        // under the member's turn, so the read under it holds for the turn).
        let mut member: Option<ConvKey> = None;
        loop {
            let target = member.clone().unwrap_or_else(|| key.clone());
            let left = wait.saturating_sub(started.elapsed());
            let turn = self.turns.acquire(&target, left).await?;
            let read = self.records.read_turn((key, member.as_ref()), dedupe_id)?;
            let loaded = match read {
                TurnRead::Loaded(loaded) => loaded,
                TurnRead::Moved(to) => {
                    member = to;
                    continue;
                }
            };
            let held = EmbeddedHeld {
                key: target,
                records: Arc::clone(&self.records),
                _turn: turn,
                waited: started.elapsed(),
            };
            return Ok((held, loaded));
        }
    }

    /// Reports reach the process that deferred: a turn is never adopted
    /// here, but a report that overtook its deferral waits for it.
    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<EmbeddedHeld>, StoreError> {
        Ok(if self.turns.is_busy(token.key()) {
            Adoption::Pending
        } else {
            Adoption::Unknown
        })
    }
}

impl Inspect for EmbeddedBackend {
    async fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        self.records.links(key)
    }

    async fn dump(&self, key: &ConvKey) -> Result<Option<Dumped>, StoreError> {
        self.records.dump(key)
    }

    async fn load(&self, key: &ConvKey) -> Result<Loaded, StoreError> {
        self.records.load(key, None).await
    }

    async fn history(&self, key: &ConvKey) -> Result<Vec<Version>, StoreError> {
        self.records.history(key)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.records.audit(query)
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

impl Lifecycle for EmbeddedBackend {
    async fn ping(&self) -> Result<(), StoreError> {
        self.records.ping().await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.records.purge_expired().await
    }

    async fn quiesce(&self, _within: Duration) {}

    async fn scan(&self, cursor: Option<String>, count: usize) -> Result<ScanPage, StoreError> {
        self.records.scan(cursor, count)
    }
}
