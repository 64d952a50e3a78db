//! The embedded records: a redb database file. Reads run inline on the
//! caller (microseconds on cached pages); every write goes to the one
//! writer thread (`writer.rs`) and is acknowledged only once durable.

use std::path::Path;
use std::sync::{mpsc, Arc};

use redb::{Database, ReadableDatabase};
use tokio::sync::oneshot;

use super::rows::{
    decode_record, ALIASES, AUDIT, DEDUPE, EXPIRY, HISTORY, MEMBER_LINKS, PURGE_CHUNK, SNAPSHOTS,
};
use super::writer::{writer_loop, Job, Limits};
use crate::backend::audit::{AuditEntry, AuditNote, AuditQuery};
use crate::backend::{now_ms, Commit, CommitOutcome, ScanPage, StoreError, Version};
use crate::key::ConvKey;

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
    pub(super) db: Arc<Database>,
    pub(super) writer: mpsc::Sender<Job>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    pub(super) limits: Limits,
}

pub(super) fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(Box::new(e.into()))
}

/// Creates (or opens) the file, 0600 in a 0700 directory, with its tables.
fn create_db(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    let shown = || path.display().to_string();
    crate::private_file::prepare(path).map_err(|source| OpenError::Dir {
        path: shown(),
        source,
    })?;
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::Db {
                path: shown(),
                reason: "already opened by another statehold process".into(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(source)) => OpenError::Dir {
                path: shown(),
                source,
            },
            other => OpenError::Db {
                path: shown(),
                reason: other.to_string(),
            },
        })?;
    let init = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(SNAPSHOTS)?;
        txn.open_table(DEDUPE)?;
        txn.open_table(EXPIRY)?;
        txn.open_table(HISTORY)?;
        txn.open_table(AUDIT)?;
        txn.open_table(ALIASES)?;
        txn.open_table(MEMBER_LINKS)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|e| OpenError::Db {
        path: shown(),
        reason: e.to_string(),
    })?;
    Ok(db)
}

impl EmbeddedStore {
    /// Opens (or creates) the database and starts its writer thread.
    /// `cache_bytes` bounds redb's page cache (its own default is 1 GiB,
    /// which would make RSS grow with the data).
    pub fn open(
        path: &Path,
        retention: crate::backend::Retention,
        dedupe_window: std::time::Duration,
        cache_bytes: usize,
    ) -> Result<EmbeddedStore, OpenError> {
        let db = Arc::new(create_db(path, cache_bytes)?);
        let (writer, jobs) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let limits = Limits {
            lifetimes: retention.lifetimes,
            history: retention.history,
            audit: retention.audit,
            dedupe_ms: dedupe_window.as_millis() as u64,
        };
        let writer_thread = std::thread::Builder::new()
            .name("statehold-writer".into())
            .spawn({
                let limits = limits.clone();
                move || writer_loop(&writer_db, jobs, limits)
            })
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

impl EmbeddedStore {
    /// One atomic commit through the writer thread.
    pub async fn commit(&self, key: &ConvKey, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let key = key.clone();
        self.submit(|reply| Job::Commit {
            key,
            commit: Box::new(commit),
            now: now_ms(),
            reply,
        })
        .await
    }

    /// Snapshot keys after `cursor`, in key order (inline: a read
    /// transaction over cached pages).
    pub fn scan(&self, cursor: Option<String>, count: usize) -> Result<ScanPage, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
        let rows = match &cursor {
            Some(after) => snapshots.range::<&str>((
                std::ops::Bound::Excluded(after.as_str()),
                std::ops::Bound::Unbounded,
            )),
            None => snapshots.range::<&str>(..),
        }
        .map_err(db_err)?;
        let mut page = ScanPage::default();
        for row in rows.take(count.max(1)) {
            let (key, _) = row.map_err(db_err)?;
            let full = key.value();
            if let Some((ns, id)) = full.split_once(':') {
                page.keys.push(ConvKey::new(ns, id));
            }
            page.next = Some(full.to_string());
        }
        if page.keys.len() < count.max(1) {
            page.next = None;
        }
        Ok(page)
    }

    /// The kept versions, newest first (none once the record expired;
    /// inline, like `scan`).
    pub fn history(&self, key: &ConvKey) -> Result<Vec<Version>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
        let live = match snapshots.get(key.as_str()).map_err(db_err)? {
            Some(raw) => decode_record(raw.value())?.expires_ms > now_ms(),
            None => false,
        };
        if !live {
            return Ok(Vec::new());
        }
        let history = txn.open_table(HISTORY).map_err(db_err)?;
        let k = key.as_str();
        let mut out = Vec::new();
        for entry in history
            .range((k, 0u64)..=(k, u64::MAX))
            .map_err(db_err)?
            .rev()
        {
            let (at, raw) = entry.map_err(db_err)?;
            out.push(Version::decode(at.value().1, raw.value())?);
        }
        Ok(out)
    }

    /// Audit events (inline, like `scan`): one stored key's newest first,
    /// or those after a sequence number oldest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let audit = txn.open_table(AUDIT).map_err(db_err)?;
        let damaged = || StoreError::Corrupt("audit event damaged".into());
        let entry = |seq: u64, raw: &[u8]| -> Result<AuditEntry, StoreError> {
            let event = serde_json::from_slice(raw).map_err(|_| damaged())?;
            Ok(AuditEntry {
                id: seq.to_string(),
                event,
            })
        };
        let mut out = Vec::new();
        if let Some(since) = &query.since {
            let after: u64 = since.parse().map_err(|_| {
                StoreError::Unanswerable(
                    "the embedded store's event ids are sequence numbers: since=<n>",
                )
            })?;
            for row in audit.range(after.saturating_add(1)..).map_err(db_err)? {
                let (seq, raw) = row.map_err(db_err)?;
                out.push(entry(seq.value(), raw.value())?);
                if out.len() >= query.limit {
                    break;
                }
            }
            return Ok(out);
        }
        let wanted = query.key.as_ref().map(|k| k.as_str().to_string());
        for row in audit.range::<u64>(..).map_err(db_err)?.rev() {
            let (seq, raw) = row.map_err(db_err)?;
            let e = entry(seq.value(), raw.value())?;
            if wanted.as_deref().is_none_or(|k| e.event["key"] == k) {
                out.push(e);
                if out.len() >= query.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A `view` event (see [`crate::backend::Inspect::note_view`]),
    /// through the writer thread like every write.
    pub async fn note_view(
        &self,
        key: &ConvKey,
        note: &AuditNote,
        version: u64,
    ) -> Result<(), StoreError> {
        if self.limits.audit == 0 {
            return Ok(());
        }
        let event = note.event(key, ("view", None), now_ms(), (version, version));
        self.submit(|reply| Job::Note {
            event: event.into_bytes(),
            reply,
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.begin_read().map(|_| ()).map_err(db_err))
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?
    }

    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .submit(|reply| Job::Purge {
                    now: now_ms(),
                    reply,
                })
                .await?;
            total += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}
