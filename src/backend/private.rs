//! Any backend, private at rest: keys are hashed and values sealed
//! ([`crate::privacy`]) on the way in, opened on the way out. Callers (the
//! pipeline, the spool's write-back, the admin API) keep using raw keys;
//! the backend underneath only ever sees stored keys and sealed values.
//! With privacy off it passes everything through unchanged.
//!
//! With `store.plaintext_fallback` (while `statehold migrate` moves older
//! conversations onto hashed keys), a conversation with no record under
//! its hashed key is looked up under its plaintext key as well, under that
//! key's turn too; its next write lands on the hashed key and removes the
//! plaintext record. Redeliveries of updates recorded before the switch
//! are found there as well.
//!
//! A recorded answer is sealed whole (status, headers, body, request
//! digest) inside a carrier record: status 200, one header
//! [`SEALED_HEADER`], the sealed encoding as its body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{info, warn};

use super::audit::{AuditEntry, AuditQuery};
use super::sealed::{carrier, open};
use super::{
    Adoption, Backend, Commit, CommitOutcome, Dumped, Held, Inspect, Lifecycle, LinkChange, Links,
    Loaded, RecordedResponse, ScanPage, StoreError, TurnError, TurnToken, Turns, Version,
};
use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::privacy::marks::{MarkWrites, Recorded};
use crate::privacy::Privacy;

pub use super::sealed::SEALED_HEADER;

pub struct Private<B> {
    inner: B,
    privacy: Arc<Privacy>,
    /// `audit.log`: each audited change is also logged (`statehold::audit`).
    audit_log: bool,
}

impl<B> Private<B> {
    pub fn new(inner: B, privacy: Arc<Privacy>) -> Private<B> {
        Private {
            inner,
            privacy,
            audit_log: false,
        }
    }

    /// Mirrors each audited change to the log target `statehold::audit`.
    pub fn with_audit_log(mut self, on: bool) -> Private<B> {
        self.audit_log = on;
        self
    }

    pub fn privacy(&self) -> &Arc<Privacy> {
        &self.privacy
    }

    /// The backend underneath (stored keys, sealed values).
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

pub struct PrivateHeld<H> {
    inner: H,
    raw: ConvKey,
    stored: ConvKey,
    privacy: Arc<Privacy>,
    /// Served from the plaintext key (`plaintext_fallback`).
    plain: Option<Fallback<H>>,
    audit_log: bool,
}

/// A plaintext record served in place of a missing hashed one: its turn
/// (the hashed key's is held too), its version and opened snapshot.
struct Fallback<H> {
    turn: H,
    version: u64,
    state: Option<Bytes>,
}

impl<B: Backend> Turns for Private<B> {
    type Held = PrivateHeld<B::Held>;

    async fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(Self::Held, Loaded), TurnError> {
        let stored = self.privacy.stored_key(key);
        let dedupe = dedupe_id.map(|id| self.privacy.stored_dedupe(key, id));
        let (inner, loaded) = self.inner.begin(&stored, wait, dedupe.as_deref()).await?;
        // A linked channel holds its member's turn and record: sealed
        // under the member's stored name.
        let stored = loaded.member.clone().unwrap_or(stored);
        let mut loaded = open(&self.privacy, &stored, dedupe.as_deref(), loaded);
        let mut plain = None;
        if self.privacy.plaintext_fallback() && loaded.version == 0 && loaded.member.is_none() {
            // The plaintext layout: the raw key and the raw dedupe id.
            let (turn, old) = self.inner.begin(key, wait, dedupe_id).await?;
            let old = open(&self.privacy, key, dedupe_id, old);
            loaded.duplicate = loaded.duplicate.or(old.duplicate);
            if old.undecryptable.is_some() {
                // Shown as such (log, metric, a new conversation); never
                // removed by a write that could not read it.
                loaded.undecryptable = old.undecryptable;
            } else if old.version > 0 {
                loaded.version = old.version;
                loaded.state = old.state.clone();
                plain = Some(Fallback {
                    turn,
                    version: old.version,
                    state: old.state,
                });
            }
        }
        let held = PrivateHeld {
            inner,
            raw: key.clone(),
            stored,
            privacy: Arc::clone(&self.privacy),
            plain,
            audit_log: self.audit_log,
        };
        Ok((held, loaded))
    }

    /// A turn adopted by its token knows only its stored key: its raw
    /// key stands in as the stored one (the same with hashing off).
    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<Self::Held>, StoreError> {
        let stored = token.key();
        let adopted = self.inner.adopt(token).await?.map(|inner| PrivateHeld {
            inner,
            raw: stored.clone(),
            stored: stored.clone(),
            privacy: Arc::clone(&self.privacy),
            plain: None,
            audit_log: self.audit_log,
        });
        Ok(match adopted {
            Adoption::Adopted(held, loaded) => {
                Adoption::Adopted(held, open(&self.privacy, stored, None, loaded))
            }
            other => other,
        })
    }

    fn can_link(&self) -> bool {
        self.inner.can_link()
    }

    fn stored_name(&self, key: &ConvKey) -> ConvKey {
        self.privacy.stored_key(key)
    }
}

impl<B: Backend> Inspect for Private<B> {
    async fn load(&self, key: &ConvKey) -> Result<Loaded, StoreError> {
        let stored = self.privacy.stored_key(key);
        let loaded = open(
            &self.privacy,
            &stored,
            None,
            self.inner.load(&stored).await?,
        );
        if self.privacy.plaintext_fallback() && loaded.version == 0 {
            let old = self.inner.load(key).await?;
            if old.version > 0 {
                return Ok(open(&self.privacy, key, None, old));
            }
        }
        Ok(loaded)
    }

    /// Kept versions with their snapshots opened; one that cannot be
    /// opened (its key is gone) is left out, logged.
    async fn history(&self, key: &ConvKey) -> Result<Vec<Version>, StoreError> {
        let stored = self.privacy.stored_key(key);
        let mut versions = self.inner.history(&stored).await?;
        versions.retain_mut(|v| match v.state.take() {
            None => true,
            Some(value) => match self.privacy.open_state(&stored, value) {
                Ok(json) => {
                    v.state = Some(json);
                    true
                }
                Err(e) => {
                    warn!(version = v.version, error = %e, "a kept version cannot be opened; left out of the history");
                    false
                }
            },
        });
        Ok(versions)
    }

    /// Audit events; a key asked for is looked up by its stored name (the
    /// trail holds stored keys only).
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let stored = AuditQuery {
            key: query.key.as_ref().map(|k| self.privacy.stored_key(k)),
            ..query.clone()
        };
        self.inner.audit(&stored).await
    }

    /// By stored key (scan's), the value as stored: an export moves sealed
    /// values sealed.
    async fn dump(&self, stored: &ConvKey) -> Result<Option<Dumped>, StoreError> {
        self.inner.dump(stored).await
    }

    async fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        self.inner.links(&self.privacy.stored_key(key)).await
    }
}

impl<B: Backend> Lifecycle for Private<B> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn recorded_marks(&self) -> Result<Option<Recorded>, StoreError> {
        self.inner.recorded_marks().await
    }

    async fn record_marks(
        &self,
        expected: Option<&str>,
        writes: &MarkWrites,
    ) -> Result<bool, StoreError> {
        self.inner.record_marks(expected, writes).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }

    async fn quiesce(&self, within: Duration) {
        self.inner.quiesce(within).await
    }

    /// Stored keys (hashed with `store.key_secret`): for maintenance.
    async fn scan(&self, cursor: Option<String>, count: usize) -> Result<ScanPage, StoreError> {
        self.inner.scan(cursor, count).await
    }
}

impl<H: Held> Held for PrivateHeld<H> {
    fn waited(&self) -> Duration {
        self.inner.waited()
    }

    async fn finish(self, mut commit: Commit) -> Result<CommitOutcome, StoreError> {
        // An audit event never names a user: with hashed keys, what could
        // (member names, the request id) is kept as a keyed hash, in the
        // store and in the mirrored log line alike.
        if let Some(note) = commit.audit.as_deref_mut() {
            let p = &self.privacy;
            note.changed = note
                .changed
                .iter()
                .map(|m| p.pseudonym("member", m))
                .collect();
            note.request_id = note
                .request_id
                .as_deref()
                .map(|r| p.pseudonym("request", r));
        }
        let mirror = match (&commit.audit, self.audit_log) {
            (Some(note), true) => Some((note.clone(), commit.kind())),
            _ => None,
        };
        let raw = self.raw.clone();
        let outcome = self.commit_sealed(commit).await?;
        if let (Some((note, kind)), CommitOutcome::Committed { version }) = (mirror, outcome) {
            info!(target: "statehold::audit", key = %raw.display(false), kind, to_version = version,
                route = %note.route, request_id = ?note.request_id, bytes = note.bytes,
                changed = ?note.changed, "state changed");
        }
        Ok(outcome)
    }

    fn stored_key(&self) -> &ConvKey {
        self.inner.stored_key()
    }

    /// The deferred answer's dedupe record, named and sealed as a
    /// commit's would be.
    async fn defer(
        &mut self,
        token: &TurnToken,
        dedupe: Option<(String, RecordedResponse)>,
        within: Duration,
    ) -> Result<(), StoreError> {
        let sealed = self.seal(Commit::dedupe_only(dedupe))?;
        self.inner.defer(token, sealed.dedupe, within).await
    }

    async fn lost(&mut self) {
        self.inner.lost().await
    }
}

impl<H: Held> PrivateHeld<H> {
    async fn commit_sealed(mut self, mut commit: Commit) -> Result<CommitOutcome, StoreError> {
        let Some(plain) = self.plain.take() else {
            let commit = self.seal(commit)?;
            return self.inner.finish(commit).await;
        };
        // Served from the plaintext key: the write moves the conversation
        // onto the hashed key (which has no record: version 0), a kept
        // snapshot included, and then the plaintext record goes.
        if commit.expected_version == Some(plain.version) {
            commit.expected_version = Some(0);
        }
        if let (StateChange::Keep, Some(json)) = (&commit.change, &plain.state) {
            commit.change = StateChange::Put(json.clone());
        }
        let commit = self.seal(commit)?;
        let outcome = self.inner.finish(commit).await?;
        if let CommitOutcome::Committed { .. } = outcome {
            let forget = Commit::maintenance(plain.version, StateChange::Forget);
            if let Err(e) = plain.turn.finish(forget).await {
                // Harmless: the hashed record now shadows it; `statehold
                // migrate` removes it later.
                warn!(error = %e, "moved onto the hashed key; the plaintext record stays until `statehold migrate`");
            }
        }
        Ok(outcome)
    }
}

impl<H> PrivateHeld<H> {
    /// A link change naming the channel by its stored key.
    fn stored_link(&self, link: LinkChange) -> LinkChange {
        match link {
            LinkChange::Link(c) => LinkChange::Link(self.privacy.stored_key(&c)),
            LinkChange::Unlink(c) => LinkChange::Unlink(self.privacy.stored_key(&c)),
        }
    }

    /// The commit as stored: snapshot sealed, dedupe name hashed, recorded
    /// answer sealed.
    fn seal(&self, commit: Commit) -> Result<Commit, StoreError> {
        let p = &self.privacy;
        let sealing = |e| StoreError::Seal(Box::new(e));
        let change = match commit.change {
            StateChange::Put(json) => {
                StateChange::Put(p.seal_state(&self.stored, json).map_err(sealing)?)
            }
            other => other,
        };
        // Dedupe ids are named for the key the request came by: a linking
        // answer, committed on its member, by its channel, where the
        // redelivery will look.
        let came_by = match commit.link.as_deref() {
            Some(LinkChange::Link(channel)) => channel,
            _ => &self.raw,
        };
        let dedupe = match commit.dedupe {
            Some((id, response)) => {
                let name = p.stored_dedupe(came_by, &id);
                let response = if p.keyring().is_some() {
                    let sealed = p
                        .seal_recorded(&self.stored, &name, response.encode())
                        .map_err(sealing)?;
                    carrier(sealed)
                } else {
                    response
                };
                Some((name, response))
            }
            None => None,
        };
        Ok(Commit {
            expected_version: commit.expected_version,
            change,
            dedupe,
            origin: commit.origin,
            audit: commit.audit,
            link: commit.link.map(|l| Box::new(self.stored_link(*l))),
        })
    }
}
