//! The late report of a deferred turn (`POST /v1/turns/<token>`,
//! [`super::deferred`]): the turn is claimed from this process's parking
//! table or adopted from the store, and the report runs the check and
//! save stages an answer's report runs.

use http::StatusCode;
use serde_json::{json, Value};
use tracing::warn;

use super::deferred::Parked;
use super::request::{Answer, Conversation, Ctx, Keyed, Turn};
use super::route::Route;
use super::PathStore;
use super::Pipeline;
use crate::backend::{Adoption, TurnToken};
use crate::contract::{self, LinkAsk, RollbackTo, StateChange};
use crate::metrics::DeferredResult;
use crate::outcome::Outcome;

/// How often a report that overtook its deferral looks again.
const EARLY_REPORT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A late report's body: exactly one of `{"state": …}`, `{"clear": true}`,
/// `{"unchanged": true}`, optionally with `"link"`, `"unlink": true` or
/// `"rollback"`, under the answer headers' rules.
#[derive(Debug, PartialEq)]
pub struct LateReport {
    pub change: StateChange,
    pub link: Option<LinkAsk>,
    pub rollback: Option<RollbackTo>,
}

impl LateReport {
    /// Parses a report body; `Err` says what is wrong (never echoing it).
    pub fn parse(body: &[u8], max_state_bytes: usize) -> Result<LateReport, &'static str> {
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
            return Err("the body must be a JSON object");
        };
        let link = match contract::link::take_link(&mut obj) {
            None => None,
            Some(Ok(ask)) => Some(ask),
            Some(Err(_)) => return Err("\"link\" must name a <namespace>:<id> key"),
        };
        let rollback = match obj.remove("rollback") {
            None => None,
            Some(Value::String(s)) if s == "previous" => Some(RollbackTo::Previous),
            Some(v) => match v.as_u64() {
                Some(n) => Some(RollbackTo::Version(n)),
                None => return Err("\"rollback\" must be \"previous\" or a version"),
            },
        };
        let state = obj.remove("state");
        let clear = obj.remove("clear");
        let unchanged = obj.remove("unchanged");
        if !obj.is_empty() {
            return Err("unknown member: only state, clear, unchanged, link, unlink, rollback");
        }
        let change = match (state, clear, unchanged) {
            (Some(state), None, None) => {
                let text = serde_json::to_vec(&state).map_err(|_| "state is not JSON")?;
                if text.len() > max_state_bytes {
                    return Err("state over store.max_state_bytes");
                }
                StateChange::Put(text.into())
            }
            (None, Some(Value::Bool(true)), None) => StateChange::Clear,
            (None, None, Some(Value::Bool(true))) => StateChange::Keep,
            _ => {
                return Err(
                    "exactly one of {\"state\": …}, {\"clear\": true}, {\"unchanged\": true}",
                )
            }
        };
        Ok(LateReport {
            change,
            link,
            rollback,
        })
    }
}

/// The late report's answer: a status and a JSON body.
pub struct ReportAnswer {
    pub status: StatusCode,
    pub body: Value,
}

impl ReportAnswer {
    fn unknown() -> ReportAnswer {
        ReportAnswer {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "no deferred turn for this token: unknown, already reported, or past its timeout"}),
        }
    }
}

impl<B: PathStore> Pipeline<B> {
    /// `POST /v1/turns/<token>`: the late report of a deferred turn.
    pub async fn late_report(&self, token: &str, report: LateReport) -> ReportAnswer {
        let deferred = self.svc.metrics.deferred();
        let unmatched = self.svc.metrics.unmatched();
        let Some(token) = TurnToken::parse(token) else {
            deferred.report(unmatched, DeferredResult::Unknown);
            return ReportAnswer::unknown();
        };
        let Some(route) = self.routes.by_index(token.route()) else {
            deferred.report(unmatched, DeferredResult::Unknown);
            return ReportAnswer::unknown();
        };
        let parked = match self.claim_or_adopt(&token).await {
            Ok(Some(parked)) => parked,
            Ok(None) => {
                deferred.report(route.index, DeferredResult::Unknown);
                return ReportAnswer::unknown();
            }
            Err(answer) => return answer,
        };
        self.settle(route, parked, report).await
    }

    /// At shutdown, after the webhook listener drained: waits (at most
    /// `within`) for the late reports of the turns parked here, which the
    /// admin listener still takes; `false` when some were still awaited
    /// (they are released with the process, and their reports get 404).
    pub async fn settle_deferred(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let waiting = self.deferrals.len();
        if waiting > 0 {
            tracing::info!(
                waiting,
                "shutdown: waiting for deferred turns' late reports"
            );
        }
        loop {
            let left = self.deferrals.len();
            if left == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    left,
                    ?within,
                    "shutdown: deferred turns still awaiting their late reports are released"
                );
                return false;
            }
            tokio::time::sleep(EARLY_REPORT_POLL).await;
        }
    }

    /// The turn parked here, or one deferred elsewhere (another replica,
    /// or this process before a restart) taken over from the store. A
    /// report that overtook the answer deferring its turn (the turn is
    /// held, not deferred yet) waits for the deferral, at most as long as
    /// a request may stay with the bot (`upstream.timeout`).
    async fn claim_or_adopt(
        &self,
        token: &TurnToken,
    ) -> Result<Option<Parked<B::Held>>, ReportAnswer> {
        let now = tokio::time::Instant::now();
        let deadline = now + self.settings.report_grace;
        // A turn held here is handed over in process: the store is asked
        // only when no parking came for a while (this process restarted
        // since, or the request ended without deferring).
        let mut ask_store_at = if token.holder() == self.deferrals.holder() {
            now + EARLY_REPORT_POLL
        } else {
            now
        };
        loop {
            // Listening before looking: a parking in between is not missed.
            let parked_here = self.deferrals.parked();
            tokio::pin!(parked_here);
            parked_here.as_mut().enable();
            if let Some(parked) = self.deferrals.claim(token.secret()).await {
                return Ok(Some(parked));
            }
            let now = tokio::time::Instant::now();
            if now >= ask_store_at {
                match self.adopt(token).await? {
                    Adoption::Adopted(held, loaded) => {
                        return Ok(Some(Parked {
                            held,
                            loaded,
                            conv: token.key().clone(),
                            route: token.route(),
                            request_id: None,
                        }))
                    }
                    Adoption::Unknown => return Ok(None),
                    Adoption::Pending if now >= deadline => return Ok(None),
                    Adoption::Pending => ask_store_at = now + EARLY_REPORT_POLL,
                }
            }
            // A deferral parked here wakes us at once; one on another
            // replica is looked for again after the poll interval.
            tokio::select! {
                _ = parked_here => {}
                _ = tokio::time::sleep_until(ask_store_at) => {}
            }
        }
    }

    /// The store's view of a turn token ([`Turns::adopt`]).
    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<B::Held>, ReportAnswer> {
        match self.svc.backend.adopt(token).await {
            Ok(adoption) => Ok(adoption),
            Err(e) => {
                warn!(error = %e, "a late report could not reach the store");
                Err(ReportAnswer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: json!({"error": "state store unavailable; report again"}),
                })
            }
        }
    }

    /// The check and save stages on a claimed or adopted turn.
    async fn settle(
        &self,
        route: &Route,
        parked: Parked<B::Held>,
        report: LateReport,
    ) -> ReportAnswer {
        let Parked {
            held,
            loaded,
            conv,
            request_id,
            ..
        } = parked;
        let mut cx = Ctx::new(route);
        let asked = report.change.clone();
        let turn = Turn::Held {
            held,
            loaded,
            spooled: None,
        };
        let rollback = report.rollback.map(Ok);
        let rolls_back = rollback.is_some();
        let change = if self.late_report_fits(route, &conv, &report.change) {
            let loaded = turn.loaded();
            self.check(&conv, loaded, report.change, rollback, &mut cx)
                .await
        } else {
            StateChange::Keep
        };
        let refused = (rolls_back && cx.rolled_back.is_none())
            || (matches!(asked, StateChange::Put(_)) && change == StateChange::Keep);
        if refused {
            // The old snapshot stays; dropping the turn ends it.
            drop(turn);
            let deferred = self.svc.metrics.deferred();
            deferred.report(route.index, DeferredResult::Refused);
            return ReportAnswer {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({"error": "the route's rules refuse this report; the previous snapshot stays"}),
            };
        }
        let keyed = Keyed {
            conv,
            dedupe: None,
            request_id,
        };
        let held = Conversation { turn, keyed };
        self.save_report(held, change, report.link, cx).await
    }

    /// The save stage on a late report (no answer to record: its dedupe
    /// record was written when the turn was deferred).
    async fn save_report(
        &self,
        held: Conversation<B::Held>,
        change: StateChange,
        link: Option<LinkAsk>,
        mut cx: Ctx<'_>,
    ) -> ReportAnswer {
        let (route, conv) = (cx.route, held.conv().clone());
        let answer = Answer::acknowledged();
        let saving = change.clone();
        let result = match link {
            None => self.finish_turn(held, saving, &answer, None, &mut cx).await,
            Some(ask) => {
                self.link_and_save(held, saving, &answer, ask, &mut cx)
                    .await
            }
        };
        let deferred = self.svc.metrics.deferred();
        match result {
            Ok(()) => {
                let result = match change {
                    StateChange::Keep => DeferredResult::Unchanged,
                    StateChange::Clear | StateChange::Forget => DeferredResult::Cleared,
                    StateChange::Put(_) => DeferredResult::Saved,
                };
                deferred.report(route.index, result);
                ReportAnswer {
                    status: StatusCode::OK,
                    body: json!({"key": conv.as_str(), "version": cx.version.unwrap_or(0)}),
                }
            }
            // The fence refused it: the turn ended (timed out) meanwhile.
            Err(reject) if reject.outcome == Outcome::Conflict => {
                deferred.report(route.index, DeferredResult::Unknown);
                ReportAnswer::unknown()
            }
            Err(reject) => ReportAnswer {
                status: reject.status,
                body: json!({"error": reject.log_text()}),
            },
        }
    }
}
