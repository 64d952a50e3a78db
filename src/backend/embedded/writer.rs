//! The embedded store's single writer thread: group commit (every pending
//! job in one redb transaction, one fsync per batch), commits, TTL slides
//! and the purge of what expired.

use std::sync::mpsc;

use redb::{Database, ReadableTable, Table};
use tokio::sync::oneshot;

use super::rows::*;
use crate::backend::{Commit, CommitOutcome, Lifetimes, Origin, StateChange, StoreError};
use crate::key::ConvKey;

/// The writer's TTLs: each conversation's lifetime, the dedupe window.
#[derive(Clone)]
pub(super) struct Limits {
    pub(super) lifetimes: Lifetimes,
    pub(super) dedupe_ms: u64,
    /// Versions kept per conversation (`store.history`).
    pub(super) history: u32,
    /// Audit events kept (`audit.max_events`).
    pub(super) audit: u64,
}

impl Limits {
    /// `key`'s record lifetime in milliseconds.
    pub(super) fn ttl_ms(&self, key: &ConvKey) -> u64 {
        self.lifetimes.of(key).as_millis() as u64
    }
}

/// One write for the writer thread. `now` is the caller's clock reading
/// (`clock::now_ms`), taken on the request's side so expiry follows the
/// runtime's clock (paused in tests).
pub(super) enum Job {
    Commit {
        key: ConvKey,
        commit: Box<Commit>,
        now: u64,
        reply: oneshot::Sender<Result<CommitOutcome, StoreError>>,
    },
    Purge {
        now: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Append an audit event that changes nothing (a `view`).
    Note {
        event: Vec<u8>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Slide a live record's TTL; fire and forget (a lost touch only means
    /// the record expires a little earlier).
    Touch { key: ConvKey, now: u64 },
}

/// Group commit: each wake-up drains every pending job into one transaction.
pub(super) fn writer_loop(db: &Database, jobs: mpsc::Receiver<Job>, limits: Limits) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(db, batch, &limits);
    }
}

fn run_batch(db: &Database, batch: Vec<Job>, limits: &Limits) {
    match apply_batch(db, &batch, limits) {
        Ok(outcomes) => reply(batch, outcomes),
        Err(e) => fail(batch, &e.to_string()),
    }
}

/// Every job of the batch in one transaction, one fsync.
fn apply_batch(db: &Database, batch: &[Job], limits: &Limits) -> Result<Vec<Outcome>, redb::Error> {
    let txn = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut snapshots = txn.open_table(SNAPSHOTS)?;
        let mut dedupe = txn.open_table(DEDUPE)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        let mut history = txn.open_table(HISTORY)?;
        let mut audit = txn.open_table(AUDIT)?;
        let mut aliases = txn.open_table(ALIASES)?;
        let mut member_links = txn.open_table(MEMBER_LINKS)?;
        let mut tables = Tables {
            snapshots: &mut snapshots,
            dedupe: &mut dedupe,
            expiry: &mut expiry,
            history: &mut history,
            audit: &mut audit,
            aliases: &mut aliases,
            member_links: &mut member_links,
        };
        for job in batch {
            outcomes.push(match job {
                Job::Commit {
                    key, commit, now, ..
                } => Outcome::Commit(apply_commit(&mut tables, key, commit, *now, limits)?),
                Job::Purge { now, .. } => Outcome::Purge(purge(&mut tables, *now, limits)?),
                Job::Note { event, .. } => {
                    tables.append_event(event, limits.audit)?;
                    Outcome::Noted
                }
                Job::Touch { key, now } => {
                    touch(&mut tables, key, *now, limits)?;
                    Outcome::Touched
                }
            });
        }
    }
    txn.commit()?;
    Ok(outcomes)
}

/// Answers each job of a durable batch. A reply that cannot be delivered
/// means its request was cancelled (client gone): the write is done either
/// way, so nothing is lost.
fn reply(batch: Vec<Job>, outcomes: Vec<Outcome>) {
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        match (job, outcome) {
            (Job::Commit { reply, .. }, Outcome::Commit(o)) => {
                reply.send(o).ok();
            }
            (Job::Purge { reply, .. }, Outcome::Purge(n)) => {
                reply.send(Ok(n)).ok();
            }
            (Job::Note { reply, .. }, Outcome::Noted) => {
                reply.send(Ok(())).ok();
            }
            _ => {}
        }
    }
}

/// The batch's transaction failed: every job in it fails.
fn fail(batch: Vec<Job>, reason: &str) {
    let err = || StoreError::Unavailable(reason.to_string().into());
    for job in batch {
        // A reply that cannot be delivered: its request was cancelled.
        let _ = match job {
            Job::Commit { reply, .. } => reply.send(Err(err())).is_ok(),
            Job::Purge { reply, .. } => reply.send(Err(err())).is_ok(),
            Job::Note { reply, .. } => reply.send(Err(err())).is_ok(),
            Job::Touch { .. } => true,
        };
    }
}

enum Outcome {
    Commit(Result<CommitOutcome, StoreError>),
    Purge(u64),
    Noted,
    Touched,
}

pub(super) struct Tables<'a, 't> {
    pub(super) snapshots: &'a mut Table<'t, &'static str, &'static [u8]>,
    pub(super) dedupe: &'a mut Table<'t, &'static str, &'static [u8]>,
    pub(super) expiry: &'a mut Table<'t, (u64, &'static str), ()>,
    pub(super) history: &'a mut Table<'t, (&'static str, u64), &'static [u8]>,
    pub(super) audit: &'a mut Table<'t, u64, &'static [u8]>,
    pub(super) aliases: &'a mut Table<'t, &'static str, &'static str>,
    pub(super) member_links: &'a mut Table<'t, (&'static str, &'static str), ()>,
}

/// Applies one commit inside the batch's transaction. A logical refusal
/// (conflict, damaged record) is that commit's answer and leaves the rest of
/// the batch alone; only storage errors abort the transaction.
fn apply_commit(
    t: &mut Tables<'_, '_>,
    key: &ConvKey,
    commit: &Commit,
    now: u64,
    limits: &Limits,
) -> Result<Result<CommitOutcome, StoreError>, redb::Error> {
    let current = match live_record(t, key, (now, limits))? {
        Ok(current) => current,
        Err(damaged) => return Ok(Err(damaged)),
    };
    let current_version = current.as_ref().map_or(0, |c| c.0);
    if refused(t, key, commit, current_version)? {
        return Ok(Ok(CommitOutcome::Conflict {
            current: current_version,
        }));
    }
    let expires = match commit.origin {
        Origin::Import { ttl_ms, .. } => now.saturating_add(ttl_ms),
        _ => now.saturating_add(limits.ttl_ms(key)),
    };
    let index_key = tagged(TAG_SNAPSHOT, key.as_str());
    if commit.change == StateChange::Forget {
        if let Some((_, old_expires, _)) = &current {
            t.forget(key.as_str(), (*old_expires, index_key.as_str()))?;
        }
        return Ok(Ok(CommitOutcome::Committed { version: 0 }));
    }
    let (version, state): (u64, Option<&[u8]>) = match (&commit.change, &current) {
        (StateChange::Put(json), _) if matches!(commit.origin, Origin::Import { .. }) => {
            (imported(commit), Some(json))
        }
        (StateChange::Clear, _) if matches!(commit.origin, Origin::Import { .. }) => {
            (imported(commit), None)
        }
        (StateChange::Put(json), _) => (current_version + 1, Some(json)),
        (StateChange::Clear, Some(_)) => (current_version + 1, None),
        (StateChange::Keep, Some((v, _, s))) => (*v, s.as_deref()),
        // Nothing stored and nothing to store: no record to refresh
        // (a forget was handled above).
        (StateChange::Clear | StateChange::Keep, None) | (StateChange::Forget, _) => (0, None),
    };
    // A link needs a record to live as long as (a member without state
    // gets one at version 0).
    if version > 0 || commit.link.is_some() {
        let old_expires = current.as_ref().map(|c| c.1);
        write_row(t, (key, &index_key), (version, expires, state), old_expires)?;
    }
    if let Some(link) = &commit.link {
        t.apply_link(key, link)?;
    }
    if version != current_version || commit.link.is_some() {
        let versions = (current_version, version);
        t.note_change(key, commit, versions, state, (now, limits))?;
    }
    if let Some((id, response)) = &commit.dedupe {
        record_answer(t, &dedupe_key(key, id), response, now, limits)?;
    }
    Ok(Ok(CommitOutcome::Committed { version }))
}

/// A commit that must not apply: its expected version moved on, an import
/// over a record at its version or newer, or a link that would chain.
fn refused(
    t: &mut Tables<'_, '_>,
    key: &ConvKey,
    commit: &Commit,
    current_version: u64,
) -> Result<bool, redb::Error> {
    let stale = commit
        .expected_version
        .is_some_and(|expected| expected != current_version)
        || matches!(commit.origin, Origin::Import { version, .. } if version <= current_version);
    Ok(stale
        || match &commit.link {
            Some(link) => !t.may_link(key, link)?,
            None => false,
        })
}

/// The version an import writes.
fn imported(commit: &Commit) -> u64 {
    match commit.origin {
        Origin::Import { version, .. } => version,
        _ => 0,
    }
}

/// Writes a record row and moves its expiry entry.
fn write_row(
    t: &mut Tables<'_, '_>,
    (key, index_key): (&ConvKey, &str),
    (version, expires, state): (u64, u64, Option<&[u8]>),
    old_expires: Option<u64>,
) -> Result<(), redb::Error> {
    if let Some(old) = old_expires {
        t.expiry.remove((old, index_key))?;
    }
    t.snapshots.insert(
        key.as_str(),
        encode_record(version, expires, state).as_slice(),
    )?;
    t.expiry.insert((expires, index_key), ())?;
    Ok(())
}

/// Keeps a recorded answer for the dedupe window; the first one stays.
fn record_answer(
    t: &mut Tables<'_, '_>,
    dk: &str,
    response: &crate::backend::RecordedResponse,
    now: u64,
    limits: &Limits,
) -> Result<(), redb::Error> {
    if t.dedupe.get(dk)?.is_some() {
        return Ok(());
    }
    let until = now.saturating_add(limits.dedupe_ms);
    let mut value = until.to_le_bytes().to_vec();
    value.extend_from_slice(&response.encode());
    t.dedupe.insert(dk, value.as_slice())?;
    t.expiry
        .insert((until, tagged(TAG_DEDUPE, dk).as_str()), ())?;
    Ok(())
}

/// A stored row: version, expiry, state.
type Row = (u64, u64, Option<Vec<u8>>);

/// A conversation's stored row; an expired
/// row not purged yet is removed here: gone, version included. `Ok(Err)`:
/// the row is damaged (that commit's answer, not the batch's).
fn live_record(
    t: &mut Tables<'_, '_>,
    key: &ConvKey,
    (now, limits): (u64, &Limits),
) -> Result<Result<Option<Row>, StoreError>, redb::Error> {
    let existing = match t.snapshots.get(key.as_str())? {
        Some(raw) => match decode_record(raw.value()) {
            Ok(r) => Some((r.version, r.expires_ms, r.state.map(<[u8]>::to_vec))),
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
    match existing {
        Some((version, expires, _)) if expires <= now => {
            t.expiry
                .remove((expires, tagged(TAG_SNAPSHOT, key.as_str()).as_str()))?;
            t.snapshots.remove(key.as_str())?;
            t.drop_history(key.as_str())?;
            t.drop_links(key.as_str())?;
            t.note_expiry(key.as_str(), version, (now, limits))?;
            Ok(Ok(None))
        }
        other => Ok(Ok(other)),
    }
}

/// Moves a live record's expiry to now + TTL.
fn touch(
    t: &mut Tables<'_, '_>,
    key: &ConvKey,
    now: u64,
    limits: &Limits,
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
        let expires = now.saturating_add(limits.ttl_ms(key));
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
fn purge(t: &mut Tables<'_, '_>, now: u64, limits: &Limits) -> Result<u64, redb::Error> {
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
                Some(raw) => match decode_record(raw.value()) {
                    Ok(r) if r.expires_ms <= now => Some(r.version),
                    Ok(_) => None,
                    Err(_) => Some(0),
                },
                None => None,
            };
            if let Some(version) = still_expired {
                t.snapshots.remove(key)?;
                t.drop_history(key)?;
                t.drop_links(key)?;
                t.note_expiry(key, version, (now, limits))?;
            }
        } else {
            t.dedupe.remove(key)?;
        }
    }
    Ok(expired.len() as u64)
}
