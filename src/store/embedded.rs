//! The embedded single-node backend: a redb database file.
//!
//! Durability: every commit is a redb write transaction with immediate
//! durability (fsync) and is acknowledged only after it. To keep fsyncs from
//! capping throughput, one writer thread does *group commit*: it drains every
//! pending commit into one transaction and fsyncs once for the batch.
//!
//! Layout (three tables):
//! - `snapshots`: `<ns>:<id>` → `version u64 | expires_ms u64 | has_state u8 | json`
//! - `dedupe`: `<ns>:<id>\x1f<dedupe id>` → `expires_ms u64 | recorded response`
//! - `expiry`: `(expires_ms, tag + table key)` → `()`, the index the purge walks,
//!   so purging costs what expired, not what is stored.

use std::path::Path;
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::oneshot;

use super::{
    now_ms, Commit, CommitOutcome, Loaded, RecordedResponse, StateChange, Store, StoreError,
};
use crate::key::ConvKey;

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const DEDUPE: TableDefinition<&str, &[u8]> = TableDefinition::new("dedupe");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

const TAG_SNAPSHOT: char = 's';
const TAG_DEDUPE: char = 'd';
/// Commits applied in one transaction at most.
const MAX_BATCH: usize = 512;
/// Expired entries deleted per purge transaction, so a purge never holds the
/// writer long.
const PURGE_CHUNK: usize = 5_000;

/// Why the database could not be opened (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store.path {path}: cannot create the database there: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("store.path {path}: {reason}")]
    Db { path: String, reason: String },
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Job>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    limits: Limits,
}

/// The writer's fixed TTLs.
#[derive(Clone, Copy)]
struct Limits {
    ttl_ms: u64,
    dedupe_ms: u64,
}

enum Job {
    Commit {
        key: ConvKey,
        commit: Commit,
        reply: oneshot::Sender<Result<CommitOutcome, StoreError>>,
    },
    Purge {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Slide a live record's TTL; fire and forget (a lost touch only means
    /// the record expires a little earlier).
    Touch { key: ConvKey },
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the database and starts its writer thread.
    /// `cache_bytes` bounds redb's page cache (its own default is 1 GiB,
    /// which would make RSS grow with the data).
    pub fn open(
        path: &Path,
        ttl: std::time::Duration,
        dedupe_window: std::time::Duration,
        cache_bytes: usize,
    ) -> Result<EmbeddedStore, OpenError> {
        let shown = path.display().to_string();
        crate::private_file::prepare(path).map_err(|source| OpenError::Dir {
            path: shown.clone(),
            source,
        })?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => OpenError::Db {
                    path: shown.clone(),
                    reason: "already opened by another statehold process".into(),
                },
                redb::DatabaseError::Storage(redb::StorageError::Io(source)) => OpenError::Dir {
                    path: shown.clone(),
                    source,
                },
                other => OpenError::Db {
                    path: shown.clone(),
                    reason: other.to_string(),
                },
            })?;
        let init = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(DEDUPE)?;
            txn.open_table(EXPIRY)?;
            txn.commit()?;
            Ok(())
        };
        init().map_err(|e| OpenError::Db {
            path: shown,
            reason: e.to_string(),
        })?;
        let db = Arc::new(db);
        let (writer, jobs) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let limits = Limits {
            ttl_ms: ttl.as_millis() as u64,
            dedupe_ms: dedupe_window.as_millis() as u64,
        };
        let writer_thread = std::thread::Builder::new()
            .name("statehold-writer".into())
            .spawn(move || writer_loop(&writer_db, jobs, limits))
            .map_err(|e| OpenError::Db {
                path: path.display().to_string(),
                reason: format!("cannot start writer thread: {e}"),
            })?;
        Ok(EmbeddedStore {
            db,
            writer,
            writer_thread: Some(writer_thread),
            limits,
        })
    }

    /// Finishes pending writes and closes the file (releasing its lock), for
    /// tools that hand the database to a statehold process afterwards.
    pub fn close(mut self) {
        let thread = self.writer_thread.take();
        drop(self);
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("embedded store writer thread panicked");
            }
        }
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(make(reply))
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }
}

/// A decoded `snapshots` row.
struct Record<'a> {
    version: u64,
    expires_ms: u64,
    state: Option<&'a [u8]>,
}

fn decode_record(raw: &[u8]) -> Result<Record<'_>, StoreError> {
    if raw.len() < 17 {
        return Err(StoreError::Corrupt("snapshot record too short".into()));
    }
    let version = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
    let expires_ms = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
    let state = (raw[16] == 1).then(|| &raw[17..]);
    Ok(Record {
        version,
        expires_ms,
        state,
    })
}

fn encode_record(version: u64, expires_ms: u64, state: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + state.map_or(0, <[u8]>::len));
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    out.push(u8::from(state.is_some()));
    out.extend_from_slice(state.unwrap_or_default());
    out
}

fn dedupe_key(key: &ConvKey, id: &str) -> String {
    format!("{}\u{1f}{id}", key.as_str())
}

fn tagged(tag: char, key: &str) -> String {
    let mut s = String::with_capacity(1 + key.len());
    s.push(tag);
    s.push_str(key);
    s
}

impl Store for EmbeddedStore {
    async fn load(&self, key: &ConvKey, dedupe_id: Option<&str>) -> Result<Loaded, StoreError> {
        let db = &self.db;
        let snap_key = key.as_str();
        let dedupe_key = dedupe_id.map(|id| dedupe_key(key, id));
        let ttl_ms = self.limits.ttl_ms;
        let read = move || -> Result<(Loaded, bool), StoreError> {
            let now = now_ms();
            let txn = db.begin_read().map_err(db_err)?;
            let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
            let mut loaded = Loaded::default();
            let mut touch = false;
            if let Some(raw) = snapshots.get(snap_key).map_err(db_err)? {
                let record = decode_record(raw.value())?;
                if record.expires_ms > now {
                    loaded.version = record.version;
                    loaded.state = record.state.map(Bytes::copy_from_slice);
                    // Slide the TTL unless a recent write already did (the
                    // end-of-turn commit refreshes it too): at most one
                    // extra write per 1% of the TTL per conversation.
                    touch = record.expires_ms - now < ttl_ms - ttl_ms / 100;
                }
            }
            if let Some(dk) = dedupe_key {
                let dedupe = txn.open_table(DEDUPE).map_err(db_err)?;
                if let Some(raw) = dedupe.get(dk.as_str()).map_err(db_err)? {
                    loaded.duplicate = live_recorded(raw.value(), now)?;
                }
            }
            Ok((loaded, touch))
        };
        // Run inline: a read transaction on cached pages takes microseconds,
        // less than handing it to the blocking pool and back (measured:
        // `cargo bench --bench hot_paths -- embedded/load`).
        let (loaded, touch) = read()?;
        if touch && self.writer.send(Job::Touch { key: key.clone() }).is_err() {
            // Only when the writer stopped (shutdown): the TTL refresh is
            // lost with it, the load itself is fine.
            tracing::debug!("embedded store writer gone: TTL refresh skipped");
        }
        Ok(loaded)
    }

    async fn commit(&self, key: &ConvKey, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let key = key.clone();
        self.submit(|reply| Job::Commit { key, commit, reply })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.begin_read().map(|_| ()).map_err(db_err))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self.submit(|reply| Job::Purge { reply }).await?;
            total += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

fn live_recorded(raw: &[u8], now: u64) -> Result<Option<RecordedResponse>, StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Corrupt("dedupe record too short".into()));
    }
    let expires = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
    if expires <= now {
        return Ok(None);
    }
    RecordedResponse::decode(Bytes::copy_from_slice(&raw[8..])).map(Some)
}

/// Group commit: each wake-up drains every pending job into one transaction.
fn writer_loop(db: &Database, jobs: mpsc::Receiver<Job>, limits: Limits) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(db, batch, limits);
    }
}

fn run_batch(db: &Database, batch: Vec<Job>, limits: Limits) {
    let now = now_ms();
    let applied = (|| -> Result<Vec<Outcome>, redb::Error> {
        let txn = db.begin_write()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut dedupe = txn.open_table(DEDUPE)?;
            let mut expiry = txn.open_table(EXPIRY)?;
            let mut tables = Tables {
                snapshots: &mut snapshots,
                dedupe: &mut dedupe,
                expiry: &mut expiry,
            };
            for job in &batch {
                outcomes.push(match job {
                    Job::Commit { key, commit, .. } => {
                        Outcome::Commit(apply_commit(&mut tables, key, commit, now, limits)?)
                    }
                    Job::Purge { .. } => Outcome::Purge(purge(&mut tables, now)?),
                    Job::Touch { key } => {
                        touch(&mut tables, key, now, limits)?;
                        Outcome::Touched
                    }
                });
            }
        }
        txn.commit()?;
        Ok(outcomes)
    })();
    // A reply that cannot be delivered means its request was cancelled
    // (client gone): the write is done either way, so nothing is lost.
    match applied {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                match (job, outcome) {
                    (Job::Commit { reply, .. }, Outcome::Commit(o)) => {
                        let _ = reply.send(o);
                    }
                    (Job::Purge { reply }, Outcome::Purge(n)) => {
                        let _ = reply.send(Ok(n));
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for job in batch {
                match job {
                    Job::Commit { reply, .. } => {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                    Job::Purge { reply } => {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                    Job::Touch { .. } => {}
                }
            }
        }
    }
}

enum Outcome {
    Commit(Result<CommitOutcome, StoreError>),
    Purge(u64),
    Touched,
}

struct Tables<'a, 't> {
    snapshots: &'a mut Table<'t, &'static str, &'static [u8]>,
    dedupe: &'a mut Table<'t, &'static str, &'static [u8]>,
    expiry: &'a mut Table<'t, (u64, &'static str), ()>,
}

/// Applies one commit inside the batch's transaction. A logical refusal
/// (conflict, damaged record) is that commit's answer and leaves the rest of
/// the batch alone; only storage errors abort the transaction.
fn apply_commit(
    t: &mut Tables<'_, '_>,
    key: &ConvKey,
    commit: &Commit,
    now: u64,
    limits: Limits,
) -> Result<Result<CommitOutcome, StoreError>, redb::Error> {
    let existing = match t.snapshots.get(key.as_str())? {
        Some(raw) => match decode_record(raw.value()) {
            Ok(r) => Some((r.version, r.expires_ms, r.state.map(<[u8]>::to_vec))),
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
    let current = match existing {
        Some((_, expires, _)) if expires <= now => {
            // Expired but not purged yet: gone, version included.
            t.expiry
                .remove((expires, tagged(TAG_SNAPSHOT, key.as_str()).as_str()))?;
            t.snapshots.remove(key.as_str())?;
            None
        }
        other => other,
    };
    let current_version = current.as_ref().map_or(0, |c| c.0);
    if let Some(expected) = commit.expected_version {
        if expected != current_version {
            return Ok(Ok(CommitOutcome::Conflict {
                current: current_version,
            }));
        }
    }
    let expires = now.saturating_add(limits.ttl_ms);
    let index_key = tagged(TAG_SNAPSHOT, key.as_str());
    let (version, state): (u64, Option<&[u8]>) = match (&commit.change, &current) {
        (StateChange::Put(json), _) => (current_version + 1, Some(json)),
        (StateChange::Clear, Some(_)) => (current_version + 1, None),
        (StateChange::Keep, Some((v, _, s))) => (*v, s.as_deref()),
        // Nothing stored and nothing to store: no record to refresh.
        (StateChange::Clear | StateChange::Keep, None) => (0, None),
    };
    if version > 0 {
        if let Some((_, old_expires, _)) = &current {
            t.expiry.remove((*old_expires, index_key.as_str()))?;
        }
        t.snapshots.insert(
            key.as_str(),
            encode_record(version, expires, state).as_slice(),
        )?;
        t.expiry.insert((expires, index_key.as_str()), ())?;
    }
    if let Some((id, response)) = &commit.dedupe {
        let dk = dedupe_key(key, id);
        let exists = t.dedupe.get(dk.as_str())?.is_some();
        if !exists {
            let until = now.saturating_add(limits.dedupe_ms);
            let mut value = until.to_le_bytes().to_vec();
            value.extend_from_slice(&response.encode());
            t.dedupe.insert(dk.as_str(), value.as_slice())?;
            t.expiry
                .insert((until, tagged(TAG_DEDUPE, &dk).as_str()), ())?;
        }
    }
    Ok(Ok(CommitOutcome::Committed { version }))
}

/// Moves a live record's expiry to now + TTL.
fn touch(
    t: &mut Tables<'_, '_>,
    key: &ConvKey,
    now: u64,
    limits: Limits,
) -> Result<(), redb::Error> {
    let record = match t.snapshots.get(key.as_str())? {
        Some(raw) => match decode_record(raw.value()) {
            Ok(r) if r.expires_ms > now => {
                Some((r.version, r.expires_ms, r.state.map(<[u8]>::to_vec)))
            }
            _ => None,
        },
        None => None,
    };
    if let Some((version, old_expires, state)) = record {
        let expires = now.saturating_add(limits.ttl_ms);
        let index_key = tagged(TAG_SNAPSHOT, key.as_str());
        t.expiry.remove((old_expires, index_key.as_str()))?;
        t.snapshots.insert(
            key.as_str(),
            encode_record(version, expires, state.as_deref()).as_slice(),
        )?;
        t.expiry.insert((expires, index_key.as_str()), ())?;
    }
    Ok(())
}

/// Deletes up to `PURGE_CHUNK` expired entries, oldest first.
fn purge(t: &mut Tables<'_, '_>, now: u64) -> Result<u64, redb::Error> {
    let mut expired: Vec<(u64, String)> = Vec::new();
    for entry in t.expiry.range((0u64, "")..(now, ""))? {
        let (k, _) = entry?;
        let (at, tagged_key) = k.value();
        expired.push((at, tagged_key.to_string()));
        if expired.len() >= PURGE_CHUNK {
            break;
        }
    }
    for (at, tagged_key) in &expired {
        t.expiry.remove((*at, tagged_key.as_str()))?;
        let (tag, key) = tagged_key.split_at(1);
        if tag.starts_with(TAG_SNAPSHOT) {
            // Only if the row still carries this expiry (a refresh would have
            // moved its index entry, so this is belt and braces).
            let still_expired = match t.snapshots.get(key)? {
                Some(raw) => decode_record(raw.value()).map_or(true, |r| r.expires_ms <= now),
                None => false,
            };
            if still_expired {
                t.snapshots.remove(key)?;
            }
        } else {
            t.dedupe.remove(key)?;
        }
    }
    Ok(expired.len() as u64)
}
