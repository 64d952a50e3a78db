//! The request path. For every request, in this order:
//!
//! 1. **strip**     inbound `X-Statehold-*` headers (any `_`/`-` spelling) are
//!    dropped first ([`contract::strip_reserved`])
//! 2. **normalize** the path is normalized ([`crate::path`]); what cannot be
//!    is answered 400. Routes match the normalized path (ASCII case
//!    ignored), and the bot is sent the normalized path.
//!
//! Unmatched paths are then streamed untouched ([`Pipeline::passthrough`])
//! or, with `server.unmatched = "reject"`, answered 404. On a route:
//!
//! 3. **verify (head)**  what the head alone decides ([`crate::verify`]),
//!    before a byte of the body is read
//! 4. **body**      buffered within `server.max_body_bytes`,
//!    `server.body_timeout` and the shared `server.max_buffered_bytes` ([`body`])
//! 5. **verify (body)**  the signature over the raw body
//! 6. **key**       conversation key and dedupe id ([`crate::key`]); an
//!    ambiguous key is a 400. Keyless requests are forwarded without state
//!    (body mode: the client's member removed) or refused (`on_missing_key`).
//! 7. **turn**      wait for the conversation's turn ([`crate::backend::Turns::begin`]); on
//!    Redis the same round trip also performs step 8 when the turn is free
//! 8. **load + dedupe**  the record read with the turn: snapshot, sliding-TTL
//!    refresh and the dedupe record. A redelivery with the same body is answered from the
//!    record; a different body under a known dedupe id gets 409.
//! 9. **inject**    snapshot into the request ([`contract::inject_headers`] /
//!    [`body::set_member`]), `X-Statehold-Verified`, and the turn's token
//!    (`X-Statehold-Turn`, [`crate::backend::TurnToken`])
//! 10. **upstream** the bot, asked for an uncompressed answer ([`crate::upstream`])
//! 11. **capture**  the bot's reported snapshot, and **strip** every trace of
//!     it from the answer; an answer that cannot be stripped is a 502.
//!     **defer**: an answer that says `X-Statehold-Deferred: 1` leaves now
//!     and its turn stays held for the late report (`POST /v1/turns/<token>`
//!     on the admin listener), which then runs steps 12 and 13
//!     (`deferred.rs`, `late.rs`, `report.rs`)
//! 12. **check**    the snapshot against the route's rules (`route.schema`,
//!     `[route.transitions]`): one that breaks them is not stored and the
//!     old one stays; a clear keeps `route.keep_on_clear` ([`crate::rules`])
//! 13. **save**     one atomic commit ([`crate::backend::Held::finish`]):
//!     version and fence check, snapshot, sliding TTL refresh, dedupe record
//!     (2xx answers only), and the turn's release;
//!     a snapshot that cannot be committed is spooled or answered 503
//!
//! Where each stage lives: `admit.rs` (normalize, verify, key), `body.rs`
//! (reading within the budgets of `budget.rs`, the body-mode member),
//! `state.rs` (turn, load, dedupe answer, save), `spooled.rs` (the spool),
//! `deferred.rs` (parked turns), `late.rs` (the defer stage), `report.rs`
//! (late reports), `unrouted.rs` (answers before a route), `link.rs` (the
//! bot's link reports, saved with the member's turn), `wire.rs` (inject,
//! capture and strip), `check.rs` (the route's rules), `forward.rs`
//! (upstream, keyless requests), `reject.rs` (statehold's own answers);
//! what requests share with the admin API (backend, metrics, spool, store
//! health, audit notes) is [`crate::services`]; this file reads the stages top to bottom in [`Pipeline::handle`]
//! and `Pipeline::matched`.
//!
//! Where is the TTL refreshed? In the backend, by every load (step 8) and
//! every commit (step 13): `backend/embedded/` and `backend/redis/*.lua`.

mod admit;
pub mod body;
pub mod budget;
mod check;
mod deferred;
mod forward;
mod late;
mod link;
pub mod reject;
mod report;
mod request;
pub mod route;
mod spooled;
mod state;
mod unreported;
mod unrouted;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tracing::info;

use crate::backend::Backend;
use crate::config::{Config, ContractMode, OnUnavailable, Unmatched};
use crate::contract;
use crate::outcome::Outcome;
use crate::services::Services;
use crate::verify::HeadVerdict;
use admit::normalize_uri;
use late::Deferral;
pub use reject::Reject;
pub use report::{LateReport, ReportAnswer};
use request::{Admitted, Answer, Keyed, Saved, Trace, Turn};
use route::{Route, Routes};

/// Bodies in both directions: buffered (matched routes, statehold's own
/// answers) or streamed (unmatched paths).
pub type Body = Either<Full<Bytes>, Incoming>;

/// Who sent the request.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Pipeline settings taken from the config once.
struct Settings {
    max_body_bytes: u64,
    body_timeout: Duration,
    max_state_bytes: usize,
    /// Header mode: the largest `X-Statehold-State` sent to the bot.
    max_header_bytes: usize,
    on_unavailable: OnUnavailable,
    lock_wait: Duration,
    mode: ContractMode,
    body_field: String,
    reveal_ids: bool,
    unmatched: Unmatched,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a late report that overtook its deferral waits for it.
    report_grace: Duration,
}

/// The request path over the shared [`Services`], with what only requests
/// use: the routes, the buffer budget, and this process's parked turns.
pub struct Pipeline<B: Backend> {
    svc: Arc<Services<B>>,
    routes: Routes,
    budget: Arc<budget::Budget>,
    unreported: unreported::Unreported,
    /// This process's deferred turns, parked for their late reports.
    deferrals: Arc<deferred::Deferrals<B::Held>>,
    settings: Settings,
}

impl<B: Backend> Pipeline<B> {
    pub fn new(config: &Config, svc: Arc<Services<B>>) -> Result<Pipeline<B>, route::RouteError> {
        Ok(Pipeline {
            routes: Routes::from_config(config)?,
            unreported: unreported::Unreported::new(config.routes.len()),
            deferrals: Arc::new(deferred::Deferrals::new()),
            budget: budget::Budget::new(config.server.max_buffered_bytes, Arc::clone(&svc.metrics)),
            svc,
            settings: Settings {
                max_body_bytes: config.server.max_body_bytes.get(),
                body_timeout: config.server.body_timeout,
                max_state_bytes: config.store.max_state_bytes.get() as usize,
                max_header_bytes: config.contract.max_header_bytes,
                on_unavailable: config.store.on_unavailable,
                lock_wait: config.store.lock_wait,
                mode: config.contract.mode,
                body_field: config.contract.body_field.clone(),
                reveal_ids: config.log.reveal_ids,
                unmatched: config.server.unmatched,
                trusted_proxies: config.server.trusted_proxies.clone(),
                report_grace: config.upstream.timeout,
            },
        })
    }

    /// What this pipeline shares with the admin API and the background.
    pub fn services(&self) -> &Arc<Services<B>> {
        &self.svc
    }

    /// Handles one inbound request; never fails (errors become responses).
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        // strip: before anything else, a client can never inject state.
        contract::strip_reserved(&mut parts.headers);
        // normalize: routes match what the bot's framework will route on.
        if let Err(e) = normalize_uri(&mut parts.uri) {
            let reject = Reject::bad_request("the request path cannot be normalized").because(e);
            return self.unrouted(reject, started);
        }
        let Some(route) = self.routes.find(parts.uri.path()) else {
            return self.unmatched(parts, body, conn, started).await;
        };
        // Forwarded to the bot as it came; its trace id goes on the line.
        let trace_id = crate::tracecontext::trace_id(&parts.headers).map(str::to_string);

        let mut trace = Trace::new();
        let resp = match self.matched(route, parts, body, conn, &mut trace).await {
            Ok(resp) => resp,
            Err(reject) => {
                trace.outcome = reject.outcome;
                trace.reason = Some(reject.log_text());
                reject.response()
            }
        };
        let took = started.elapsed();
        self.svc
            .metrics
            .request(route.index, trace.outcome, resp.status().as_u16(), took);
        // Fields are only evaluated when the line is logged.
        info!(
            route = %route.path,
            namespace = %route.namespace,
            key = trace
                .key
                .as_ref()
                .map_or_else(|| "-".to_string(), |k| k.display(self.settings.reveal_ids).to_string()),
            outcome = trace.outcome.as_str(),
            status = resp.status().as_u16(),
            version = trace.version.unwrap_or(0),
            took_us = took.as_micros() as u64,
            upstream_us = trace.upstream_time.as_micros() as u64,
            store_us = trace.store_time.as_micros() as u64,
            reason = trace.reason.as_deref().unwrap_or(""),
            trace_id = trace_id.as_deref().unwrap_or("-"),
            "request"
        );
        resp
    }

    /// A request on a route, stage by stage (see the module docs).
    async fn matched(
        &self,
        route: &Route,
        mut parts: Parts,
        body: Incoming,
        conn: ConnInfo,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Reject> {
        // verify (head)
        let head = self.verify_head(route, &parts)?;
        if head == Some(HeadVerdict::Handshake) {
            // Meta's handshake carries no body: none is forwarded, so
            // nothing unverified (a body-mode member) rides along.
            trace.outcome = Outcome::Handshake;
            drop(body);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            let empty = Either::Left(Full::new(Bytes::new()));
            return Ok(self.passthrough(parts, empty, conn).await);
        }
        // body
        let buffered = body::read(
            &parts,
            body,
            self.settings.max_body_bytes,
            self.settings.body_timeout,
            &self.budget,
        )
        .await?;
        let body = buffered.bytes.clone();
        // verify (body)
        if head == Some(HeadVerdict::NeedsBody) {
            self.verify_body(route, &parts, &body)?;
        }
        let verified = route.verifier.as_ref().map(|v| v.kind());
        // key
        let mut json = body::parse_json(&body, route.needs_json || self.body_mode())?;
        let Some(keyed) = self.keys(route, &parts, &body, json.as_ref())? else {
            let body = self.inject(&mut parts, body, json.as_mut(), None, verified)?;
            drop(json);
            return self.keyless(route, parts, body, conn, trace).await;
        };
        let admitted = Admitted {
            parts,
            body,
            json,
            verified,
        };
        self.keyed(route, admitted, keyed, conn, trace).await
    }

    /// The rest of a keyed request: turn, load and dedupe, inject, the
    /// bot, capture, save.
    async fn keyed(
        &self,
        route: &Route,
        admitted: Admitted,
        keyed: Keyed,
        conn: ConnInfo,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Reject> {
        let Admitted {
            mut parts,
            body,
            mut json,
            verified,
        } = admitted;
        let conv = keyed.conv.clone();
        trace.key = Some(conv.clone());
        // turn + load + dedupe
        let dedupe_id = keyed.dedupe.as_ref().map(|(id, _)| id.as_str());
        let turn = self.begin_turn(&conv, dedupe_id, trace).await?;
        if let Some(recorded) = turn.loaded().and_then(|l| l.duplicate.clone()) {
            let digest = keyed.dedupe.as_ref().map(|(_, d)| d);
            return self.answer_duplicate(&conv, recorded, digest, trace);
        }
        // the turn's token, for a late report
        trace.turn = late::minted(route, self.deferrals.holder(), &turn);
        // inject
        let token = trace.turn.as_ref().map(|t| t.as_str());
        let injection = wire::injection(&conv, turn.loaded(), token);
        let sent = self.inject(
            &mut parts,
            body.clone(),
            json.as_mut(),
            Some(&injection),
            verified,
        )?;
        drop(json);
        // upstream
        let mut answer = self.timed_exchange(parts, sent, conn, trace).await?;
        // capture + strip
        let mut rollback = contract::capture_rollback(&answer.parts.headers);
        let mut captured = self.capture(&mut answer, Some(&conv), &body)?;
        self.withhold_echo(&answer, turn.loaded(), &conv)?;
        self.watch_reports(route, &captured, &answer, trace);
        let (mut turn, mut keyed) = (turn, keyed);
        // defer: the answer leaves, the turn waits for the late report
        if captured.deferred {
            let reported = (&answer, captured, rollback.is_some());
            match self.defer(route, (turn, keyed), reported, trace).await? {
                Deferral::Parked => return Ok(answer.into_response()),
                Deferral::Save(t, k, c) => (turn, keyed, captured, rollback) = (t, k, c, None),
            }
        }
        // check + save
        self.check_and_save(route, (turn, keyed), (captured, rollback), &answer, trace)
            .await?;
        Ok(answer.into_response())
    }

    /// The check stage, then the save (with the link the bot asked for,
    /// if any).
    async fn check_and_save(
        &self,
        route: &Route,
        (turn, keyed): (Turn<B::Held>, Keyed),
        (captured, rollback): (wire::Captured, Option<contract::RollbackAsked>),
        answer: &Answer,
        trace: &mut Trace,
    ) -> Result<(), Reject> {
        let conv = keyed.conv.clone();
        let asked = (captured.change, rollback);
        let change = self.check(route, &conv, turn.loaded(), asked, trace).await;
        match captured.link {
            None => {
                self.finish_turn(turn, keyed, change, (answer, None), trace)
                    .await
            }
            Some(ask) => {
                self.link_and_save(turn, keyed, change, (answer, ask), trace)
                    .await
            }
        }
    }

    fn body_mode(&self) -> bool {
        self.settings.mode == ContractMode::Body
    }
}
