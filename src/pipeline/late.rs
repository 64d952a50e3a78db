//! The two ends of a deferred turn on the request path ([`super::deferred`]):
//! the defer stage, in place of the save when the bot answered
//! `X-Statehold-Deferred: 1`, and the late report
//! (`POST /v1/turns/<token>`), which runs the check and save stages an
//! answer's report runs, on the parked or adopted turn.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};
use tracing::warn;

use super::deferred::Parked;
use super::reject::Reject;
use super::request::{Answer, Keyed, Trace, Turn};
use super::route::Route;
use super::wire::Captured;
use super::Pipeline;
use crate::backend::{Adoption, Backend, Held, StoreError, TurnToken};

/// How often a report that overtook its deferral looks again.
const EARLY_REPORT_POLL: std::time::Duration = std::time::Duration::from_millis(20);
use crate::contract::{self, LinkAsk, RollbackTo, StateChange};
use crate::metrics::{DeferredResult, SaveResult};
use crate::outcome::Outcome;

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

    /// What only the key as the request named it can do: the store's
    /// name of a hashed key cannot be hashed again.
    fn needs_raw_key(&self) -> bool {
        self.link.is_some() || self.rollback.is_some()
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

impl<B: Backend> Pipeline<B> {
    /// The defer stage, for an answer that deferred its report: the turn
    /// is parked and the answer leaves, or (the deferral refused, or no
    /// turn to hold) the answer is saved as usual.
    pub(super) async fn defer(
        &self,
        route: &Route,
        (turn, keyed): (Turn<B::Held>, Keyed),
        (answer, captured, rollback): (&Answer, Captured, bool),
        trace: &mut Trace,
    ) -> Result<Deferral<B::Held>, Reject> {
        let shown = keyed.conv.display(self.settings.reveal_ids).to_string();
        if captured.change != StateChange::Keep || captured.link.is_some() || rollback {
            self.metrics.save(SaveResult::Rejected);
            self.metrics
                .deferred()
                .report(route.index, DeferredResult::Refused);
            warn!(key = %shown, "a deferred answer that also reports is ambiguous: refused, the snapshot stays and the turn ends");
            let keep = Captured {
                change: StateChange::Keep,
                link: None,
                deferred: false,
            };
            return Ok(Deferral::Save(turn, keyed, keep));
        }
        let parkable = matches!(&turn, Turn::Held { spooled: None, .. })
            && trace.turn.is_some()
            && !answer.parts.status.is_server_error();
        if !parkable {
            warn!(key = %shown, status = answer.parts.status.as_u16(),
                "a deferred answer with no turn to hold (the store is out, a spooled change, or a bot error): its late report will find none");
            return Ok(Deferral::Save(turn, keyed, captured));
        }
        let (
            Turn::Held {
                mut held, loaded, ..
            },
            Some(token),
        ) = (turn, trace.turn.take())
        else {
            return Err(Reject::bad_gateway("no turn to defer")); // ruled out above
        };
        let dedupe = keyed
            .dedupe
            .filter(|_| answer.parts.status.is_success())
            .map(|(id, digest)| (id, answer.recorded(digest)));
        if let Err(e) = held.defer(&token, dedupe, route.report_timeout).await {
            self.store_seen(!matches!(
                e,
                StoreError::Unavailable(_) | StoreError::Timeout
            ));
            warn!(key = %shown, error = %e,
                "the turn could not be kept for a late report; the update is redelivered");
            return Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                "the turn could not be kept for the late report; redeliver",
            ));
        }
        let parked = Parked {
            held,
            loaded,
            conv: keyed.conv,
            route: route.index,
            request_id: keyed.request_id,
        };
        let secret = token.secret().to_string();
        let metrics = (Arc::clone(&self.metrics), self.settings.reveal_ids);
        self.deferrals
            .park(secret, parked, route.report_timeout, metrics);
        trace.outcome = Outcome::Deferred;
        Ok(Deferral::Parked)
    }

    /// `POST /v1/turns/<token>`: the late report of a deferred turn.
    pub async fn late_report(&self, token: &str, report: LateReport) -> ReportAnswer {
        let deferred = self.metrics.deferred();
        let unmatched = self.metrics.unmatched();
        let Some(token) = TurnToken::parse(token) else {
            deferred.report(unmatched, DeferredResult::Unknown);
            return ReportAnswer::unknown();
        };
        let Some(route) = self.routes.by_index(token.route()) else {
            deferred.report(unmatched, DeferredResult::Unknown);
            return ReportAnswer::unknown();
        };
        let parked = match self.claim_or_adopt(&token, &report).await {
            Ok(Some(parked)) => parked,
            Ok(None) => {
                deferred.report(route.index, DeferredResult::Unknown);
                return ReportAnswer::unknown();
            }
            Err(answer) => return answer,
        };
        self.settle(route, parked, report).await
    }

    /// The turn parked here, or one deferred elsewhere (another replica,
    /// or this process before a restart) taken over from the store. A
    /// report that overtook the answer deferring its turn (the turn is
    /// held, not deferred yet) waits for the deferral, at most as long as
    /// a request may stay with the bot (`upstream.timeout`).
    async fn claim_or_adopt(
        &self,
        token: &TurnToken,
        report: &LateReport,
    ) -> Result<Option<Parked<B::Held>>, ReportAnswer> {
        let deadline = tokio::time::Instant::now() + self.settings.report_grace;
        loop {
            if let Some(parked) = self.deferrals.claim(token.secret()).await {
                return Ok(Some(parked));
            }
            match self.adopt(token, report).await? {
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
                Adoption::Pending if tokio::time::Instant::now() >= deadline => return Ok(None),
                Adoption::Pending => tokio::time::sleep(EARLY_REPORT_POLL).await,
            }
        }
    }

    /// The store's view of a turn token ([`Backend::adopt`]).
    async fn adopt(
        &self,
        token: &TurnToken,
        report: &LateReport,
    ) -> Result<Adoption<B::Held>, ReportAnswer> {
        let stored = token.key();
        if report.needs_raw_key() && self.backend.stored_name(stored) != *stored {
            return Err(ReportAnswer {
                status: StatusCode::CONFLICT,
                body: json!({"error": "with store.key_secret, a late report that links, unlinks or rolls back must reach the replica that holds the turn"}),
            });
        }
        match self.backend.adopt(token).await {
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
        let mut trace = Trace::new();
        let asked = report.change.clone();
        let turn = Turn::Held {
            held,
            loaded,
            spooled: None,
        };
        let rollback = report.rollback.map(Ok);
        let rolls_back = rollback.is_some();
        let change = self
            .check(
                route,
                &conv,
                turn.loaded(),
                (report.change, rollback),
                &mut trace,
            )
            .await;
        let refused = (rolls_back && trace.rolled_back.is_none())
            || (matches!(asked, StateChange::Put(_)) && change == StateChange::Keep);
        let deferred = self.metrics.deferred();
        if refused {
            // The old snapshot stays; dropping the turn ends it.
            drop(turn);
            deferred.report(route.index, DeferredResult::Refused);
            return ReportAnswer {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({"error": "the route's rules refuse this report; the previous snapshot stays"}),
            };
        }
        let keyed = Keyed {
            conv: conv.clone(),
            dedupe: None,
            request_id,
        };
        let answer = Answer::acknowledged();
        let result = match report.link {
            None => {
                self.finish_turn(turn, keyed, change.clone(), (&answer, None), &mut trace)
                    .await
            }
            Some(ask) => {
                self.link_and_save(turn, keyed, change.clone(), (&answer, ask), &mut trace)
                    .await
            }
        };
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
                    body: json!({"key": conv.as_str(), "version": trace.version.unwrap_or(0)}),
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

/// What the defer stage decided.
pub(super) enum Deferral<H> {
    /// The turn waits for its late report; the answer leaves.
    Parked,
    /// Saved as an answer's report: the turn (`Degraded` when there is
    /// none to hold), the request, and what the answer reported.
    Save(Turn<H>, Keyed, Captured),
}

/// A fresh token for the turn a request holds on `route` (none while the
/// store is out).
pub(super) fn minted<H: Held>(route: &Route, turn: &Turn<H>) -> Option<TurnToken> {
    match turn {
        Turn::Held { held, .. } => TurnToken::mint(route.index, held.stored_key()),
        Turn::Degraded => None,
    }
}
