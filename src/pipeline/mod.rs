//! The request path. For a request on a configured route, in this order:
//!
//! 1. **strip**   inbound `X-Statehold-*` headers are dropped first ([`contract::strip_reserved`])
//! 2. **body**    buffered up to `server.max_body_bytes` within `server.body_timeout`
//! 3. **verify**  platform authenticity ([`crate::verify`])
//! 4. **key**     conversation key and dedupe id ([`crate::key`])
//! 5. **turn**    wait for the conversation's turn ([`crate::coord`]); on
//!    Redis the same round trip also performs step 6 when the turn is free
//! 6. **load + dedupe**  one store read: snapshot, sliding-TTL refresh and the
//!    dedupe record. It runs inside the turn, so a redelivery that arrives
//!    while the first delivery is still in flight waits for it and is
//!    answered from its record.
//! 7. **inject**  snapshot into the request ([`contract::inject_headers`] / [`contract::inject_body`])
//! 8. **upstream** the bot ([`crate::upstream`])
//! 9. **capture** the bot's reported snapshot ([`contract::capture_headers`] / [`contract::capture_body`])
//! 10. **save**   one atomic commit: version and fence check, snapshot, sliding
//!     TTL refresh, dedupe record, and the turn's release; a snapshot that
//!     cannot be committed is spooled or answered 503, never acknowledged
//! 11. **strip**  reserved headers out of the response
//!
//! Where is the TTL refreshed? In the store, by every load (step 6) and every
//! commit (step 10): `store/embedded.rs` and `store/redis/*.lua`.
//!
//! Requests on unmatched paths skip all of it and are streamed untouched
//! ([`Pipeline::passthrough`]).

pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tracing::{info, warn};

use crate::config::{Config, ContractMode, OnMissingKey, OnUnavailable};
use crate::contract::{self, CaptureError, Injection, LoadStatus, StateChange};
use crate::coord::{Turn, TurnError, Turns};
use crate::key::{self, ConvKey, RequestParts};
use crate::metrics::{LoadResult, Metrics, SaveResult, StoreOp};
use crate::spool::Spool;
use crate::store::{Commit, CommitOutcome, Loaded, RecordedResponse, Store};
use crate::upstream::{forward_headers, strip_hop_by_hop, Upstream, UpstreamError};
use route::{Route, Routes};

/// Bodies in both directions: buffered (matched routes, statehold's own
/// answers) or streamed (unmatched paths).
pub type Body = Either<Full<Bytes>, Incoming>;

/// How a request ended; a bounded label of `statehold_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The bot answered and the turn was committed.
    Ok,
    /// Answered from the dedupe record; the bot was not called.
    Duplicate,
    /// Unmatched path, streamed untouched.
    Passthrough,
    /// Matched route, no key found, forwarded without state.
    NoKey,
    /// Store unreachable, forwarded with `X-Statehold-Status: degraded`.
    Degraded,
    /// Rejected before the bot: verification failed.
    Unverified,
    /// Rejected before the bot: bad request (no key, malformed body).
    BadRequest,
    /// Rejected before the bot: body over the limit.
    TooLarge,
    /// Rejected before the bot: body not received in time.
    SlowClient,
    /// Rejected before the bot: store unavailable (`on_unavailable = reject`).
    Unavailable,
    /// Rejected before the bot: the turn wait exceeded `store.lock_wait`.
    Busy,
    /// The bot failed (unreachable, broken connection, oversized answer).
    UpstreamError,
    /// The bot did not answer within `upstream.timeout`.
    UpstreamTimeout,
    /// The bot answered but the commit was refused: the conversation moved
    /// on (the turn's lease was taken over). 503, so the update is redelivered.
    Conflict,
    /// Shed at accept: `server.max_connections` reached. 503.
    Overloaded,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::Duplicate,
        Outcome::Passthrough,
        Outcome::NoKey,
        Outcome::Degraded,
        Outcome::Unverified,
        Outcome::BadRequest,
        Outcome::TooLarge,
        Outcome::SlowClient,
        Outcome::Unavailable,
        Outcome::Busy,
        Outcome::UpstreamError,
        Outcome::UpstreamTimeout,
        Outcome::Conflict,
        Outcome::Overloaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Duplicate => "duplicate",
            Outcome::Passthrough => "passthrough",
            Outcome::NoKey => "no_key",
            Outcome::Degraded => "degraded",
            Outcome::Unverified => "unverified",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::SlowClient => "slow_client",
            Outcome::Unavailable => "store_unavailable",
            Outcome::Busy => "busy",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::Conflict => "conflict",
            Outcome::Overloaded => "overloaded",
        }
    }
}

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
    on_unavailable: OnUnavailable,
    lock_wait: Duration,
    mode: ContractMode,
    body_field: String,
    reveal_ids: bool,
}

pub struct Pipeline<S, T> {
    /// Degraded-mode spool (passthrough on a shared store), if any.
    spool: Option<Arc<Spool>>,
    routes: Routes,
    store: S,
    turns: T,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    settings: Settings,
}

/// What one request accumulates for its log line and metrics.
struct Trace {
    outcome: Outcome,
    key: Option<ConvKey>,
    store_time: Duration,
    upstream_time: Duration,
    /// The stored version after this request (for the log line).
    version: Option<u64>,
    /// Why statehold answered by itself (early rejects).
    reason: Option<String>,
}

/// An early answer: status, outcome and a short reason for the client.
struct Reject {
    status: StatusCode,
    outcome: Outcome,
    reason: String,
}

impl Reject {
    fn new(status: StatusCode, outcome: Outcome, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            outcome,
            reason: reason.into(),
        }
    }
}

/// How the end-of-turn write went.
enum Saved {
    Committed,
    /// Refused: the conversation moved on (version or fence).
    Stale,
    /// The store failed; the change is handed back to be kept elsewhere.
    Failed(StateChange),
}

/// Seconds the platform is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 1;

impl<S: Store, T: Turns> Pipeline<S, T> {
    pub fn new(
        config: &Config,
        store: S,
        turns: T,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        spool: Option<Arc<Spool>>,
    ) -> Result<Pipeline<S, T>, String> {
        Ok(Pipeline {
            spool,
            routes: Routes::from_config(config)?,
            store,
            turns,
            upstream,
            metrics,
            settings: Settings {
                max_body_bytes: config.server.max_body_bytes,
                body_timeout: config.server.body_timeout.get(),
                max_state_bytes: config.store.max_state_bytes as usize,
                on_unavailable: config.store.on_unavailable,
                lock_wait: config.store.lock_wait.get(),
                mode: config.contract.mode,
                body_field: config.contract.body_field.clone(),
                reveal_ids: config.log.reveal_ids,
            },
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }
    pub fn turns(&self) -> &T {
        &self.turns
    }
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    pub fn spool(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    /// Handles one inbound request; never fails (errors become responses).
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        // Before anything else: a client can never inject state.
        contract::strip_reserved(&mut parts.headers);

        let Some(route) = self.routes.find(parts.uri.path()) else {
            let resp = self.passthrough(parts, Either::Right(body), conn).await;
            let outcome = match resp.status() {
                StatusCode::BAD_GATEWAY => Outcome::UpstreamError,
                StatusCode::GATEWAY_TIMEOUT => Outcome::UpstreamTimeout,
                _ => Outcome::Passthrough,
            };
            self.metrics.request(
                self.metrics.unmatched(),
                outcome,
                resp.status().as_u16(),
                started.elapsed(),
            );
            return resp;
        };

        let mut trace = Trace {
            outcome: Outcome::Ok,
            key: None,
            store_time: Duration::ZERO,
            upstream_time: Duration::ZERO,
            version: None,
            reason: None,
        };
        let resp = match self.matched(route, parts, body, conn, &mut trace).await {
            Ok(resp) => resp,
            Err(reject) => {
                trace.outcome = reject.outcome;
                let resp = error_response(&reject);
                trace.reason = Some(reject.reason);
                resp
            }
        };
        let took = started.elapsed();
        self.metrics
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
            "request"
        );
        resp
    }

    /// A request whose head carried both `Content-Length` and
    /// `Transfer-Encoding` (seen by [`crate::framing`]): 400, never forwarded,
    /// and the connection is closed.
    pub fn reject_ambiguous_framing<B>(&self, req: &Request<B>) -> Response<Body> {
        let reject = Reject::new(
            StatusCode::BAD_REQUEST,
            Outcome::BadRequest,
            "both Content-Length and Transfer-Encoding",
        );
        let index = self
            .routes
            .find(req.uri().path())
            .map_or(self.metrics.unmatched(), |r| r.index);
        self.metrics
            .request(index, reject.outcome, 400, Duration::ZERO);
        warn!(path = %req.uri().path(), reason = %reject.reason, "request rejected");
        let mut resp = error_response(&reject);
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    async fn matched(
        &self,
        route: &Route,
        mut parts: Parts,
        body: Incoming,
        conn: ConnInfo,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Reject> {
        let mut body = self.read_body(&parts, body).await?;

        // verify
        if let Some(verifier) = &route.verifier {
            let now = crate::store::now_ms() as i64 / 1000;
            if let Err(e) = verifier.check(&parts.headers, &body, now) {
                return Err(Reject::new(
                    StatusCode::UNAUTHORIZED,
                    Outcome::Unverified,
                    e.to_string(),
                ));
            }
        }

        // key
        let body_mode = self.settings.mode == ContractMode::Body;
        let mut json = parse_json(&body, route.needs_json || body_mode, route.needs_json)?;
        let (conv, dedupe_id) = {
            let req = RequestParts {
                headers: &parts.headers,
                query: parts.uri.query(),
                body: &body,
                json: json.as_ref(),
            };
            let conv =
                key::first_present(&route.key, &req).map(|id| ConvKey::new(&route.namespace, &id));
            let dedupe_id = route
                .dedupe
                .as_ref()
                .and_then(|s| s.extract(&req))
                .map(|id| id.into_owned());
            (conv, dedupe_id)
        };
        let Some(conv) = conv else {
            if route.on_missing_key == OnMissingKey::Reject {
                return Err(Reject::new(
                    StatusCode::BAD_REQUEST,
                    Outcome::BadRequest,
                    "no conversation key in the request",
                ));
            }
            trace.outcome = Outcome::NoKey;
            return Ok(self
                .passthrough(parts, Either::Left(Full::new(body)), conn)
                .await);
        };
        trace.key = Some(conv.clone());

        // turn (a shared backend reads the record in the same round trip
        // when the turn is free at once)
        let wait_started = Instant::now();
        self.metrics.turn_waiting(true);
        let acquired = self
            .turns
            .acquire_for_request(&conv, self.settings.lock_wait, dedupe_id.as_deref())
            .await;
        self.metrics.turn_waiting(false);
        let mut turn = match acquired {
            Ok(turn) => Some(turn),
            Err(TurnError::WaitExceeded(_)) => {
                return Err(Reject::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Outcome::Busy,
                    "conversation busy: an earlier request is still with the bot",
                ))
            }
            Err(TurnError::Unavailable(e)) => {
                self.metrics.set_store_up(false);
                self.store_unavailable(&conv, &e)?;
                None
            }
        };
        self.metrics.lock_wait(wait_started.elapsed());

        // load + dedupe
        let prefetched = turn.as_mut().and_then(Turn::take_loaded);
        let loaded = match (&turn, prefetched) {
            (Some(_), Some(loaded)) => Some(self.loaded(&conv, loaded, trace)),
            (Some(_), None) => self.load(&conv, dedupe_id.as_deref(), trace).await?,
            (None, _) => None,
        };
        if let Some(recorded) = loaded.as_ref().and_then(|l| l.duplicate.clone()) {
            self.metrics.dedupe_hit();
            trace.outcome = Outcome::Duplicate;
            return Ok(recorded_response(recorded));
        }

        // inject
        let status = match &loaded {
            Some(l) if l.state.is_some() => LoadStatus::Restored,
            Some(_) => LoadStatus::New,
            None => LoadStatus::Degraded,
        };
        let empty = Loaded::default();
        let loaded_ref = loaded.as_ref().unwrap_or(&empty);
        let injection = Injection {
            key: &conv,
            version: loaded_ref.visible_version(),
            status,
            state: loaded_ref.state.as_deref(),
        };
        contract::inject_headers(&mut parts.headers, &injection, !body_mode);
        if body_mode {
            if let Some(doc) = json.as_mut() {
                if contract::inject_body(doc, &self.settings.body_field, &injection) {
                    body = serde_json::to_vec(doc).map(Bytes::from).unwrap_or(body);
                    contract::fix_content_length(&mut parts.headers, body.len());
                }
            }
        }
        drop(json);

        // upstream
        let upstream_started = Instant::now();
        let exchange = self.exchange(parts, body, conn).await;
        trace.upstream_time = upstream_started.elapsed();
        self.metrics.upstream(trace.upstream_time);
        // On failure nothing is saved and no dedupe record is written, so the
        // platform's redelivery runs the bot again; the turn is released on
        // return.
        let (mut resp_parts, mut resp_body) = exchange?;

        // capture
        let mut change =
            contract::capture_headers(&resp_parts.headers, self.settings.max_state_bytes);
        if body_mode {
            let (new_body, from_body) = contract::capture_body(
                &resp_body,
                &self.settings.body_field,
                self.settings.max_state_bytes,
            );
            if let Some(new_body) = new_body {
                resp_body = new_body;
                contract::fix_content_length(&mut resp_parts.headers, resp_body.len());
            }
            change = merge_changes(change, from_body);
        }
        contract::strip_reserved(&mut resp_parts.headers);
        let change = match change {
            Ok(change) => change,
            Err(e) => {
                self.metrics.save(SaveResult::Rejected);
                warn!(key = %conv.display(self.settings.reveal_ids), reason = %e, "snapshot not stored: the previous one stays");
                StateChange::Keep
            }
        };

        // save
        match (&mut turn, &loaded) {
            (Some(turn), Some(loaded)) if resp_parts.status.as_u16() < 500 => {
                let dedupe = dedupe_id.map(|id| {
                    (
                        id,
                        RecordedResponse {
                            status: resp_parts.status,
                            headers: resp_parts
                                .headers
                                .iter()
                                .map(|(n, v)| (n.clone(), v.clone()))
                                .collect(),
                            body: resp_body.clone(),
                        },
                    )
                });
                let saved = self
                    .save(&conv, turn.fence(), loaded.version, change, dedupe, trace)
                    .await;
                if !matches!(saved, Saved::Failed(_)) {
                    // The commit script released the turn with the write.
                    turn.mark_released();
                }
                match saved {
                    Saved::Committed => {}
                    Saved::Stale => {
                        // Someone else moved the conversation on: this update
                        // is not in the stored state, so ask the platform to
                        // deliver it again.
                        return Err(Reject::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            Outcome::Conflict,
                            "the conversation moved on while the bot worked; redeliver",
                        ));
                    }
                    Saved::Failed(StateChange::Keep) => {
                        // Nothing to lose: the snapshot was to stay as it is.
                    }
                    Saved::Failed(change) => {
                        // Never acknowledge a snapshot that is nowhere durable:
                        // keep it in the spool, or have the update redelivered.
                        if !self.spool_degraded(&conv, change).await {
                            return Err(Reject::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                Outcome::Unavailable,
                                "the snapshot could not be stored; redeliver",
                            ));
                        }
                        trace.outcome = Outcome::Degraded;
                    }
                }
            }
            (None, _) | (_, None) => {
                trace.outcome = Outcome::Degraded;
                // Passthrough trades durability for availability: what
                // cannot be spooled is lost, and said so.
                if resp_parts.status.as_u16() < 500 && !self.spool_degraded(&conv, change).await {
                    warn!(key = %conv.display(self.settings.reveal_ids), "degraded: snapshot not stored");
                }
            }
            _ => {} // bot 5xx: passed through, nothing saved
        }
        drop(turn);

        Ok(Response::from_parts(
            resp_parts,
            Either::Left(Full::new(resp_body)),
        ))
    }

    /// Buffers a matched route's body within the size and time limits.
    async fn read_body(&self, parts: &Parts, body: Incoming) -> Result<Bytes, Reject> {
        let max = self.settings.max_body_bytes;
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            Reject::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Outcome::TooLarge,
                format!("body over server.max_body_bytes = {max}"),
            )
        };
        if declared.is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let limited = Limited::new(body, max as usize);
        match tokio::time::timeout(self.settings.body_timeout, limited.collect()).await {
            Err(_) => Err(Reject::new(
                StatusCode::REQUEST_TIMEOUT,
                Outcome::SlowClient,
                "body not received within server.body_timeout",
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(e)) => Err(Reject::new(
                StatusCode::BAD_REQUEST,
                Outcome::BadRequest,
                format!("cannot read body: {e}"),
            )),
        }
    }

    /// Reads the snapshot and dedupe record. `Ok(None)` means degraded.
    async fn load(
        &self,
        conv: &ConvKey,
        dedupe_id: Option<&str>,
        trace: &mut Trace,
    ) -> Result<Option<Loaded>, Reject> {
        let started = Instant::now();
        let result = self.store.load(conv, dedupe_id).await;
        let took = started.elapsed();
        trace.store_time += took;
        self.metrics.store(StoreOp::Load, took);
        match result {
            Ok(loaded) => Ok(Some(self.loaded(conv, loaded, trace))),
            Err(e) => {
                self.metrics.set_store_up(false);
                self.metrics.load(LoadResult::Error);
                self.store_unavailable(conv, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Accounts for a record read (by `load` or along with the turn).
    fn loaded(&self, conv: &ConvKey, loaded: Loaded, trace: &mut Trace) -> Loaded {
        self.metrics.set_store_up(true);
        self.metrics.load(if loaded.state.is_some() {
            LoadResult::Hit
        } else {
            LoadResult::Miss
        });
        trace.version = Some(loaded.version);
        if let Some(spool) = &self.spool {
            spool.saw(conv, loaded.version);
        }
        loaded
    }

    /// Applies `store.on_unavailable`: `Err` rejects, `Ok` degrades.
    fn store_unavailable(&self, conv: &ConvKey, reason: &str) -> Result<(), Reject> {
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

    /// The atomic end-of-turn write: version check, snapshot, TTL, dedupe.
    async fn save(
        &self,
        conv: &ConvKey,
        fence: u64,
        based_on: u64,
        change: StateChange,
        dedupe: Option<(String, RecordedResponse)>,
        trace: &mut Trace,
    ) -> Saved {
        let stores_snapshot = change != StateChange::Keep;
        let commit = Commit {
            expected_version: Some(based_on),
            fence,
            change: change.clone(),
            dedupe,
            ends_turn: true,
        };
        let started = Instant::now();
        let result = self.store.commit(conv, commit).await;
        let took = started.elapsed();
        trace.store_time += took;
        self.metrics.store(StoreOp::Commit, took);
        let shown = conv.display(self.settings.reveal_ids);
        match result {
            Ok(CommitOutcome::Committed { version }) => {
                self.metrics.set_store_up(true);
                if stores_snapshot {
                    self.metrics.save(SaveResult::Ok);
                }
                if let Some(spool) = &self.spool {
                    spool.saw(conv, version);
                }
                trace.version = Some(version);
                Saved::Committed
            }
            Ok(CommitOutcome::Conflict { current }) => {
                self.metrics.conflict();
                warn!(key = %shown, based_on, current, "commit refused: the conversation moved on; the newer snapshot stays");
                Saved::Stale
            }
            Err(e) => {
                self.metrics.set_store_up(false);
                self.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "commit failed");
                Saved::Failed(change)
            }
        }
    }

    /// Keeps what the bot reported while the store was out, for write-back.
    /// True when nothing needs keeping or it is safely in the spool.
    async fn spool_degraded(&self, conv: &ConvKey, change: StateChange) -> bool {
        if change == StateChange::Keep {
            return true;
        }
        let Some(spool) = self.spool.clone() else {
            return false;
        };
        let key = conv.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let r = spool.push(&key, &change);
            (r, spool.depth())
        })
        .await;
        let shown = conv.display(self.settings.reveal_ids);
        match pushed {
            Ok((Ok(true), depth)) => {
                self.metrics.set_spool_depth(depth);
                info!(key = %shown, depth, "snapshot spooled until the store returns");
                true
            }
            Ok((Ok(false), depth)) => {
                self.metrics.save(SaveResult::Error);
                warn!(key = %shown, depth, "spool full (store.spool_max): snapshot dropped");
                false
            }
            Ok((Err(e), _)) => {
                self.metrics.save(SaveResult::Error);
                warn!(key = %shown, error = %e, "spool write failed: snapshot dropped");
                false
            }
            Err(e) => {
                warn!(key = %shown, error = %e, "spool task failed");
                false
            }
        }
    }

    /// Sends a buffered request to the bot and buffers its answer, all
    /// within `upstream.timeout`.
    async fn exchange(
        &self,
        mut parts: Parts,
        body: Bytes,
        conn: ConnInfo,
    ) -> Result<(http::response::Parts, Bytes), Reject> {
        forward_headers(&mut parts.headers, conn.peer.ip(), conn.tls);
        parts.uri = self
            .upstream
            .target
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| {
                Reject::new(StatusCode::BAD_REQUEST, Outcome::BadRequest, e.to_string())
            })?;
        let req = Request::from_parts(parts, Either::Left(Full::new(body)));
        let max = self.upstream.max_response_bytes;
        let work = async {
            let resp = self.upstream.send(req).await?;
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let bytes = Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::TooLarge
                    } else {
                        UpstreamError::Failed(e.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, UpstreamError>((parts, bytes))
        };
        match tokio::time::timeout(self.upstream.timeout, work).await {
            Err(_) => Err(upstream_reject(UpstreamError::Timeout(
                self.upstream.timeout,
            ))),
            Ok(Err(e)) => Err(upstream_reject(e)),
            Ok(Ok(done)) => Ok(done),
        }
    }

    /// Forwards without state: unmatched paths (streamed both ways) and
    /// keyless requests on matched routes.
    pub async fn passthrough(
        &self,
        mut parts: Parts,
        body: Body,
        conn: ConnInfo,
    ) -> Response<Body> {
        forward_headers(&mut parts.headers, conn.peer.ip(), conn.tls);
        parts.uri = match self.upstream.target.uri_for(parts.uri.path_and_query()) {
            Ok(uri) => uri,
            Err(e) => {
                return error_response(&Reject::new(
                    StatusCode::BAD_REQUEST,
                    Outcome::BadRequest,
                    e.to_string(),
                ))
            }
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.upstream.timeout,
            self.upstream.send(Request::from_parts(parts, body)),
        )
        .await;
        self.metrics.upstream(started.elapsed());
        match result {
            Err(_) => error_response(&upstream_reject(UpstreamError::Timeout(
                self.upstream.timeout,
            ))),
            Ok(Err(e)) => error_response(&upstream_reject(e)),
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                contract::strip_reserved(&mut parts.headers);
                Response::from_parts(parts, Either::Right(body))
            }
        }
    }
}

/// Parses the body as JSON when something needs it. Malformed JSON is a
/// 400 only when a key source depends on it; body mode alone forwards it.
fn parse_json(body: &[u8], wanted: bool, required: bool) -> Result<Option<Value>, Reject> {
    if !wanted || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(Some(v)),
        Err(e) if required => Err(Reject::new(
            StatusCode::BAD_REQUEST,
            Outcome::BadRequest,
            format!("malformed JSON body: {e}"),
        )),
        Err(_) => Ok(None),
    }
}

/// Body mode: a clear from either place wins; otherwise the body field's
/// state wins over the header's.
fn merge_changes(
    header: Result<StateChange, CaptureError>,
    body: Result<StateChange, CaptureError>,
) -> Result<StateChange, CaptureError> {
    match (header, body) {
        (Ok(StateChange::Clear), _) | (_, Ok(StateChange::Clear)) => Ok(StateChange::Clear),
        (h, Ok(StateChange::Keep)) => h,
        (_, b) => b,
    }
}

fn upstream_reject(e: UpstreamError) -> Reject {
    match e {
        UpstreamError::Timeout(_) => Reject::new(
            StatusCode::GATEWAY_TIMEOUT,
            Outcome::UpstreamTimeout,
            e.to_string(),
        ),
        _ => Reject::new(
            StatusCode::BAD_GATEWAY,
            Outcome::UpstreamError,
            e.to_string(),
        ),
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

/// statehold's own answers: a small JSON body naming the reason.
fn error_response(reject: &Reject) -> Response<Body> {
    let body = serde_json::json!({
        "error": reject.outcome.as_str(),
        "message": reject.reason,
    })
    .to_string();
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = reject.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if reject.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}
