//! Writing spooled snapshots back once the store returns, one
//! conversation at a time under its turn: an outage stops the run (the
//! entries stay), a busy conversation or a record the store refuses is
//! skipped (its entry stays) and the others go on.

use std::time::Duration;

use tracing::{info, warn};

use super::Spool;
use crate::backend::audit;
use crate::backend::{Commit, CommitOutcome, Held, Origin, TurnError, Turns};
use crate::key::ConvKey;
use crate::metrics::Metrics;

impl Spool {
    /// Writes spooled snapshots back; stops at the first store outage. A
    /// conversation that is busy or whose record the store refuses is
    /// skipped (its entry stays) and the others go on.
    /// Returns how many entries were settled (written or dropped).
    pub async fn write_back<B: Turns>(&self, backend: &B, metrics: &Metrics) -> usize {
        let entries = match self.entries() {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "spool unreadable");
                return 0;
            }
        };
        let mut settled = 0;
        for (name, full, _, _) in entries {
            let Some((ns, id)) = full.split_once(':') else {
                // Not a key statehold wrote: drop it rather than retry forever.
                if let Err(e) = self.remove(&name) {
                    warn!(error = %e, "spool: cannot remove an unreadable entry");
                }
                continue;
            };
            match self
                .write_back_one(backend, &ConvKey::new(ns, id), metrics)
                .await
            {
                Ok(true) => settled += 1,
                Ok(false) => {}
                Err(()) => return settled,
            }
        }
        settled
    }

    /// One conversation's entry, under its turn. `Ok(true)`: written or
    /// dropped; `Ok(false)`: a request took it first, or the conversation
    /// is busy or its record refused (the entry stays); `Err`: the store
    /// is out (stop for now, the entry stays).
    async fn write_back_one<B: Turns>(
        &self,
        backend: &B,
        key: &ConvKey,
        metrics: &Metrics,
    ) -> Result<bool, ()> {
        let Some((held, loaded)) = turn_for(backend, key).await? else {
            return Ok(false);
        };
        // Read again under the turn: a request may have taken the entry
        // (served from it and committed it) or updated it meanwhile.
        let (base, change) = match self.pending(key) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(false),
            Err(e) => {
                warn!(error = %e, "spool unreadable");
                return Err(());
            }
        };
        // Off the spool before the commit releases the turn: a request
        // that takes the turn next must not find it again.
        if let Err(e) = self.settle(key) {
            warn!(error = %e, "spool entry could not be removed");
            return Err(());
        }
        let commit = Commit {
            // Unknown base: only if nothing is stored.
            expected_version: Some(base.unwrap_or(0)),
            change: change.clone(),
            dedupe: None,
            origin: Origin::SpoolWriteBack,
            audit: (self.audit)
                .then(|| audit::note(key, None, loaded.state.as_deref(), &change))
                .flatten(),
            link: None,
        };
        match held.finish(commit).await {
            Ok(CommitOutcome::Committed { version }) => {
                info!(key = %key.display(false), version, "spooled snapshot written back");
                self.saw(key, version);
            }
            Ok(CommitOutcome::Conflict { current }) => {
                metrics.conflict();
                warn!(key = %key.display(false), based_on = base.unwrap_or(0), current,
                    "spooled snapshot dropped: the conversation moved on during the outage");
            }
            Err(e) => {
                if let Err(e) = self.restore(key, base, &change) {
                    warn!(error = %e, "spooled snapshot lost: it could not be put back after a failed write-back");
                }
                if e.is_outage() {
                    return Err(());
                }
                warn!(key = %key.display(false), error = %e, "spooled snapshot refused by the store; it stays");
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The conversation's turn for a write-back: `None` (logged) when it is
/// busy or its record refused, `Err` when the store is out.
async fn turn_for<B: Turns>(
    backend: &B,
    key: &ConvKey,
) -> Result<Option<(B::Held, crate::backend::Loaded)>, ()> {
    match backend.begin(key, Duration::from_secs(1), None).await {
        Ok(turn) => Ok(Some(turn)),
        Err(TurnError::Store(e)) if e.is_outage() => Err(()),
        Err(e) => {
            warn!(key = %key.display(false), error = %e, "spooled snapshot not written back now: the conversation is busy or its record refused; it stays");
            Ok(None)
        }
    }
}
