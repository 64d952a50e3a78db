//! `store.plaintext_fallback`, a decorator over the privacy wrapper: while
//! `statehold migrate` moves older conversations onto hashed keys
//! ([`super::migrate`]), a conversation with no record under its hashed
//! key is looked up under its plaintext key as well, under that key's turn
//! too; its next write lands on the hashed key and removes the plaintext
//! record. Redeliveries of updates recorded before the switch are found
//! there as well. Off (the default), every call goes straight through.

use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

use super::audit::{AuditEntry, AuditNote, AuditQuery};
use super::private::{Private, PrivateHeld};
use super::{
    Adoption, Backend, Commit, CommitOutcome, Dumped, Held, Inspect, Links, Loaded, StateChange,
    StoreError, TurnError, TurnToken, Turns, Version,
};
use crate::key::ConvKey;
use crate::privacy::Privacy;

/// Every backend as statehold serves it: private at rest, with the
/// plaintext fallback when configured.
pub struct PlaintextFallback<B> {
    inner: Private<B>,
    /// `store.plaintext_fallback`.
    on: bool,
}

impl<B> PlaintextFallback<B> {
    pub fn new(inner: Private<B>) -> PlaintextFallback<B> {
        let on = inner.privacy().plaintext_fallback();
        PlaintextFallback { inner, on }
    }

    /// The privacy wrapper underneath (maintenance jobs, export, import).
    pub fn private(&self) -> &Private<B> {
        &self.inner
    }

    pub fn privacy(&self) -> &std::sync::Arc<Privacy> {
        self.inner.privacy()
    }
}

pub struct FallbackHeld<H> {
    inner: PrivateHeld<H>,
    /// Served from the plaintext key.
    plain: Option<Plain<H>>,
}

/// A plaintext record served in place of a missing hashed one: its turn
/// (the hashed key's is held too), its version and opened snapshot.
struct Plain<H> {
    turn: PrivateHeld<H>,
    version: u64,
    state: Option<Bytes>,
}

impl<B: Backend> Turns for PlaintextFallback<B> {
    type Held = FallbackHeld<B::Held>;

    async fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(Self::Held, Loaded), TurnError> {
        let (inner, mut loaded) = self.inner.begin(key, wait, dedupe_id).await?;
        let mut plain = None;
        if self.on && loaded.version == 0 && loaded.member.is_none() {
            let (turn, old) = self.inner.begin_plain(key, wait, dedupe_id).await?;
            loaded.duplicate = loaded.duplicate.or(old.duplicate);
            if old.undecryptable.is_some() {
                // Shown as such (log, metric, a new conversation); never
                // removed by a write that could not read it.
                loaded.undecryptable = old.undecryptable;
            } else if old.version > 0 {
                loaded.version = old.version;
                loaded.state = old.state.clone();
                plain = Some(Plain {
                    turn,
                    version: old.version,
                    state: old.state,
                });
            }
        }
        Ok((FallbackHeld { inner, plain }, loaded))
    }

    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<Self::Held>, StoreError> {
        let adoption = self.inner.adopt(token).await?;
        Ok(adoption.map(|inner| FallbackHeld { inner, plain: None }))
    }

    fn stored_name(&self, key: &ConvKey) -> ConvKey {
        self.inner.stored_name(key)
    }
}

impl<H: Held> Held for FallbackHeld<H> {
    crate::delegate_held_but_finish!();

    async fn finish(self, mut commit: Commit) -> Result<CommitOutcome, StoreError> {
        let Some(plain) = self.plain else {
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

impl<B: Backend> Inspect for PlaintextFallback<B> {
    async fn load(&self, key: &ConvKey) -> Result<Loaded, StoreError> {
        let loaded = self.inner.load(key).await?;
        if self.on && loaded.version == 0 {
            let old = self.inner.load_plain(key).await?;
            if old.version > 0 {
                return Ok(old);
            }
        }
        Ok(loaded)
    }

    async fn history(&self, key: &ConvKey) -> Result<Vec<Version>, StoreError> {
        self.inner.history(key).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(query).await
    }

    async fn dump(&self, stored: &ConvKey) -> Result<Option<Dumped>, StoreError> {
        self.inner.dump(stored).await
    }

    async fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        self.inner.links(key).await
    }

    async fn note_view(
        &self,
        key: &ConvKey,
        note: &AuditNote,
        version: u64,
    ) -> Result<(), StoreError> {
        self.inner.note_view(key, note, version).await
    }
}

crate::delegate_lifecycle!(PlaintextFallback);
