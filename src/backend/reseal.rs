//! `statehold rekey` and `check-config --store`, one conversation at a
//! time: resealing a stored snapshot under the active key, and counting
//! stored snapshots by the key that sealed them.

use std::time::Duration;

use super::private::Private;
use super::{Backend, Commit, CommitOutcome, Held, StateChange, StoreError};
use crate::key::ConvKey;

/// What [`Private::reseal`] did to one conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resealed {
    /// Sealed again under the active key.
    Resealed,
    /// Already under the active key, empty, expired, or written meanwhile.
    Unchanged,
    /// Sealed under a key no longer configured (or damaged): left as is.
    Undecryptable,
}

impl<B: Backend> Private<B> {
    /// A snapshot stored under `from` (sealed or plaintext), sealed again
    /// for `to` under the active key; `None` when it cannot be opened.
    pub(super) fn resealed(
        &self,
        value: bytes::Bytes,
        from: &ConvKey,
        to: &ConvKey,
    ) -> Result<Option<bytes::Bytes>, StoreError> {
        let Ok(plain) = self.privacy().open_state(from, value) else {
            return Ok(None);
        };
        let sealed = self.privacy().seal_state(to, plain);
        sealed.map(Some).map_err(|e| StoreError::Seal(Box::new(e)))
    }

    /// Reseals one conversation's snapshot under the active key, under its
    /// turn (`stored`: as [`super::Lifecycle::scan`] returns it). A plaintext
    /// snapshot (written before encryption) is sealed too. The write is a
    /// new version, like any other write.
    pub async fn reseal(&self, stored: &ConvKey, wait: Duration) -> Result<Resealed, StoreError> {
        let Some(active) = self.privacy().keyring().and_then(|r| r.active_id()) else {
            return Ok(Resealed::Unchanged);
        };
        let (held, loaded) = self.inner().begin(stored, wait, None).await?;
        let Some(value) = loaded.state else {
            return Ok(Resealed::Unchanged);
        };
        if crate::privacy::keyring::sealed_key_id(&value) == Some(active.as_bytes()) {
            return Ok(Resealed::Unchanged);
        }
        let Some(sealed) = self.resealed(value, stored, stored)? else {
            return Ok(Resealed::Undecryptable);
        };
        let commit = Commit::maintenance(loaded.version, StateChange::Put(sealed));
        Ok(match held.finish(commit).await? {
            CommitOutcome::Committed { .. } => Resealed::Resealed,
            CommitOutcome::Conflict { .. } => Resealed::Unchanged,
        })
    }
}

/// How many stored snapshots each key seals (`plaintext`: not sealed).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KeyCounts {
    pub scanned: u64,
    pub plaintext: u64,
    pub sealed: std::collections::BTreeMap<String, u64>,
}

impl<B: Backend> Private<B> {
    /// Counts stored snapshots by the key that sealed them (a full scan;
    /// for `check-config --store` before a key is removed).
    pub async fn count_keys(&self) -> Result<KeyCounts, StoreError> {
        let mut counts = KeyCounts::default();
        let mut cursor = None;
        loop {
            let page = self.inner().scan(cursor, 500).await?;
            for stored in &page.keys {
                let Some(value) = self.inner().load(stored).await?.state else {
                    continue;
                };
                counts.scanned += 1;
                match crate::privacy::keyring::sealed_key_id(&value) {
                    Some(id) => {
                        let id = String::from_utf8_lossy(id).into_owned();
                        *counts.sealed.entry(id).or_default() += 1;
                    }
                    None => counts.plaintext += 1,
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(counts),
            }
        }
    }
}
