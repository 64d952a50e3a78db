//! The degraded-mode spool (`on_unavailable = "passthrough"` with a shared
//! store): snapshots a bot reported while the store was unreachable are kept
//! in a local redb file and written back when the store returns.
//!
//! - One entry per conversation: a newer report replaces the snapshot but
//!   keeps the version the first one was based on (the last version this
//!   process saw before the outage).
//! - Write-back takes the conversation's turn and commits only if the stored
//!   version is still that base; otherwise another replica moved the
//!   conversation on, and the spooled snapshot is dropped, counted as a
//!   conflict and logged.
//! - A request of a conversation that has an entry is served from it (the
//!   pipeline takes the entry under the conversation's turn): the bot never
//!   sees the pre-outage snapshot while a newer one waits here.
//! - Bounded by `store.spool_max` conversations; it survives a restart.
//! - `entry.rs`: an entry's format; `write_back.rs`: the write-back.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tracing::warn;

use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::privacy::Privacy;

mod entry;
mod write_back;

/// The conversation's stored key (hashed with `store.key_secret`) →
/// sealed (with `store.encryption`) `raw key len u16 | raw key | entry`,
/// entry = `has_base u8 | base u64 | change u8 ('p'|'c') | json`. The raw
/// key rides inside the sealed value: the write-back needs it, and the file
/// must not show it.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("spool2");
/// Before privacy at rest: `<ns>:<id>` → entry. Moved to `ENTRIES` on open.
const OLD_ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("spool");

/// Last versions seen, per shard; a shard is cleared when it grows past this.
const SEEN_PER_SHARD: usize = 8192;
const SHARDS: usize = 16;

pub struct Spool {
    db: Database,
    max_entries: u64,
    seen: [Mutex<HashMap<String, u64>>; SHARDS],
    hasher: RandomState,
    /// Entries in the file: lets a request skip the file while it is empty.
    entries: AtomicU64,
    privacy: Arc<Privacy>,
    /// `[audit]` is on: write-backs carry an audit note.
    audit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("store.spool_path {path}: {source}")]
pub struct SpoolOpenError {
    path: String,
    source: crate::error::Cause,
}

/// The spool file failed to read or write, or an entry to seal.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool: {0}")]
    Db(#[from] redb::Error),
    #[error("spool: {0}")]
    Seal(#[from] crate::privacy::SealError),
}

fn db_err(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::Db(e.into())
}

impl Spool {
    /// `audit`: write-backs carry an audit note (`[audit]`).
    pub fn open(
        path: &Path,
        max_entries: u64,
        (privacy, audit): (Arc<Privacy>, bool),
    ) -> Result<Spool, SpoolOpenError> {
        let fail = |source: crate::error::Cause| SpoolOpenError {
            path: path.display().to_string(),
            source,
        };
        crate::private_file::prepare(path).map_err(|e| fail(e.into()))?;
        let db = Database::create(path).map_err(|e| fail(e.into()))?;
        let txn = db.begin_write().map_err(|e| fail(db_err(e).into()))?;
        txn.open_table(ENTRIES)
            .map_err(|e| fail(db_err(e).into()))?;
        txn.commit().map_err(|e| fail(db_err(e).into()))?;
        let spool = Spool {
            db,
            max_entries,
            seen: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
            entries: AtomicU64::new(0),
            privacy,
            audit,
        };
        // Moving entries of an older version's table.
        spool.upgrade().map_err(|e| fail(e.into()))?;
        spool.entries.store(spool.depth(), Ordering::Relaxed);
        Ok(spool)
    }

    /// Records the version the store reported for a conversation (on every
    /// successful load and commit), the base for a later degraded write.
    pub fn saw(&self, key: &ConvKey, version: u64) {
        let shard = (self.hasher.hash_one(key.as_str()) as usize) % SHARDS;
        {
            let mut m = self.seen[shard].lock();
            if m.len() >= SEEN_PER_SHARD && !m.contains_key(key.as_str()) {
                m.clear();
            }
            m.insert(key.as_str().to_string(), version);
        }
    }

    fn last_seen(&self, key: &ConvKey) -> Option<u64> {
        let shard = (self.hasher.hash_one(key.as_str()) as usize) % SHARDS;
        self.seen[shard].lock().get(key.as_str()).copied()
    }

    /// Keeps a snapshot reported in degraded mode. `Ok(false)`: the spool is
    /// full and the snapshot is dropped.
    pub fn push(&self, key: &ConvKey, change: &StateChange) -> Result<bool, SpoolError> {
        if *change == StateChange::Keep {
            return Ok(true);
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        let accepted = {
            let mut t = txn.open_table(ENTRIES).map_err(db_err)?;
            let name = self.name(key);
            let previous_base = t
                .get(name.as_str())
                .map_err(db_err)?
                .and_then(|raw| self.read(&name, raw.value()))
                .map(|(_, base, _)| base);
            if previous_base.is_none() && t.len().map_err(db_err)? >= self.max_entries {
                false
            } else {
                // A newer report keeps the first one's base.
                let base = previous_base.unwrap_or_else(|| self.last_seen(key));
                let value = self.value(&name, key, base, change)?;
                t.insert(name.as_str(), value.as_ref()).map_err(db_err)?;
                true
            }
        };
        txn.commit().map_err(db_err)?;
        if accepted {
            self.entries.store(self.depth(), Ordering::Relaxed);
        }
        Ok(accepted)
    }

    /// Conversations waiting to be written back.
    pub fn depth(&self) -> u64 {
        self.db
            .begin_read()
            .ok()
            .and_then(|t| t.open_table(ENTRIES).ok())
            .and_then(|t| t.len().ok())
            .unwrap_or(0)
    }

    /// The entry of one conversation: the version it was based on and the
    /// change the bot reported. Cheap while the spool is empty.
    pub fn pending(&self, key: &ConvKey) -> Result<Option<(Option<u64>, StateChange)>, SpoolError> {
        if self.entries.load(Ordering::Relaxed) == 0 {
            return Ok(None);
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(ENTRIES).map_err(db_err)?;
        let name = self.name(key);
        let entry = t.get(name.as_str()).map_err(db_err)?;
        Ok(entry
            .and_then(|raw| self.read(&name, raw.value()))
            .map(|(_, base, change)| (base, change)))
    }

    /// The conversation's entry is about to be written to the store (or is
    /// dropped). Removed before the commit that writes it, under the
    /// conversation's turn, so nobody sees it after the turn moved on.
    pub fn settle(&self, key: &ConvKey) -> Result<(), SpoolError> {
        self.remove(&self.name(key))
    }

    /// Puts back an entry `settle` removed, when its write failed.
    pub fn restore(
        &self,
        key: &ConvKey,
        base: Option<u64>,
        change: &StateChange,
    ) -> Result<(), SpoolError> {
        let name = self.name(key);
        let value = self.value(&name, key, base, change)?;
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(ENTRIES)
            .map_err(db_err)?
            .insert(name.as_str(), value.as_ref())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        self.entries.store(self.depth(), Ordering::Relaxed);
        Ok(())
    }

    /// Every readable entry: (name in the file, raw key, base, change).
    fn entries(&self) -> Result<Vec<Entry>, SpoolError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(ENTRIES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (name, v) = row.map_err(db_err)?;
            // An entry that cannot be opened stays (its key may come back).
            if let Some((raw, base, change)) = self.read(name.value(), v.value()) {
                out.push((name.value().to_string(), raw, base, change));
            }
        }
        Ok(out)
    }

    fn remove(&self, key: &str) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(ENTRIES)
            .map_err(db_err)?
            .remove(key)
            .map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        self.entries.store(self.depth(), Ordering::Relaxed);
        Ok(())
    }
}

impl Spool {
    /// The entry's name in the file: the conversation's stored key.
    fn name(&self, key: &ConvKey) -> String {
        self.privacy.stored_key(key).as_str().to_string()
    }

    /// The file's value for an entry: framed with the raw key, sealed.
    fn value(
        &self,
        name: &str,
        key: &ConvKey,
        base: Option<u64>,
        change: &StateChange,
    ) -> Result<Bytes, SpoolError> {
        let framed = entry::frame(key.as_str(), base, change);
        Ok(self.privacy.seal_spooled(name, Bytes::from(framed))?)
    }

    /// An entry from the file: (raw key, base, change). `None` (logged)
    /// when it cannot be opened or is malformed.
    fn read(&self, name: &str, value: &[u8]) -> Option<(String, Option<u64>, StateChange)> {
        let framed = match self
            .privacy
            .open_spooled(name, Bytes::copy_from_slice(value))
        {
            Ok(framed) => framed,
            Err(e) => {
                warn!(error = %e, "spool entry cannot be opened; it stays until its key is configured again");
                return None;
            }
        };
        entry::unframe(&framed)
    }

    /// Moves entries of the pre-privacy table into the current one.
    fn upgrade(&self) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut old = txn.open_table(OLD_ENTRIES).map_err(db_err)?;
            let mut new = txn.open_table(ENTRIES).map_err(db_err)?;
            let mut moved = Vec::new();
            for row in old.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                moved.push((k.value().to_string(), entry::decode(v.value())));
            }
            for (full, (base, change)) in moved {
                let Some((ns, id)) = full.split_once(':') else {
                    continue;
                };
                let key = ConvKey::new(ns, id);
                let name = self.name(&key);
                let value = self.value(&name, &key, base, &change)?;
                new.insert(name.as_str(), value.as_ref()).map_err(db_err)?;
                old.remove(full.as_str()).map_err(db_err)?;
            }
        }
        txn.delete_table(OLD_ENTRIES).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(())
    }
}

/// An entry as read: (name in the file, raw key, base, change).
type Entry = (String, String, Option<u64>, StateChange);

/// Shared handle used by the pipeline and the write-back task.
pub type SharedSpool = Arc<Spool>;
