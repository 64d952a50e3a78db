//! The store stages of the request path: the turn and the load (with the
//! dedupe lookup), the answer from a dedupe record, and the end-of-turn
//! commit (the degraded-mode spool: `spooled.rs`).

use std::time::Instant;

use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use tracing::warn;

use super::reject::Reject;
use super::request::{Conversation, Ctx, Keyed};
use super::PathStore;
use super::{Answer, Body, Pipeline, Saved, Turn};
use crate::backend::{
    Commit, CommitOutcome, Held, LinkChange, Loaded, Origin, RecordedResponse, StoreError,
    TurnError,
};
use crate::config::OnUnavailable;
use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::metrics::{LoadResult, SaveResult, StoreOp};
use crate::outcome::Outcome;

impl<B: PathStore> Pipeline<B> {
    /// Accounts for the record read with the turn.
    pub(super) fn loaded(&self, conv: &ConvKey, loaded: Loaded, cx: &mut Ctx<'_>) -> Loaded {
        self.svc.health.seen(true);
        self.svc.metrics.load(match (&loaded.state, &loaded.undecryptable) {
            (Some(_), _) => LoadResult::Hit,
            (None, None) => LoadResult::Miss,
            (None, Some(why)) => {
                warn!(key = %conv.display(self.settings.reveal_ids), reason = %why,
                    "stored snapshot cannot be opened; the bot sees a new conversation, and its next write replaces it");
                LoadResult::Undecryptable
            }
        });
        cx.version = Some(loaded.version);
        if let Some(spool) = &self.svc.spool {
            spool.saw(conv, loaded.version);
        }
        loaded
    }

    /// Applies `store.on_unavailable`: `Err` rejects, `Ok` degrades.
    pub(super) fn store_unavailable(
        &self,
        conv: &ConvKey,
        reason: &dyn std::fmt::Display,
    ) -> Result<(), Reject> {
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
        held: B::Held,
        commit: Commit,
        cx: &mut Ctx<'_>,
    ) -> Saved {
        let change = commit.change.clone();
        let based_on = commit.expected_version.unwrap_or(0);
        let stores_snapshot = change != StateChange::Keep;
        let started = Instant::now();
        let result = held.finish(commit).await;
        let took = started.elapsed();
        cx.store_time += took;
        self.svc.metrics.store(StoreOp::Commit, took);
        let shown = conv.display(self.settings.reveal_ids);
        match result {
            Ok(CommitOutcome::Committed { version }) => {
                self.svc.health.seen(true);
                if stores_snapshot {
                    self.svc.metrics.save(SaveResult::Ok);
                }
                if let Some(spool) = &self.svc.spool {
                    spool.saw(conv, version);
                }
                cx.version = Some(version);
                Saved::Committed
            }
            Ok(CommitOutcome::Conflict { current }) => {
                self.svc.metrics.conflict();
                warn!(key = %shown, based_on, current, "commit refused: the conversation moved on; the newer snapshot stays");
                Saved::Stale
            }
            Err(e @ StoreError::Unreplicated { .. }) => {
                self.svc.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "commit not acknowledged: too few replicas confirmed it");
                Saved::Unreplicated
            }
            Err(e) if e.is_outage() => {
                self.svc.health.seen(false);
                self.svc.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "commit failed");
                Saved::Failed(change)
            }
            Err(e) => {
                self.svc.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "commit refused by the store (the store is up): nothing stored, nothing spooled");
                Saved::Refused(e)
            }
        }
    }

    /// Waits for the turn and reads the record; `Turn::Degraded` when the
    /// store is out and the route passes through.
    pub(super) async fn begin_turn(
        &self,
        keyed: &Keyed,
        cx: &mut Ctx<'_>,
    ) -> Result<Turn<B::Held>, Reject> {
        let conv = &keyed.conv;
        let dedupe_id = keyed.dedupe.as_ref().map(|(id, _)| id.as_str());
        if self.svc.spool.is_some() {
            // Another replica may still be writing back what it spooled
            // during the outage that just ended.
            if let Some(settle) = self.svc.health.settling() {
                tokio::time::sleep(settle).await;
            }
        }
        let started = Instant::now();
        let waiting = self.svc.metrics.turn_waiting();
        let begun = self
            .svc
            .backend
            .begin(conv, self.settings.lock_wait, dedupe_id)
            .await;
        drop(waiting);
        match begun {
            Ok((held, loaded)) => {
                let took = started.elapsed();
                let read = took.saturating_sub(held.waited());
                self.svc.metrics.lock_wait(held.waited());
                self.svc.metrics.store(StoreOp::Load, read);
                cx.store_time += read;
                let loaded = self.loaded(conv, loaded, cx);
                let (loaded, spooled) = self.spooled_first(conv, loaded).await;
                Ok(Turn::Held {
                    held,
                    loaded,
                    spooled,
                })
            }
            Err(refused) => self.turn_refused(conv, refused),
        }
    }

    /// The turn could not be taken: busy, an outage (degraded or 503), a
    /// recorded answer not yet replicated, or a record that cannot be used.
    fn turn_refused(&self, conv: &ConvKey, refused: TurnError) -> Result<Turn<B::Held>, Reject> {
        match refused {
            TurnError::WaitExceeded(_) => Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Busy,
                "conversation busy: an earlier request is still with the bot",
            )),
            // A recorded answer whose commit too few replicas confirmed:
            // replaying it would acknowledge what a failover can take back.
            TurnError::Store(e @ StoreError::Unreplicated { .. }) => {
                warn!(key = %conv.display(self.settings.reveal_ids), error = %e,
                    "recorded answer not replayed: its commit is not yet on enough replicas");
                Err(Reject::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Outcome::Unavailable,
                    "the recorded answer is not yet on enough replicas; redeliver",
                ))
            }
            TurnError::Store(e) if e.is_outage() => {
                self.svc.health.seen(false);
                self.svc.metrics.load(LoadResult::Error);
                self.store_unavailable(conv, &e)?;
                Ok(Turn::Degraded)
            }
            // One conversation's record, not the store: the store stays
            // up, nothing waits for a recovery, nothing passes through to
            // be spooled where it could never be written back.
            TurnError::Store(e) => {
                self.svc.metrics.load(LoadResult::Error);
                warn!(key = %conv.display(self.settings.reveal_ids), error = %e,
                    "the conversation's record cannot be used (the store is up): answered 500; see docs/operations.md#what-each-failure-looks-like");
                Err(Reject::store_error(e))
            }
        }
    }

    /// A known dedupe id: the recorded answer if the body is the one it
    /// answered, else 409 (the record is never handed to a different request).
    pub(super) fn answer_duplicate(
        &self,
        keyed: &Keyed,
        recorded: RecordedResponse,
        cx: &mut Ctx<'_>,
    ) -> Result<Response<Body>, Reject> {
        let (conv, digest) = (&keyed.conv, keyed.dedupe.as_ref().map(|(_, d)| d));
        if digest.is_some_and(|d| !recorded.answers(d)) {
            self.svc.metrics.dedupe_mismatch();
            warn!(key = %conv.display(self.settings.reveal_ids), "known dedupe id with a different body: refused, the record stays");
            return Err(Reject::new(
                StatusCode::CONFLICT,
                Outcome::DedupeMismatch,
                "this dedupe id was already used by a different request",
            ));
        }
        self.svc.metrics.dedupe_hit();
        cx.outcome = Outcome::Duplicate;
        Ok(recorded_response(recorded))
    }

    /// The save stage: commit (with the dedupe record of a 2xx answer) and
    /// release the turn, or keep the change safe while the store is out.
    pub(super) async fn finish_turn(
        &self,
        conv: Conversation<B::Held>,
        change: StateChange,
        answer: &Answer,
        link: Option<Box<LinkChange>>,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Reject> {
        let Conversation { turn, keyed } = conv;
        let status = answer.parts.status;
        let Turn::Held {
            held,
            loaded,
            spooled,
        } = turn
        else {
            cx.outcome = Outcome::Degraded;
            // Passthrough trades durability for availability: what cannot
            // be spooled is lost, and said so.
            if status.as_u16() < 500 && !self.spool_degraded(&keyed.conv, change).await {
                warn!(key = %keyed.conv.display(self.settings.reveal_ids), "degraded: snapshot not stored");
            }
            return Ok(());
        };
        if status.as_u16() >= 500 {
            return Ok(()); // bot 5xx: passed through, nothing saved; dropping `held` releases the turn
        }
        let (conv, dedupe, request_id) = (keyed.conv, keyed.dedupe, keyed.request_id);
        // What this replica spooled during the outage is written now, unless
        // the bot reported something newer on top of it.
        let change = match (change, &spooled) {
            (StateChange::Keep, Some(kept)) => kept.clone(),
            (change, _) => change,
        };
        let dedupe = answer.dedupe_record(dedupe);
        if spooled.is_some() {
            // Off the spool before the commit releases the turn (a failed
            // commit spools the change again, on the same base).
            self.settle_spooled(&conv).await;
        }
        let old = loaded.state.as_deref();
        let audit = (self.svc.audit).note_saved(&conv, request_id, old, &change, link.is_some());
        let commit = Commit {
            expected_version: Some(loaded.version),
            change,
            dedupe,
            origin: cx.rolled_back.map_or(Origin::Bot, |_| Origin::Rollback),
            audit,
            link,
        };
        let saved = self.save(&conv, held, commit, cx).await;
        self.after_save(saved, &conv, cx).await
    }

    /// What the platform is told after the save: an acknowledged answer
    /// only when the snapshot is durable (in the store, or in the spool).
    pub(super) async fn after_save(
        &self,
        saved: Saved,
        conv: &ConvKey,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Reject> {
        match saved {
            Saved::Committed | Saved::Failed(StateChange::Keep) => Ok(()),
            // A failover could still lose it: not acknowledged. The
            // redelivery is answered from the dedupe record if it survived,
            // and runs the bot again if it did not.
            Saved::Unreplicated => Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                "the snapshot is not yet on enough replicas; redeliver",
            )
            .after_bot()),
            Saved::Refused(e) => Err(Reject::store_error(e).after_bot()),
            // Someone else moved the conversation on: this update is not in
            // the stored state, so ask the platform to deliver it again.
            Saved::Stale => Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Conflict,
                "the conversation moved on while the bot worked; redeliver",
            )
            .after_bot()),
            // Never acknowledge a snapshot that is nowhere durable: keep it
            // in the spool, or have the update redelivered.
            Saved::Failed(change) => {
                if !self.spool_degraded(conv, change).await {
                    return Err(Reject::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Outcome::Unavailable,
                        "the snapshot could not be stored; redeliver",
                    )
                    .after_bot());
                }
                cx.outcome = Outcome::Degraded;
                Ok(())
            }
        }
    }
}

impl Answer {
    /// The dedupe record this answer leaves for the request's dedupe id:
    /// only a success is worth replaying (a recorded 429 or 408 would
    /// answer every redelivery for the whole dedupe window).
    pub(super) fn dedupe_record(
        &self,
        dedupe: super::request::Dedupe,
    ) -> Option<(String, RecordedResponse)> {
        dedupe
            .filter(|_| self.parts.status.is_success())
            .map(|(id, digest)| (id, self.recorded(digest)))
    }

    /// This answer as the record that answers redeliveries of the request
    /// whose body has `digest`.
    fn recorded(&self, digest: [u8; 32]) -> RecordedResponse {
        RecordedResponse {
            status: self.parts.status,
            headers: self
                .parts
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            body: self.body.clone(),
            request_digest: Some(digest),
        }
    }
}

fn recorded_response(recorded: RecordedResponse) -> Response<Body> {
    let mut resp = Response::new(Either::Left(Full::new(recorded.body)));
    *resp.status_mut() = recorded.status;
    let headers = resp.headers_mut();
    for (name, value) in recorded.headers {
        headers.append(name, value);
    }
    resp
}
