//! `audit.log`: each audited change is also written to the log, target
//! `statehold::audit`, once its commit landed. A decorator of its own
//! around the store, under the privacy wrapper ([`super::private`]): it
//! sees the commit as stored, so the line holds what the trail holds (the
//! key by its stored name, masked as in every log line; member names and
//! the request id already pseudonymized under `store.key_secret`), never a
//! value.

use std::time::Duration;

use tracing::info;

use super::{
    Adoption, Backend, Commit, CommitOutcome, Held, Loaded, StoreError, TurnError, TurnToken, Turns,
};
use crate::key::ConvKey;

/// A backend whose audited commits are mirrored to the log when `on`.
pub struct AuditLog<B> {
    inner: B,
    on: bool,
}

impl<B> AuditLog<B> {
    pub fn new(inner: B, on: bool) -> AuditLog<B> {
        AuditLog { inner, on }
    }

    /// The store underneath.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

pub struct AuditLogHeld<H> {
    inner: H,
    on: bool,
}

impl<B: Backend> Turns for AuditLog<B> {
    type Held = AuditLogHeld<B::Held>;

    async fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(Self::Held, Loaded), TurnError> {
        let (inner, loaded) = self.inner.begin(key, wait, dedupe_id).await?;
        Ok((AuditLogHeld { inner, on: self.on }, loaded))
    }

    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<Self::Held>, StoreError> {
        let on = self.on;
        let adoption = self.inner.adopt(token).await?;
        Ok(adoption.map(|inner| AuditLogHeld { inner, on }))
    }

    fn stored_name(&self, key: &ConvKey) -> ConvKey {
        self.inner.stored_name(key)
    }
}

impl<H: Held> Held for AuditLogHeld<H> {
    crate::delegate_held_but_finish!();

    async fn finish(self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let mirror = match (&commit.audit, self.on) {
            (Some(note), true) => Some((note.clone(), commit.kind())),
            _ => None,
        };
        let key = self.inner.stored_key().clone();
        let outcome = self.inner.finish(commit).await?;
        if let (Some((note, kind)), CommitOutcome::Committed { version }) = (mirror, outcome) {
            info!(target: "statehold::audit", key = %key.display(false), kind, to_version = version,
                route = %note.route, request_id = ?note.request_id, bytes = note.bytes,
                changed = ?note.changed, "state changed");
        }
        Ok(outcome)
    }
}

crate::delegate_inspect!(AuditLog);
crate::delegate_lifecycle!(AuditLog);
