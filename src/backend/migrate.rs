//! `statehold migrate`, one conversation at a time: a conversation stored
//! under its plaintext key (`ns:id`, written before `store.key_secret` was
//! turned on) moves onto its hashed key (`ns#:…`), its snapshot (re)sealed
//! for the new name, and the plaintext record is removed, version included.
//!
//! Both turns are held while it moves: the hashed key's first (the one
//! every request takes now), then the plaintext key's. A request for the
//! conversation waits for the move and then reads the moved snapshot;
//! one that came first and wrote under the hashed key wins (its snapshot
//! is newer), and the stale plaintext record is removed. Writing the hashed
//! key comes before removing the plaintext one, so a move cut short is
//! finished by the next run (idempotent).
//!
//! Recorded answers are not moved: their names are keyed by the raw
//! dedupe id, which the hashed layout no longer shows; they expire within
//! `store.dedupe_window` (docs/privacy.md).

use std::time::Duration;

use super::private::Private;
use super::{Backend, Commit, CommitOutcome, Held, StateChange, StoreError};
use crate::key::ConvKey;
use crate::privacy::Privacy;

/// What [`Private::migrate`] found (or, in a dry run, would do) for one
/// stored key, named as in the progress report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrated {
    /// Moved onto the hashed key (dry run: would be).
    Moved,
    /// Already a hashed key, or the plaintext record is gone (moved by a
    /// request meanwhile, under `plaintext_fallback`): nothing to do.
    Hashed,
    /// A plaintext record without a snapshot (cleared): removed (dry run:
    /// would be).
    Empty,
    /// The hashed key was written since the switch: the stale plaintext
    /// record was removed (dry run: would be).
    Superseded,
    /// The plaintext snapshot is sealed under a key no longer configured:
    /// left as it is.
    Undecryptable,
}

impl Migrated {
    pub const ALL: [Migrated; 5] = [
        Migrated::Moved,
        Migrated::Hashed,
        Migrated::Empty,
        Migrated::Superseded,
        Migrated::Undecryptable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Migrated::Moved => "moved",
            Migrated::Hashed => "hashed",
            Migrated::Empty => "empty",
            Migrated::Superseded => "superseded",
            Migrated::Undecryptable => "undecryptable",
        }
    }
}

impl<B: Backend> Private<B> {
    /// Moves one stored key (as [`super::Lifecycle::scan`] returns it) onto its
    /// hashed key; `dry_run`: only says what it would do (reads, no turn).
    pub async fn migrate(
        &self,
        stored: &ConvKey,
        wait: Duration,
        dry_run: bool,
    ) -> Result<Migrated, StoreError> {
        if Privacy::is_hashed(stored) || !self.privacy().hashes_keys() {
            return Ok(Migrated::Hashed);
        }
        let (inner, hashed) = (self.inner(), self.privacy().stored_key(stored)); // stored = raw
        if dry_run {
            let (plain, moved) = (inner.load(stored).await?, inner.load(&hashed).await?);
            return Ok(decide(&plain, moved.version > 0));
        }
        let (hashed_turn, moved) = inner.begin(&hashed, wait, None).await?;
        let (plain_turn, plain) = inner.begin(stored, wait, None).await?;
        let verdict = decide(&plain, moved.version > 0);
        if verdict == Migrated::Hashed {
            return Ok(verdict);
        }
        if verdict == Migrated::Moved {
            let Some(value) = plain.state else {
                return Ok(Migrated::Empty); // unreachable: decide saw a snapshot
            };
            let Some(sealed) = self.resealed(value, stored, &hashed)? else {
                return Ok(Migrated::Undecryptable);
            };
            let write = Commit::maintenance(moved.version, StateChange::Put(sealed));
            if let CommitOutcome::Conflict { .. } = hashed_turn.finish(write).await? {
                // Written meanwhile (a fenced-off turn): the next run decides.
                return Ok(Migrated::Superseded);
            }
        } else {
            drop(hashed_turn);
        }
        plain_turn
            .finish(Commit::maintenance(plain.version, StateChange::Forget))
            .await?;
        Ok(verdict)
    }
}

/// What to do with a plaintext record, given whether the hashed key
/// already has a record.
fn decide(plain: &super::Loaded, hashed_exists: bool) -> Migrated {
    match (plain.version > 0, plain.state.is_some(), hashed_exists) {
        (false, _, _) => Migrated::Hashed,
        (true, _, true) => Migrated::Superseded,
        (true, true, false) => Migrated::Moved,
        (true, false, false) => Migrated::Empty,
    }
}
