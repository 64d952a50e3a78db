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

#[cfg(test)]
mod tests {
    //! Parked turns on the embedded store under a paused clock: the
    //! report timeout passes in no time, and nothing waits on a real one.
    use super::*;
    use crate::backend::embedded::EmbeddedBackend;
    use crate::backend::Turns;

    const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

    fn setup() -> (tempfile::TempDir, EmbeddedBackend, Arc<Metrics>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let day = Duration::from_secs(86_400);
        let store = EmbeddedBackend::open(&dir.path().join("s.db"), day, day, 1 << 20)
            .expect("open the embedded store");
        let metrics = Arc::new(Metrics::new(vec!["tg".to_string()]));
        (dir, store, metrics)
    }

    async fn park(
        store: &EmbeddedBackend,
        table: &Arc<Deferrals<<EmbeddedBackend as Turns>::Held>>,
        metrics: &Arc<Metrics>,
        secret: &str,
    ) -> ConvKey {
        let conv = ConvKey::new("tg", "7");
        let (held, loaded) = (store.begin(&conv, Duration::ZERO, None).await).expect("the turn");
        let parked = Parked {
            held,
            loaded,
            conv: conv.clone(),
            route: 0,
            request_id: None,
        };
        let timeout = REPORT_TIMEOUT;
        table.park(secret.into(), parked, timeout, Arc::clone(metrics), false);
        conv
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_turn_without_a_report_is_released_at_the_timeout() {
        let (_dir, store, metrics) = setup();
        let table = Arc::new(Deferrals::new());
        let conv = park(&store, &table, &metrics, "s1").await;
        tokio::time::sleep(REPORT_TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(table.len(), 1, "still parked just before its timeout");
        let busy = store.begin(&conv, Duration::ZERO, None).await;
        assert!(busy.is_err(), "the conversation's turn is still held");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(table.len(), 0);
        assert!(
            table.claim("s1").await.is_none(),
            "a late report finds nothing"
        );
        let text = metrics.render();
        let timeouts = r#"statehold_deferred_reports_total{route="tg",result="timeout"} 1"#;
        assert!(text.contains(timeouts), "{text}");
        let next = store.begin(&conv, Duration::from_secs(1), None).await;
        assert!(next.is_ok(), "the turn was released");
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_claims_its_parked_turn_once() {
        let (_dir, store, metrics) = setup();
        let table = Arc::new(Deferrals::new());
        park(&store, &table, &metrics, "s2").await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let claimed = table.claim("s2").await.expect("claimed before the timeout");
        assert_eq!(claimed.conv, ConvKey::new("tg", "7"));
        assert!(
            table.claim("s2").await.is_none(),
            "a token is good for one report"
        );
        tokio::time::sleep(REPORT_TIMEOUT).await;
        let text = metrics.render();
        assert!(!text.contains(r#"result="timeout"} 1"#), "{text}");
    }
}
