//! Any backend, private at rest: keys are hashed and values sealed
//! ([`crate::privacy`]) on the way in, opened on the way out. Callers (the
//! pipeline, the spool's write-back, the admin API) keep using raw keys;
//! the backend underneath only ever sees stored keys and sealed values.
//! With privacy off it passes everything through unchanged.
//!
//! `store.plaintext_fallback` (older conversations still under plaintext
//! keys) is a decorator over this one: `fallback.rs`.
//!
//! A recorded answer is sealed whole (status, headers, body, request
//! digest) inside a carrier record: status 200, one header
//! [`SEALED_HEADER`], the sealed encoding as its body.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::audit::{AuditEntry, AuditNote, AuditQuery};
use super::sealed::{carrier, open};
use super::{
    Adoption, Backend, Commit, CommitOutcome, Dumped, Held, Inspect, LinkChange, Links, Loaded,
    RecordedResponse, StoreError, TurnError, TurnToken, Turns, Version,
};
use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::privacy::Privacy;

pub use super::sealed::SEALED_HEADER;

pub struct Private<B> {
    inner: B,
    privacy: Arc<Privacy>,
}

impl<B> Private<B> {
    pub fn new(inner: B, privacy: Arc<Privacy>) -> Private<B> {
        Private { inner, privacy }
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
}

impl<B: Backend> Private<B> {
    /// The turn `inner` as callers see it: named `raw`, stored as `stored`.
    fn held(&self, inner: B::Held, raw: &ConvKey, stored: ConvKey) -> PrivateHeld<B::Held> {
        PrivateHeld {
            inner,
            raw: raw.clone(),
            stored,
            privacy: Arc::clone(&self.privacy),
        }
    }

    /// The plaintext layout of `key` (its raw name and raw dedupe id),
    /// opened: the turn and record `fallback.rs` falls back on.
    pub(super) async fn begin_plain(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(PrivateHeld<B::Held>, Loaded), TurnError> {
        let (inner, loaded) = self.inner.begin(key, wait, dedupe_id).await?;
        let loaded = open(&self.privacy, key, dedupe_id, loaded);
        Ok((self.held(inner, key, key.clone()), loaded))
    }

    /// The record under `key`'s plaintext name, opened, outside any turn.
    pub(super) async fn load_plain(&self, key: &ConvKey) -> Result<Loaded, StoreError> {
        Ok(open(&self.privacy, key, None, self.inner.load(key).await?))
    }
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
        let loaded = open(&self.privacy, &stored, dedupe.as_deref(), loaded);
        Ok((self.held(inner, key, stored), loaded))
    }

    /// A turn adopted by its token knows only its stored key: its raw
    /// key stands in as the stored one (the same with hashing off).
    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<Self::Held>, StoreError> {
        let stored = token.key();
        let adopted =
            (self.inner.adopt(token).await?).map(|inner| self.held(inner, stored, stored.clone()));
        Ok(match adopted {
            Adoption::Adopted(held, loaded) => {
                Adoption::Adopted(held, open(&self.privacy, stored, None, loaded))
            }
            other => other,
        })
    }

    fn stored_name(&self, key: &ConvKey) -> ConvKey {
        self.privacy.stored_key(key)
    }
}

impl<B: Backend> Inspect for Private<B> {
    async fn load(&self, key: &ConvKey) -> Result<Loaded, StoreError> {
        let stored = self.privacy.stored_key(key);
        let loaded = self.inner.load(&stored).await?;
        Ok(open(&self.privacy, &stored, None, loaded))
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

    /// By the stored name, as every event of the trail.
    async fn note_view(
        &self,
        key: &ConvKey,
        note: &AuditNote,
        version: u64,
    ) -> Result<(), StoreError> {
        let stored = self.privacy.stored_key(key);
        self.inner.note_view(&stored, note, version).await
    }
}

// Stored keys (hashed with `store.key_secret`) in scans: for maintenance.
crate::delegate_lifecycle!(Private);

impl<H: Held> Held for PrivateHeld<H> {
    fn waited(&self) -> Duration {
        self.inner.waited()
    }

    async fn finish(self, mut commit: Commit) -> Result<CommitOutcome, StoreError> {
        // An audit event never names a user: with hashed keys, what could
        // (member names, the request id) is kept as a keyed hash, in the
        // store and in the mirrored log line alike (`audit_log.rs`).
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
        let commit = self.seal(commit)?;
        self.inner.finish(commit).await
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
