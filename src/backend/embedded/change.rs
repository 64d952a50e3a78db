//! What a change leaves in the embedded store besides its record: the kept
//! version (`store.history`), the audit event (`[audit]`), and their
//! removal with the record (forget, expiry).

use redb::ReadableTable;

use super::writer::{Limits, Tables};
use crate::backend::audit::AuditNote;
use crate::backend::{Commit, Version};
use crate::key::ConvKey;

impl Tables<'_, '_> {
    /// Keeps version `version` (just written) in the history and lets the
    /// one `limits.history` versions older go.
    pub(super) fn keep_version(
        &mut self,
        key: &ConvKey,
        version: u64,
        entry: &[u8],
        history: u32,
    ) -> Result<(), redb::Error> {
        self.history.insert((key.as_str(), version), entry)?;
        if let Some(old) = version.checked_sub(u64::from(history)) {
            self.history.remove((key.as_str(), old))?;
        }
        Ok(())
    }

    /// What a change to `versions.1` leaves besides the record: its kept
    /// version (`store.history`) and its audit event (`[audit]`).
    pub(super) fn note_change(
        &mut self,
        key: &ConvKey,
        commit: &Commit,
        (from, to): (u64, u64),
        state: Option<&[u8]>,
        (now, limits): (u64, &Limits),
    ) -> Result<(), redb::Error> {
        let kind = commit.kind();
        let channel = commit.link.as_ref().map(|l| l.channel());
        if limits.history > 0 && to > from {
            let entry = Version::encode(kind, now, state);
            self.keep_version(key, to, &entry, limits.history)?;
        }
        if let Some(note) = &commit.audit {
            let event = note.event(key, (kind, channel), now, (from, to));
            self.append_event(event.as_bytes(), limits.audit)?;
        }
        Ok(())
    }

    /// With `[audit]` on, an `expire` event for a record that expired at
    /// `version` (noticed by the purge or by the commit that replaces it).
    pub(super) fn note_expiry(
        &mut self,
        key: &str,
        version: u64,
        (now, limits): (u64, &Limits),
    ) -> Result<(), redb::Error> {
        if limits.audit == 0 || version == 0 {
            return Ok(());
        }
        let Some((ns, id)) = key.split_once(':') else {
            return Ok(());
        };
        let key = ConvKey::new(ns, id);
        let event = AuditNote::bare(&key).event(&key, ("expire", None), now, (version, 0));
        self.append_event(event.as_bytes(), limits.audit)
    }

    /// Appends an audit event; the one `max` events older goes.
    pub(super) fn append_event(&mut self, event: &[u8], max: u64) -> Result<(), redb::Error> {
        if max == 0 {
            return Ok(());
        }
        let next = match self.audit.last()? {
            Some((seq, _)) => seq.value() + 1,
            None => 1,
        };
        self.audit.insert(next, event)?;
        if let Some(old) = next.checked_sub(max) {
            self.audit.remove(old)?;
        }
        Ok(())
    }

    /// Removes a record, version, expiry entry and history included.
    pub(super) fn forget(&mut self, key: &str, expiry: (u64, &str)) -> Result<(), redb::Error> {
        self.expiry.remove(expiry)?;
        self.snapshots.remove(key)?;
        self.drop_history(key)?;
        self.drop_links(key)
    }

    /// Removes a conversation's whole history (its record went).
    pub(super) fn drop_history(&mut self, key: &str) -> Result<(), redb::Error> {
        let versions: Vec<u64> = self
            .history
            .range((key, 0u64)..=(key, u64::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for v in versions {
            self.history.remove((key, v))?;
        }
        Ok(())
    }
}
