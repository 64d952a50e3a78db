//! The check stage, between capture and save: a reported snapshot that
//! breaks its route's rules (`route.schema`, `[route.transitions]`) is not
//! stored, the old one stays, and the refusal is counted
//! (`statehold_state_saves_total{result="invalid"}`) and logged by JSON
//! pointer, never by value; a clear keeps `route.keep_on_clear`
//! ([`crate::rules`]). A rollback the bot asked for (`X-Statehold-Rollback`)
//! becomes the kept version's snapshot, read from the history under the
//! turn (one more round trip, for such answers only); through a linked
//! channel, its member's.

use tracing::warn;

/// The longest a report's rules check may take (off the async workers):
/// past it the snapshot is refused like an invalid one.
const RULES_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

use super::PathStore;
use super::{Ctx, Pipeline};
use crate::backend::Loaded;
use crate::contract::{self, RollbackTo, StateChange};
use crate::key::ConvKey;
use crate::metrics::SaveResult;

/// The bot's `X-Statehold-Rollback`, read before capture strips it.
use contract::RollbackAsked as Asked;

impl<B: PathStore> Pipeline<B> {
    /// `loaded`: the record this turn read (`None` while the store is out:
    /// the first state is then free, as for a new conversation).
    pub(super) async fn check(
        &self,
        conv: &ConvKey,
        loaded: Option<&Loaded>,
        change: StateChange,
        rollback: Option<Asked>,
        cx: &mut Ctx<'_>,
    ) -> StateChange {
        let route = cx.route;
        let stored = loaded.and_then(|l| l.state.as_ref());
        let old = stored.map(|s| &s[..]);
        if let Some(asked) = rollback {
            return self.rollback(conv, loaded, change, asked, cx).await;
        }
        match change {
            StateChange::Put(json) => match route
                .rules
                .check_bounded(stored, &json, RULES_TIME_LIMIT)
                .await
            {
                Ok(()) => StateChange::Put(json),
                Err(refusal) => {
                    self.svc.metrics.save(SaveResult::Invalid);
                    warn!(key = %conv.display(self.settings.reveal_ids), route = %route.path,
                        reason = %refusal, "snapshot not stored: it breaks the route's rules; the previous one stays");
                    StateChange::Keep
                }
            },
            StateChange::Clear => match route.rules.kept_on_clear(old) {
                Some(kept) => StateChange::Put(kept),
                None => StateChange::Clear,
            },
            other => other,
        }
    }

    /// The kept version's snapshot as the change to save (a restored
    /// version was valid when written: the route's rules are not applied
    /// again). Refused, the snapshot stays: a rollback with a report too
    /// (ambiguous), a bad header, a version not kept, nothing stored now.
    async fn rollback(
        &self,
        conv: &ConvKey,
        loaded: Option<&Loaded>,
        change: StateChange,
        asked: Asked,
        cx: &mut Ctx<'_>,
    ) -> StateChange {
        let refuse = |why: &str| {
            self.svc.metrics.save(SaveResult::Rejected);
            warn!(key = %conv.display(self.settings.reveal_ids), reason = why,
                "rollback refused: the snapshot stays");
            StateChange::Keep
        };
        let (Ok(asked), StateChange::Keep) = (asked, &change) else {
            return refuse("a bad X-Statehold-Rollback, or a rollback with a state report");
        };
        let Some(current) = loaded.filter(|l| l.state.is_some()) else {
            return refuse("no snapshot is stored now (cleared, or the store is out)");
        };
        // Through a linked channel, the member is what rolls back: its turn
        // is the one held (issue 20, item 10).
        let owner = current.member.as_ref().unwrap_or(conv);
        let versions = match self.svc.backend.history(owner).await {
            Ok(v) => v,
            Err(_) => return refuse("the history cannot be read"),
        };
        let target = versions.into_iter().find(|v| {
            v.state.is_some()
                && match asked {
                    RollbackTo::Version(n) => v.version == n,
                    RollbackTo::Previous => v.version < current.version,
                }
        });
        match target.and_then(|v| Some((v.version, v.state?))) {
            Some((version, state)) => {
                cx.rolled_back = Some(version);
                StateChange::Put(state)
            }
            None => refuse("the version is not kept (store.history)"),
        }
    }
}
