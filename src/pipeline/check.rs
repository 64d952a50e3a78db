//! The check stage, between capture and save: a reported snapshot that
//! breaks its route's rules (`route.schema`, `[route.transitions]`) is not
//! stored, the old one stays, and the refusal is counted
//! (`statehold_state_saves_total{result="invalid"}`) and logged by JSON
//! pointer, never by value; a clear keeps `route.keep_on_clear` ([`crate::rules`]).

use tracing::warn;

use super::route::Route;
use super::Pipeline;
use crate::backend::{Backend, Loaded};
use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::metrics::SaveResult;

impl<B: Backend> Pipeline<B> {
    /// `loaded`: the record this turn read (`None` while the store is out:
    /// the first state is then free, as for a new conversation).
    pub(super) fn check(
        &self,
        route: &Route,
        conv: &ConvKey,
        loaded: Option<&Loaded>,
        change: StateChange,
    ) -> StateChange {
        let old = loaded.and_then(|l| l.state.as_deref());
        match change {
            StateChange::Put(json) => match route.rules.check(old, &json) {
                Ok(()) => StateChange::Put(json),
                Err(refusal) => {
                    self.metrics.save(SaveResult::Invalid);
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
}
