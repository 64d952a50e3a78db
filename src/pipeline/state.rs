//! The store stages of the request path: load (with the dedupe lookup),
//! the end-of-turn commit, and the degraded-mode spool.

use std::time::Instant;

use http::StatusCode;
use tracing::{info, warn};

use super::reject::{Outcome, Reject};
use super::{Pipeline, Saved, Trace};
use crate::config::OnUnavailable;
use crate::contract::StateChange;
use crate::coord::{commit_and_release, Turns};
use crate::key::ConvKey;
use crate::metrics::{LoadResult, SaveResult, StoreOp};
use crate::store::{CommitOutcome, Loaded, RecordedResponse, Store};

impl<S: Store, T: Turns> Pipeline<S, T> {
    /// Reads the snapshot and dedupe record. `Ok(None)` means degraded.
    pub(super) async fn load(
        &self,
        conv: &ConvKey,
        dedupe_id: Option<&str>,
        trace: &mut Trace,
    ) -> Result<Option<Loaded>, Reject> {
        let started = Instant::now();
        let result = self.store.load(conv, dedupe_id).await;
        let took = started.elapsed();
        trace.store_time += took;
        self.metrics.store(StoreOp::Load, took);
        match result {
            Ok(loaded) => Ok(Some(self.loaded(conv, loaded, trace))),
            Err(e) => {
                self.metrics.set_store_up(false);
                self.metrics.load(LoadResult::Error);
                self.store_unavailable(conv, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Accounts for a record read (by `load` or along with the turn).
    pub(super) fn loaded(&self, conv: &ConvKey, loaded: Loaded, trace: &mut Trace) -> Loaded {
        self.metrics.set_store_up(true);
        self.metrics.load(if loaded.state.is_some() {
            LoadResult::Hit
        } else {
            LoadResult::Miss
        });
        trace.version = Some(loaded.version);
        if let Some(spool) = &self.spool {
            spool.saw(conv, loaded.version);
        }
        loaded
    }

    /// Applies `store.on_unavailable`: `Err` rejects, `Ok` degrades.
    pub(super) fn store_unavailable(&self, conv: &ConvKey, reason: &str) -> Result<(), Reject> {
        warn!(key = %conv.display(self.settings.reveal_ids), %reason, "store unavailable");
        match self.settings.on_unavailable {
            OnUnavailable::Reject => Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                "state store unavailable",
            )),
            OnUnavailable::Passthrough => Ok(()),
        }
    }

    /// The atomic end-of-turn write (version and fence check, snapshot,
    /// TTL, dedupe record), which also ends the turn.
    pub(super) async fn save(
        &self,
        conv: &ConvKey,
        turn: T::Turn,
        based_on: u64,
        change: StateChange,
        dedupe: Option<(String, RecordedResponse)>,
        trace: &mut Trace,
    ) -> Saved {
        let stores_snapshot = change != StateChange::Keep;
        let started = Instant::now();
        let result = commit_and_release(
            &self.store,
            conv,
            turn,
            Some(based_on),
            change.clone(),
            dedupe,
        )
        .await;
        let took = started.elapsed();
        trace.store_time += took;
        self.metrics.store(StoreOp::Commit, took);
        let shown = conv.display(self.settings.reveal_ids);
        match result {
            Ok(CommitOutcome::Committed { version }) => {
                self.metrics.set_store_up(true);
                if stores_snapshot {
                    self.metrics.save(SaveResult::Ok);
                }
                if let Some(spool) = &self.spool {
                    spool.saw(conv, version);
                }
                trace.version = Some(version);
                Saved::Committed
            }
            Ok(CommitOutcome::Conflict { current }) => {
                self.metrics.conflict();
                warn!(key = %shown, based_on, current, "commit refused: the conversation moved on; the newer snapshot stays");
                Saved::Stale
            }
            Err(e) => {
                self.metrics.set_store_up(false);
                self.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "commit failed");
                Saved::Failed(change)
            }
        }
    }

    /// Keeps what the bot reported while the store was out, for write-back.
    /// True when nothing needs keeping or it is safely in the spool.
    pub(super) async fn spool_degraded(&self, conv: &ConvKey, change: StateChange) -> bool {
        if change == StateChange::Keep {
            return true;
        }
        let Some(spool) = self.spool.clone() else {
            return false;
        };
        let key = conv.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let r = spool.push(&key, &change);
            (r, spool.depth())
        })
        .await;
        let shown = conv.display(self.settings.reveal_ids);
        match pushed {
            Ok((Ok(true), depth)) => {
                self.metrics.set_spool_depth(depth);
                info!(key = %shown, depth, "snapshot spooled until the store returns");
                true
            }
            Ok((Ok(false), depth)) => {
                self.metrics.save(SaveResult::Error);
                warn!(key = %shown, depth, "spool full (store.spool_max): snapshot dropped");
                false
            }
            Ok((Err(e), _)) => {
                self.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "spool write failed: snapshot dropped");
                false
            }
            Err(e) => {
                warn!(key = %shown, error = %e, "spool task failed");
                false
            }
        }
    }
}
