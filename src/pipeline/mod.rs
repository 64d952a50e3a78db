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
//! 7. **turn**      wait for the conversation's turn ([`crate::coord`]); on
//!    Redis the same round trip also performs step 8 when the turn is free
//! 8. **load + dedupe**  one store read: snapshot, sliding-TTL refresh and the
//!    dedupe record. A redelivery with the same body is answered from the
//!    record; a different body under a known dedupe id gets 409.
//! 9. **inject**    snapshot into the request ([`contract::inject_headers`] /
//!    [`body::set_member`]) and `X-Statehold-Verified`
//! 10. **upstream** the bot, asked for an uncompressed answer ([`crate::upstream`])
//! 11. **capture**  the bot's reported snapshot, and **strip** every trace of
//!     it from the answer; an answer that cannot be stripped is a 502
//! 12. **save**     one atomic commit: version and fence check, snapshot, sliding
//!     TTL refresh, dedupe record (2xx answers only), and the turn's release;
//!     a snapshot that cannot be committed is spooled or answered 503
//!
//! Where is the TTL refreshed? In the store, by every load (step 8) and every
//! commit (step 12): `store/embedded.rs` and `store/redis/*.lua`.

pub mod body;
pub mod budget;
pub mod reject;
pub mod route;
mod state;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{Config, ContractMode, OnMissingKey, OnUnavailable, Unmatched, VerifyKind};
use crate::contract::{self, BodyReport, CaptureError, Injection, LoadStatus, StateChange};
use crate::coord::{Turn, TurnError, Turns};
use crate::framing::Flaw;
use crate::key::{self, ConvKey, RequestParts};
use crate::metrics::{Metrics, SaveResult};
pub use crate::outcome::Outcome;
use crate::spool::Spool;
use crate::store::{Loaded, RecordedResponse, Store};
use crate::upstream::{forward_headers, strip_hop_by_hop, Upstream, UpstreamError};
use crate::verify::{HeadParts, HeadVerdict, VerifyError};
pub use reject::Reject;
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
    on_unavailable: OnUnavailable,
    lock_wait: Duration,
    mode: ContractMode,
    body_field: String,
    reveal_ids: bool,
    unmatched: Unmatched,
    trusted_proxies: Vec<ipnet::IpNet>,
}

pub struct Pipeline<S, T> {
    /// Degraded-mode spool (passthrough on a shared store), if any.
    spool: Option<Arc<Spool>>,
    routes: Routes,
    store: S,
    turns: T,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    budget: Arc<budget::Budget>,
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

/// How the end-of-turn write went.
enum Saved {
    Committed,
    /// Refused: the conversation moved on (version or fence).
    Stale,
    /// The store failed; the change is handed back to be kept elsewhere.
    Failed(StateChange),
}

/// A dedupe id with the digest of the body it came with.
type Dedupe = Option<(String, [u8; 32])>;

/// A keyed request: its conversation and dedupe id.
struct Keyed {
    conv: ConvKey,
    dedupe: Dedupe,
}

/// The turn and the record read with it; `None`s when the store is out.
struct Held<U> {
    turn: Option<U>,
    loaded: Option<Loaded>,
}

/// The bot's answer, buffered.
struct Answer {
    parts: http::response::Parts,
    body: Bytes,
}

impl Answer {
    fn into_response(self) -> Response<Body> {
        Response::from_parts(self.parts, Either::Left(Full::new(self.body)))
    }
}

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
            budget: budget::Budget::new(config.server.max_buffered_bytes, Arc::clone(&metrics)),
            metrics,
            settings: Settings {
                max_body_bytes: config.server.max_body_bytes,
                body_timeout: config.server.body_timeout,
                max_state_bytes: config.store.max_state_bytes as usize,
                on_unavailable: config.store.on_unavailable,
                lock_wait: config.store.lock_wait,
                mode: config.contract.mode,
                body_field: config.contract.body_field.clone(),
                reveal_ids: config.log.reveal_ids,
                unmatched: config.server.unmatched,
                trusted_proxies: config.server.trusted_proxies.clone(),
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
        // strip: before anything else, a client can never inject state.
        contract::strip_reserved(&mut parts.headers);
        // normalize: routes match what the bot's framework will route on.
        if let Err(e) = normalize_uri(&mut parts.uri) {
            let reject = Reject::bad_request("the request path cannot be normalized").detail(e);
            return self.unrouted(reject, started);
        }
        let Some(route) = self.routes.find(parts.uri.path()) else {
            return self.unmatched(parts, body, conn, started).await;
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
                trace.reason = Some(reject.log_text());
                reject.response()
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

    /// A request whose head [`crate::framing`] flagged (both framing
    /// headers, bare LF line ends): 400, never forwarded, connection closed.
    pub fn reject_ambiguous_framing(&self, flaw: Flaw) -> Response<Body> {
        let mut resp = self.unrouted(Reject::bad_request(flaw.reason()), Instant::now());
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// An answer given before any route was chosen: counted under the
    /// `unmatched` label and logged without the path (it may carry ids).
    fn unrouted(&self, reject: Reject, started: Instant) -> Response<Body> {
        let status = reject.status.as_u16();
        self.metrics.request(
            self.metrics.unmatched(),
            reject.outcome,
            status,
            started.elapsed(),
        );
        warn!(outcome = reject.outcome.as_str(), status, reason = %reject.log_text(), "request rejected");
        reject.response()
    }

    /// Paths no route matches: streamed to the bot, or 404.
    async fn unmatched(
        &self,
        parts: Parts,
        body: Incoming,
        conn: ConnInfo,
        started: Instant,
    ) -> Response<Body> {
        if self.settings.unmatched == Unmatched::Reject {
            let reject = Reject::new(
                StatusCode::NOT_FOUND,
                Outcome::NotFound,
                "no route for this path",
            );
            return self.unrouted(reject, started);
        }
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
            let body = self.inject(&mut parts, body, json.as_mut(), None, verified);
            drop(json);
            return self.keyless(route, parts, body, conn, trace).await;
        };
        let conv = keyed.conv.clone();
        trace.key = Some(conv.clone());
        // turn + load + dedupe
        let dedupe_id = keyed.dedupe.as_ref().map(|(id, _)| id.as_str());
        let held = self.turn_and_load(&conv, dedupe_id, trace).await?;
        let loaded = &held.loaded;
        if let Some(recorded) = loaded.as_ref().and_then(|l| l.duplicate.clone()) {
            let digest = keyed.dedupe.as_ref().map(|(_, d)| d);
            return self.answer_duplicate(&conv, recorded, digest, trace);
        }
        // inject
        let status = match loaded {
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
        let body = self.inject(&mut parts, body, json.as_mut(), Some(&injection), verified);
        drop(json);
        // upstream
        let mut answer = self.timed_exchange(parts, body, conn, trace).await?;
        // capture + strip
        let change = self.capture(&mut answer, Some(&conv))?;
        // save
        self.finish_turn(held, keyed, change, &answer, trace)
            .await?;
        Ok(answer.into_response())
    }

    fn body_mode(&self) -> bool {
        self.settings.mode == ContractMode::Body
    }

    fn verify_head(&self, route: &Route, parts: &Parts) -> Result<Option<HeadVerdict>, Reject> {
        let Some(verifier) = &route.verifier else {
            return Ok(None);
        };
        let now = crate::store::now_ms() as i64 / 1000;
        verifier
            .check_head(&head_parts(route, parts), now)
            .map(Some)
            .map_err(unverified)
    }

    fn verify_body(&self, route: &Route, parts: &Parts, body: &[u8]) -> Result<(), Reject> {
        match &route.verifier {
            Some(v) => v
                .check_body(&head_parts(route, parts), body)
                .map_err(unverified),
            None => Ok(()),
        }
    }

    /// The conversation key and dedupe id; `None` when the request has no key.
    fn keys(
        &self,
        route: &Route,
        parts: &Parts,
        body: &Bytes,
        json: Option<&Value>,
    ) -> Result<Option<Keyed>, Reject> {
        let req = RequestParts {
            headers: &parts.headers,
            query: parts.uri.query(),
            body,
            json,
        };
        let ambiguous = |e: key::KeyError| {
            Reject::bad_request("ambiguous or unusable conversation key").detail(e)
        };
        let Some(id) = key::first_present(&route.key, &req).map_err(ambiguous)? else {
            return Ok(None);
        };
        let conv = ConvKey::new(&route.namespace, &id);
        let dedupe = key::first_present(&route.dedupe, &req)
            .map_err(ambiguous)?
            .map(|d| (d.into_owned(), Sha256::digest(body).into()));
        Ok(Some(Keyed { conv, dedupe }))
    }

    /// A route request without a key (already stripped of any client
    /// member by `inject`): refused, or forwarded without state.
    async fn keyless(
        &self,
        route: &Route,
        parts: Parts,
        body: Bytes,
        conn: ConnInfo,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Reject> {
        if route.on_missing_key == OnMissingKey::Reject {
            return Err(Reject::bad_request("no conversation key in the request"));
        }
        trace.outcome = Outcome::NoKey;
        let mut answer = self.timed_exchange(parts, body, conn, trace).await?;
        if self.capture(&mut answer, None)? != StateChange::Keep {
            self.metrics.save(SaveResult::Rejected);
            warn!(route = %route.path, "state reported for a request without a conversation key: not stored");
        }
        Ok(answer.into_response())
    }

    /// Waits for the turn and reads the record. `(None, _)` or `(_, None)`:
    /// the store is out and the route degrades.
    async fn turn_and_load(
        &self,
        conv: &ConvKey,
        dedupe_id: Option<&str>,
        trace: &mut Trace,
    ) -> Result<Held<T::Turn>, Reject> {
        let wait_started = Instant::now();
        let waiting = self.metrics.turn_waiting();
        let acquired = self
            .turns
            .acquire_for_request(conv, self.settings.lock_wait, dedupe_id)
            .await;
        drop(waiting);
        let mut turn = match acquired {
            Ok(turn) => turn,
            Err(TurnError::WaitExceeded(_)) => {
                return Err(Reject::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Outcome::Busy,
                    "conversation busy: an earlier request is still with the bot",
                ))
            }
            Err(TurnError::Unavailable(e)) => {
                self.metrics.set_store_up(false);
                self.store_unavailable(conv, &e)?;
                return Ok(Held {
                    turn: None,
                    loaded: None,
                });
            }
        };
        self.metrics.lock_wait(wait_started.elapsed());
        // A shared backend may have read the record along with the turn.
        let loaded = match turn.take_loaded() {
            Some(loaded) => Some(self.loaded(conv, loaded, trace)),
            None => self.load(conv, dedupe_id, trace).await?,
        };
        Ok(Held {
            turn: Some(turn),
            loaded,
        })
    }

    /// A known dedupe id: the recorded answer if the body is the one it
    /// answered, else 409 (the record is never handed to a different request).
    fn answer_duplicate(
        &self,
        conv: &ConvKey,
        recorded: RecordedResponse,
        digest: Option<&[u8; 32]>,
        trace: &mut Trace,
    ) -> Result<Response<Body>, Reject> {
        if digest.is_some_and(|d| !recorded.answers(d)) {
            self.metrics.dedupe_mismatch();
            warn!(key = %conv.display(self.settings.reveal_ids), "known dedupe id with a different body: refused, the record stays");
            return Err(Reject::new(
                StatusCode::CONFLICT,
                Outcome::DedupeMismatch,
                "this dedupe id was already used by a different request",
            ));
        }
        self.metrics.dedupe_hit();
        trace.outcome = Outcome::Duplicate;
        Ok(recorded_response(recorded))
    }

    /// Puts the snapshot and the verification kind into the request; in body
    /// mode the client's member is replaced or removed. Returns the body.
    fn inject(
        &self,
        parts: &mut Parts,
        body: Bytes,
        json: Option<&mut Value>,
        injection: Option<&Injection<'_>>,
        verified: Option<VerifyKind>,
    ) -> Bytes {
        let (body, state_in_body) = if self.body_mode() {
            body::set_member(json, body, &self.settings.body_field, injection)
        } else {
            (body, false)
        };
        if let Some(inj) = injection {
            contract::inject_headers(&mut parts.headers, inj, !state_in_body);
        }
        if let Some(kind) = verified {
            parts.headers.insert(
                HeaderName::from_static(contract::HEADER_VERIFIED),
                HeaderValue::from_static(kind.as_str()),
            );
        }
        contract::fix_content_length(&mut parts.headers, body.len());
        body
    }

    /// Reads the bot's report and strips it from the answer. A body-mode
    /// answer that cannot be stripped (compressed, or JSON that mentions the
    /// member but does not parse) never leaves: 502.
    fn capture(&self, answer: &mut Answer, conv: Option<&ConvKey>) -> Result<StateChange, Reject> {
        let Answer { parts, body } = answer;
        let shown = conv.map_or_else(
            || "-".to_string(),
            |k| k.display(self.settings.reveal_ids).to_string(),
        );
        let max = self.settings.max_state_bytes;
        let mut change = contract::capture_headers(&parts.headers, max);
        if self.body_mode() {
            let encoded = parts
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
            let report = if encoded {
                BodyReport::Unreadable
            } else {
                contract::capture_body(body, &self.settings.body_field, max)
            };
            match report {
                BodyReport::Absent => {}
                BodyReport::Found(new_body, from_body) => {
                    *body = new_body;
                    contract::fix_content_length(&mut parts.headers, body.len());
                    change = merge_changes(change, from_body);
                }
                BodyReport::Unreadable => {
                    self.metrics.save(SaveResult::Rejected);
                    warn!(key = %shown, compressed = encoded, "the bot's answer cannot be stripped of its state report: withheld (502), nothing stored");
                    return Err(Reject::bad_gateway("the bot's answer could not be read"));
                }
            }
        }
        contract::strip_reserved(&mut parts.headers);
        match change {
            Ok(change) => Ok(change),
            Err(e) => {
                self.metrics.save(SaveResult::Rejected);
                warn!(key = %shown, reason = %e, "snapshot not stored: the previous one stays");
                Ok(StateChange::Keep)
            }
        }
    }

    /// The save stage: commit (with the dedupe record of a 2xx answer) and
    /// release the turn, or keep the change safe while the store is out.
    async fn finish_turn(
        &self,
        held: Held<T::Turn>,
        keyed: Keyed,
        change: StateChange,
        answer: &Answer,
        trace: &mut Trace,
    ) -> Result<(), Reject> {
        let Keyed { conv, dedupe } = keyed;
        let conv = &conv;
        let (resp, resp_body) = (&answer.parts, &answer.body);
        let status = resp.status;
        let (turn, loaded) = match (held.turn, held.loaded) {
            (Some(turn), Some(loaded)) => (turn, loaded),
            _ => {
                trace.outcome = Outcome::Degraded;
                // Passthrough trades durability for availability: what
                // cannot be spooled is lost, and said so.
                if status.as_u16() < 500 && !self.spool_degraded(conv, change).await {
                    warn!(key = %conv.display(self.settings.reveal_ids), "degraded: snapshot not stored");
                }
                return Ok(());
            }
        };
        if status.as_u16() >= 500 {
            return Ok(()); // bot 5xx: passed through, nothing saved
        }
        // Only a success is worth replaying: a recorded 429 or 408 would
        // answer every redelivery for the whole dedupe window.
        let dedupe = dedupe.filter(|_| status.is_success()).map(|(id, digest)| {
            let headers = resp
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            let body = resp_body.clone();
            (
                id,
                RecordedResponse {
                    status,
                    headers,
                    body,
                    request_digest: Some(digest),
                },
            )
        });
        match self
            .save(conv, turn, loaded.version, change, dedupe, trace)
            .await
        {
            Saved::Committed | Saved::Failed(StateChange::Keep) => Ok(()),
            // Someone else moved the conversation on: this update is not in
            // the stored state, so ask the platform to deliver it again.
            Saved::Stale => Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Conflict,
                "the conversation moved on while the bot worked; redeliver",
            )),
            // Never acknowledge a snapshot that is nowhere durable: keep it
            // in the spool, or have the update redelivered.
            Saved::Failed(change) => {
                if !self.spool_degraded(conv, change).await {
                    return Err(Reject::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Outcome::Unavailable,
                        "the snapshot could not be stored; redeliver",
                    ));
                }
                trace.outcome = Outcome::Degraded;
                Ok(())
            }
        }
    }

    fn trusted(&self, peer: std::net::IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    }

    /// Forwarding headers and the bot's URI.
    fn forward(&self, parts: &mut Parts, conn: ConnInfo) -> Result<(), Reject> {
        let peer = conn.peer.ip();
        forward_headers(&mut parts.headers, peer, conn.tls, self.trusted(peer));
        // statehold speaks HTTP/1.1 to the bot, whatever the client spoke.
        parts.version = Version::HTTP_11;
        parts.uri = self
            .upstream
            .target
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| Reject::bad_request("the request path cannot be forwarded").detail(e))?;
        Ok(())
    }

    async fn timed_exchange(
        &self,
        parts: Parts,
        body: Bytes,
        conn: ConnInfo,
        trace: &mut Trace,
    ) -> Result<Answer, Reject> {
        let started = Instant::now();
        let exchange = self.exchange(parts, body, conn).await;
        trace.upstream_time = started.elapsed();
        self.metrics.upstream(trace.upstream_time);
        // On failure nothing is saved and no dedupe record is written, so
        // the platform's redelivery runs the bot again; the turn is
        // released on return.
        exchange
    }

    /// Sends a buffered request to the bot and buffers its answer, all
    /// within `upstream.timeout`.
    async fn exchange(
        &self,
        mut parts: Parts,
        body: Bytes,
        conn: ConnInfo,
    ) -> Result<Answer, Reject> {
        self.forward(&mut parts, conn)?;
        // The answer is read (body mode) and recorded: ask for it plain.
        parts
            .headers
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let req = Request::from_parts(parts, Either::Left(Full::new(body)));
        let max = self.upstream.max_response_bytes;
        let work = async {
            let resp = self.upstream.send(req).await?;
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            // A proxy speaks its own version (RFC 9110 §6.2), not the bot's.
            parts.version = Version::HTTP_11;
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
            Ok::<_, UpstreamError>(Answer { parts, body: bytes })
        };
        match tokio::time::timeout(self.upstream.timeout, work).await {
            Err(_) => Err(upstream_reject(UpstreamError::Timeout(
                self.upstream.timeout,
            ))),
            Ok(Err(e)) => Err(upstream_reject(e)),
            Ok(Ok(done)) => Ok(done),
        }
    }

    /// Forwards without state, streamed both ways: unmatched paths and
    /// Meta's handshake.
    pub async fn passthrough(
        &self,
        mut parts: Parts,
        body: Body,
        conn: ConnInfo,
    ) -> Response<Body> {
        if let Err(reject) = self.forward(&mut parts, conn) {
            return reject.response();
        }
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.upstream.timeout,
            self.upstream.send(Request::from_parts(parts, body)),
        )
        .await;
        self.metrics.upstream(started.elapsed());
        let reject = match result {
            Err(_) => upstream_reject(UpstreamError::Timeout(self.upstream.timeout)),
            Ok(Err(e)) => upstream_reject(e),
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                contract::strip_reserved(&mut parts.headers);
                parts.version = Version::HTTP_11;
                return Response::from_parts(parts, Either::Right(body));
            }
        };
        warn!(reason = %reject.log_text(), "bot failed on a forwarded request");
        reject.response()
    }
}

/// Rewrites `uri` to its normalized origin form when normalizing changes it.
fn normalize_uri(uri: &mut Uri) -> Result<(), crate::path::PathError> {
    let path = match crate::path::normalize(uri.path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    // Normalized output is a valid path: only unreserved characters were
    // decoded.
    let pq = PathAndQuery::try_from(pq).map_err(|_| crate::path::PathError::BadEscape)?;
    *uri = Uri::from(pq);
    Ok(())
}

fn head_parts<'a>(route: &Route, parts: &'a Parts) -> HeadParts<'a> {
    HeadParts {
        method: &parts.method,
        headers: &parts.headers,
        query: parts.uri.query(),
        path_suffix: route.suffix(parts.uri.path()),
    }
}

fn unverified(e: VerifyError) -> Reject {
    let status = match e {
        VerifyError::HandshakeToken => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    Reject::new(status, Outcome::Unverified, "webhook verification failed").detail(e)
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

/// Fixed words for the client; the error chain goes to the log only.
fn upstream_reject(e: UpstreamError) -> Reject {
    let (status, outcome, reason) = match e {
        UpstreamError::Timeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            Outcome::UpstreamTimeout,
            "the bot did not answer in time",
        ),
        UpstreamError::Connect(_) => (
            StatusCode::BAD_GATEWAY,
            Outcome::UpstreamError,
            "the bot is unreachable",
        ),
        UpstreamError::TooLarge => (
            StatusCode::BAD_GATEWAY,
            Outcome::UpstreamError,
            "the bot's answer is too large",
        ),
        UpstreamError::Failed(_) => (
            StatusCode::BAD_GATEWAY,
            Outcome::UpstreamError,
            "the bot's connection failed",
        ),
    };
    Reject::new(status, outcome, reason).detail(e)
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
