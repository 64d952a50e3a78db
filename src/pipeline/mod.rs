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
//! This file reads the stages top to bottom: [`Pipeline::handle`] (strip,
//! normalize, route) and `Pipeline::on_route` (the rest, one line or call
//! per stage). Each stage is a function over the request's context
//! (`Ctx`: its route, outcome and what its log line tells, in
//! `request.rs`) and the values the stage before it produced: `Admitted`,
//! `Keyed`, `Turn`, `Answer`, `Reported`, `Conversation`.
//!
//! Where each stage lives: `admit.rs` (normalize, verify, body, key),
//! `body.rs` (reading within the budgets of `budget.rs`, the body-mode
//! member), `state.rs` (turn, load, dedupe answer, save), `spooled.rs`
//! (the spool), `deferred.rs` (parked turns), `late.rs` (the defer stage),
//! `report.rs` (late reports), `unrouted.rs` (answers before a route),
//! `link.rs` (the bot's link reports, saved with the member's turn),
//! `wire.rs` (inject, capture and strip), `check.rs` (the route's rules),
//! `forward.rs` (upstream, keyless requests), `reject.rs` (statehold's own
//! answers), `logline.rs` (the request's metrics and log line). What
//! requests share with the admin API (backend, metrics, spool, store
//! health, audit notes) is [`crate::services`].
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
mod logline;
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

use crate::backend::{Inspect, Turns};
use crate::config::{Config, ContractMode, OnUnavailable, Unmatched};
use crate::contract;
use crate::services::Services;
use admit::{normalize_uri, Admission};
use late::Deferral;
pub use reject::Reject;
pub use report::{LateReport, ReportAnswer};
use request::{Answer, Conversation, Ctx, Keyed, Saved, Turn};
use route::Routes;
use wire::Reported;

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

/// What the request path needs of a backend: turns with their records,
/// and the kept versions a rollback reads. Never the process's side
/// ([`crate::backend::Lifecycle`]: pings, purges, scans).
pub trait PathStore: Turns + Inspect {}

impl<T: Turns + Inspect> PathStore for T {}

/// The request path over the shared [`Services`], with what only requests
/// use: the routes, the buffer budget, and this process's parked turns.
pub struct Pipeline<B: PathStore> {
    svc: Arc<Services<B>>,
    routes: Routes,
    budget: Arc<budget::Budget>,
    unreported: unreported::Unreported,
    /// This process's deferred turns, parked for their late reports.
    deferrals: Arc<deferred::Deferrals<B::Held>>,
    settings: Settings,
}

impl<B: PathStore> Pipeline<B> {
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
        let mut cx = Ctx::new(route);
        let resp = match self.on_route(parts, body, conn, &mut cx).await {
            Ok(resp) => resp,
            Err(reject) => cx.rejected(reject),
        };
        self.ended(&cx, &resp, started.elapsed(), trace_id.as_deref());
        resp
    }

    /// A request on a route, stage by stage (see the module docs).
    async fn on_route(
        &self,
        parts: Parts,
        body: Incoming,
        conn: ConnInfo,
        cx: &mut Ctx<'_>,
    ) -> Result<Response<Body>, Reject> {
        // verify (head) + body + verify (body)
        let mut admitted = match self.admit(parts, body, conn, cx.route).await? {
            Admission::Handshake(parts) => return Ok(self.handshake(parts, conn, cx).await),
            Admission::Admitted(admitted) => admitted,
        };
        // key
        let Some(keyed) = self.keys(cx.route, &admitted)? else {
            return self.keyless(admitted, cx).await;
        };
        cx.key = Some(keyed.conv.clone());
        // turn + load + dedupe
        let turn = self.begin_turn(&keyed, cx).await?;
        if let Some(recorded) = turn.loaded().and_then(|l| l.duplicate.clone()) {
            return self.answer_duplicate(&keyed, recorded, cx);
        }
        cx.turn = late::minted(cx.route, self.deferrals.holder(), &turn);
        // inject
        let token = cx.turn.as_ref().map(|t| t.as_str());
        let injection = wire::injection(&keyed.conv, turn.loaded(), token);
        let sent = self.inject(&mut admitted, Some(&injection))?;
        // upstream
        let mut answer = self
            .timed_exchange(admitted.parts, sent, admitted.conn, cx)
            .await?;
        // capture + strip
        let reported = self.capture(&mut answer, Some(&keyed.conv), &admitted.body)?;
        self.withhold_echo(&answer, turn.loaded(), &keyed.conv)?;
        self.watch_reports(&reported, &answer, cx);
        let mut held = Conversation { turn, keyed };
        // defer: the answer leaves, the turn waits for the late report
        let reported = if reported.deferred {
            match self.defer(held, &answer, reported, cx).await? {
                Deferral::Parked => return Ok(answer.into_response()),
                Deferral::Save(back, reported) => {
                    held = back;
                    reported
                }
            }
        } else {
            reported
        };
        // check + save
        self.check_and_save(held, reported, &answer, cx).await?;
        Ok(answer.into_response())
    }

    /// The check stage, then the save (with the link the bot asked for,
    /// if any).
    async fn check_and_save(
        &self,
        held: Conversation<B::Held>,
        reported: Reported,
        answer: &Answer,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Reject> {
        let (conv, loaded) = (held.conv(), held.turn.loaded());
        let rollback = reported.rollback;
        let change = self
            .check(conv, loaded, reported.change, rollback, cx)
            .await;
        match reported.link {
            None => self.finish_turn(held, change, answer, None, cx).await,
            Some(ask) => self.link_and_save(held, change, answer, ask, cx).await,
        }
    }

    fn body_mode(&self) -> bool {
        self.settings.mode == ContractMode::Body
    }
}
