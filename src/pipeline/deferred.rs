//! Deferred turns: the turn outlives the bot's answer. A bot that answers
//! the platform first and works afterwards (an LLM call, a background task,
//! a framework that answers before its handlers run) answers
//! `X-Statehold-Deferred: 1`; the answer leaves at once (its dedupe record
//! written, so a redelivery is answered from it), and the conversation's
//! turn stays held, its lease kept alive, until the late report arrives
//! (`POST /v1/turns/<token>` on the admin listener, `report.rs`) or
//! `route.report_timeout` passes. Later requests of the conversation wait
//! for it, on any replica, as they wait for a bot at work.
//!
//! Here, a deferred turn is parked in a task of its own; a report that
//! reaches this process claims it from the parking table. A report that
//! reaches another replica (or this one after a restart) adopts the turn
//! from the store by its token ([`crate::backend::Turns::adopt`]),
//! fenced like an answer's commit. Either way the report then goes through
//! the same check and save stages as an answer's report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::warn;

use crate::backend::{Held, Loaded};
use crate::key::ConvKey;
use crate::metrics::{DeferredResult, Metrics};

/// A deferred turn, parked until its report or its timeout.
pub(super) struct Parked<H> {
    pub(super) held: H,
    pub(super) loaded: Loaded,
    /// The conversation as the request named it (a turn adopted from the
    /// store knows only its stored key).
    pub(super) conv: ConvKey,
    /// The route the request came by (its rules judge the report).
    pub(super) route: usize,
    pub(super) request_id: Option<String>,
}

/// How a report claims a parked turn: it hands the parking task a channel
/// to send the turn back on.
type Claim<H> = oneshot::Sender<oneshot::Sender<Parked<H>>>;

/// This process's parked turns, by their token's secret.
pub(super) struct Deferrals<H> {
    parked: Mutex<HashMap<String, Claim<H>>>,
    /// Told of every parking: a report that overtook its deferral (the
    /// bot reported from a background task before its answer was read)
    /// looks again at once.
    parking: tokio::sync::Notify,
    /// This process, as its turn tokens name it (random per start).
    holder: u64,
}

impl<H: Held> Deferrals<H> {
    pub(super) fn new() -> Deferrals<H> {
        Deferrals {
            parked: Mutex::new(HashMap::new()),
            parking: tokio::sync::Notify::new(),
            holder: std::hash::BuildHasher::hash_one(
                &std::hash::RandomState::new(),
                std::process::id(),
            ),
        }
    }

    /// This process, as its turn tokens name it.
    pub(super) fn holder(&self) -> u64 {
        self.holder
    }

    /// Resolves at the next parking in this process.
    pub(super) fn parked(&self) -> tokio::sync::futures::Notified<'_> {
        self.parking.notified()
    }

    /// Parks `turn` until a report claims it, `timeout` passes (the turn
    /// is released, the snapshot kept: counted and logged), or it was
    /// ended elsewhere (a report on another replica).
    pub(super) fn park(
        self: &Arc<Self>,
        secret: String,
        mut turn: Parked<H>,
        timeout: Duration,
        metrics: Arc<Metrics>,
        reveal_ids: bool,
    ) {
        let (claim, claimed) = oneshot::channel();
        self.parked.lock().insert(secret.clone(), claim);
        self.parking.notify_waiters();
        let table = Arc::clone(self);
        tokio::spawn(async move {
            let _awaiting = metrics.deferred().awaiting();
            enum End<H> {
                Claimed(Option<oneshot::Sender<Parked<H>>>),
                TimedOut,
                Lost,
            }
            let end = tokio::select! {
                reply = claimed => End::Claimed(reply.ok()),
                _ = tokio::time::sleep(timeout) => End::TimedOut,
                _ = turn.held.lost() => End::Lost,
            };
            table.forget(&secret);
            match end {
                // A reporter that left meanwhile: dropping the turn ends it.
                End::Claimed(Some(reply)) => drop(reply.send(turn)),
                End::Claimed(None) | End::Lost => {}
                End::TimedOut => {
                    metrics
                        .deferred()
                        .report(turn.route, DeferredResult::Timeout);
                    warn!(key = %turn.conv.display(reveal_ids), ?timeout,
                        "no late report within route.report_timeout: the turn is released, the snapshot stays");
                }
            }
        });
    }

    /// Turns parked right now.
    pub(super) fn len(&self) -> usize {
        self.parked.lock().len()
    }

    /// The parked turn `secret` names, if this process holds it: taken
    /// out of the table (a token is good for one report).
    pub(super) async fn claim(&self, secret: &str) -> Option<Parked<H>> {
        let claim = self.parked.lock().remove(secret)?;
        let (reply, turn) = oneshot::channel();
        claim.send(reply).ok()?;
        turn.await.ok()
    }

    fn forget(&self, secret: &str) {
        self.parked.lock().remove(secret);
    }
}
