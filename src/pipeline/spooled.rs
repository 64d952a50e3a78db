//! The degraded-mode spool on the request path: a conversation this
//! replica spooled during an outage is served from the spool, what the bot
//! reports while the store is out is kept there, and an entry goes once
//! written (or dropped as a conflict).

use tracing::{info, warn};

use super::PathStore;
use super::Pipeline;
use crate::backend::Loaded;
use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::metrics::SaveResult;

impl<B: PathStore> Pipeline<B> {
    /// A conversation this replica spooled during an outage is served from
    /// the spool, not from the older record: with the turn held, a spooled
    /// change based on the record's version replaces what the record shows;
    /// one based on an older version lost the race to another replica and
    /// is dropped (a conflict, as in the write-back).
    pub(super) async fn spooled_first(
        &self,
        conv: &ConvKey,
        mut loaded: Loaded,
    ) -> (Loaded, Option<StateChange>) {
        let Some(spool) = &self.svc.spool else {
            return (loaded, None);
        };
        let shown = conv.display(self.settings.reveal_ids);
        let (base, change) = match spool.pending(conv) {
            Ok(Some(entry)) => entry,
            Ok(None) => return (loaded, None),
            Err(e) => {
                warn!(key = %shown, error = %e, "spool unreadable: serving the stored record");
                return (loaded, None);
            }
        };
        if base.unwrap_or(0) != loaded.version {
            self.svc.metrics.conflict();
            warn!(key = %shown, based_on = base.unwrap_or(0), current = loaded.version,
                "spooled snapshot dropped: the conversation moved on during the outage");
            self.settle_spooled(conv).await;
            return (loaded, None);
        }
        match &change {
            StateChange::Put(json) => loaded.state = Some(json.clone()),
            StateChange::Clear | StateChange::Forget => loaded.state = None,
            StateChange::Keep => {}
        }
        info!(key = %shown, "served from the spool: the store's record predates the outage");
        (loaded, Some(change))
    }

    /// Removes a conversation's spool entry (written, or dropped).
    pub(super) async fn settle_spooled(&self, conv: &ConvKey) {
        let Some(spool) = self.svc.spool.clone() else {
            return;
        };
        let key = conv.clone();
        let settled = tokio::task::spawn_blocking(move || {
            let r = spool.settle(&key);
            (r, spool.depth())
        })
        .await;
        match settled {
            Ok((Ok(()), depth)) => self.svc.metrics.set_spool_depth(depth),
            // The entry stays; the write-back finds it under the turn later
            // and drops it as a conflict: nothing is written twice.
            Ok((Err(e), _)) => warn!(error = %e, "spool entry could not be removed"),
            Err(e) => warn!(error = %e, "spool task failed"),
        }
    }

    /// Keeps what the bot reported while the store was out, for write-back.
    /// True when nothing needs keeping or it is safely in the spool.
    pub(super) async fn spool_degraded(&self, conv: &ConvKey, change: StateChange) -> bool {
        if change == StateChange::Keep {
            return true;
        }
        let Some(spool) = self.svc.spool.clone() else {
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
                self.svc.metrics.set_spool_depth(depth);
                info!(key = %shown, depth, "snapshot spooled until the store returns");
                true
            }
            Ok((Ok(false), depth)) => {
                self.svc.metrics.save(SaveResult::Error);
                warn!(key = %shown, depth, "spool full (store.spool_max): snapshot dropped");
                false
            }
            Ok((Err(e), _)) => {
                self.svc.metrics.save(SaveResult::Error);
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
