//! The defer stage, in place of the save when the bot answered
//! `X-Statehold-Deferred: 1` ([`super::deferred`]): the turn is parked and
//! the answer leaves; the late report is `report.rs`'s.

use std::sync::Arc;

use http::StatusCode;
use tracing::warn;

use super::deferred::Parked;
use super::reject::Reject;
use super::request::{Answer, Conversation, Ctx, Turn};
use super::route::Route;
use super::wire::Reported;
use super::PathStore;
use super::Pipeline;
use crate::backend::{Held, StoreError, TurnToken};
use crate::contract::StateChange;
use crate::metrics::{DeferredResult, SaveResult};
use crate::outcome::Outcome;

impl<B: PathStore> Pipeline<B> {
    /// The defer stage, for an answer that deferred its report: the turn
    /// is parked and the answer leaves, or (the deferral refused, or no
    /// turn to hold) the answer is saved as usual.
    pub(super) async fn defer(
        &self,
        conv: Conversation<B::Held>,
        answer: &Answer,
        reported: Reported,
        cx: &mut Ctx<'_>,
    ) -> Result<Deferral<B::Held>, Reject> {
        let route = cx.route;
        let shown = conv.conv().display(self.settings.reveal_ids).to_string();
        let reports = reported.change != StateChange::Keep
            || reported.link.is_some()
            || reported.rollback.is_some();
        if reports {
            return Ok(Deferral::Save(conv, self.ambiguous(route, &shown)));
        }
        let Conversation { turn, keyed } = conv;
        let token = cx.turn.take();
        let (mut held, loaded, token) = match (turn, token) {
            (
                Turn::Held {
                    held,
                    loaded,
                    spooled: None,
                },
                Some(token),
            ) if !answer.parts.status.is_server_error() => (held, loaded, token),
            (turn, token) => {
                cx.turn = token;
                warn!(key = %shown, status = answer.parts.status.as_u16(),
                    "a deferred answer with no turn to hold (the store is out, a spooled change, or a bot error): its late report will find none");
                return Ok(Deferral::Save(Conversation { turn, keyed }, reported));
            }
        };
        let dedupe = answer.dedupe_record(keyed.dedupe);
        if let Err(e) = held.defer(&token, dedupe, route.report_timeout).await {
            return Err(self.not_deferred(&shown, &e));
        }
        let parked = Parked {
            held,
            loaded,
            conv: keyed.conv,
            route: route.index,
            request_id: keyed.request_id,
        };
        let secret = token.secret().to_string();
        let metrics = Arc::clone(&self.svc.metrics);
        let reveal_ids = self.settings.reveal_ids;
        self.deferrals
            .park(secret, parked, route.report_timeout, metrics, reveal_ids);
        cx.outcome = Outcome::Deferred;
        Ok(Deferral::Parked)
    }

    /// A deferred answer that also reports: refused (the snapshot stays,
    /// the turn ends with the answer's dedupe record).
    fn ambiguous(&self, route: &Route, shown: &str) -> Reported {
        self.svc.metrics.save(SaveResult::Rejected);
        self.svc
            .metrics
            .deferred()
            .report(route.index, DeferredResult::Refused);
        warn!(key = %shown, "a deferred answer that also reports is ambiguous: refused, the snapshot stays and the turn ends");
        Reported {
            change: StateChange::Keep,
            link: None,
            rollback: None,
            deferred: false,
        }
    }

    /// The turn could not be kept for its report: the answer is not
    /// acknowledged, so the platform redelivers.
    fn not_deferred(&self, shown: &str, e: &StoreError) -> Reject {
        self.svc.health.seen(!e.is_outage());
        warn!(key = %shown, error = %e,
            "the turn could not be kept for a late report; the update is redelivered");
        Reject::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Unavailable,
            "the turn could not be kept for the late report; redeliver",
        )
        .after_bot()
    }
}

/// What the defer stage decided.
// One per deferred answer, moved straight into the save: boxing the turn
// would cost an allocation for nothing (as `Turn` itself).
#[allow(clippy::large_enum_variant)]
pub(super) enum Deferral<H> {
    /// The turn waits for its late report; the answer leaves.
    Parked,
    /// Saved as an answer's report: the conversation (its turn
    /// `Degraded` when there is none to hold) and what the answer reported.
    Save(Conversation<H>, Reported),
}

/// A fresh token for the turn a request holds on `route` in process
/// `holder` (none while the store is out).
pub(super) fn minted<H: Held>(route: &Route, holder: u64, turn: &Turn<H>) -> Option<TurnToken> {
    match turn {
        Turn::Held { held, .. } => TurnToken::mint(route.index, holder, held.stored_key()),
        Turn::Degraded => None,
    }
}
