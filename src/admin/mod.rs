//! The admin listener: `/healthz`, `/readyz`, `/metrics`, the state API
//! (`state.rs`: snapshots, history, rollback), the maintenance jobs
//! (`/v1/rekey`, `/v1/migrate`), `/v1/keys`, the audit trail (`audit.rs`),
//! links (`links.rs`), export/import (`export.rs`) and deferred turns' late
//! reports (`turns.rs`: `POST /v1/turns/<token>`, whose credential is the
//! turn token); all but the first three and the late reports take the
//! bearer token. The operator's console is served at `/ui/` (`console.rs`),
//! with its own calls under `/v1/console/` (`console_api.rs`).
//!
//! State API writes take the conversation's turn like any request, so an
//! operator's PUT never interleaves with a request in flight.

mod audit;
mod console;
mod console_api;
mod export;
mod import_check;
mod links;
mod state;
mod turns;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::backend::fallback::PlaintextFallback;
use crate::backend::keymarks::MarksError;
use crate::backend::{Backend, Lifecycle};
use crate::config::Secret;
use crate::maintenance::{Job, Runner};
use crate::pipeline::Pipeline;
use crate::privacy::marks::KeyMismatch;
use crate::services::Services;

/// The admin API over the shared services (every backend is served
/// private at rest, with the plaintext fallback: `PlaintextFallback`).
pub struct Admin<B: Backend> {
    svc: Arc<Services<PlaintextFallback<B>>>,
    /// Only for deferred turns' late reports, which finish a request.
    late_reports: Arc<Pipeline<PlaintextFallback<B>>>,
    rekey: Arc<Runner>,
    migrate: Arc<Runner>,
    token: Option<Secret>,
    /// Set first on shutdown, so `/readyz` turns 503 before the listener stops.
    pub draining: AtomicBool,
    max_state_bytes: usize,
    lock_wait: Duration,
    /// Each namespace's record lifetime (an import never outlives it).
    lifetimes: crate::backend::Lifetimes,
}

type AdminResponse = Response<Full<Bytes>>;

/// Admin connections served at once (operators, probes, scrapers and bots'
/// late reports); more wait in the backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// The longest one admin request may take, its body included (an import
/// page, a late report held back by a slow client).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the admin listener's requests in flight at shutdown (a late
/// report being saved, a scrape) may take to be answered.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);

impl<B: Backend> Admin<B> {
    pub fn new(
        late_reports: Arc<Pipeline<PlaintextFallback<B>>>,
        token: Option<Secret>,
        max_state_bytes: usize,
        lock_wait: Duration,
    ) -> Admin<B> {
        Admin {
            svc: Arc::clone(late_reports.services()),
            late_reports,
            rekey: Arc::default(),
            migrate: Arc::default(),
            token,
            draining: AtomicBool::new(false),
            max_state_bytes,
            lock_wait,
            lifetimes: crate::backend::Lifetimes::uniform(Duration::MAX),
        }
    }

    /// The configured record lifetimes (`store.ttl`, `route.ttl`).
    pub fn with_lifetimes(mut self, lifetimes: crate::backend::Lifetimes) -> Admin<B> {
        self.lifetimes = lifetimes;
        self
    }

    /// Serves until `shutdown` resolves. At most [`MAX_CONNECTIONS`] at
    /// once: more wait in the listen backlog (holding no descriptor of
    /// ours), so idle admin clients can never take the descriptors the
    /// webhook listener needs; each connection also gets
    /// `REQUEST_TIMEOUT` per request and the head timeout.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        // At shutdown, requests in flight (a late report being saved) are
        // answered before the process exits; idle connections close.
        let graceful = GracefulShutdown::new();
        loop {
            let slot = tokio::select! {
                _ = &mut shutdown => break,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admin = Arc::clone(&self);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req| {
                    let admin = Arc::clone(&admin);
                    async move {
                        let answer = tokio::time::timeout(REQUEST_TIMEOUT, admin.route(req)).await;
                        Ok::<_, Infallible>(answer.unwrap_or_else(|_| {
                            json_response(
                                StatusCode::REQUEST_TIMEOUT,
                                json!({"error": "the admin request took too long"}),
                            )
                        }))
                    }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn).await {
                    debug!(%peer, error = %e, "admin connection error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN_WITHIN, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(within = ?DRAIN_WITHIN, "admin requests still in flight at exit");
        }
    }

    async fn route(&self, req: Request<Incoming>) -> AdminResponse {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, p) if p == "/ui" || p.starts_with("/ui/") => {
                console::serve(p, self.token.is_some())
            }
            (&Method::GET, "/readyz") => self.readyz().await,
            (&Method::GET, "/metrics") => {
                let mut resp = text(StatusCode::OK, self.svc.metrics.render());
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            (_, p) if p.starts_with("/v1/state/") => self.state_api(req).await,
            (_, p) if p.starts_with("/v1/console/") => self.console_api(req).await,
            (&Method::POST, p) if p.starts_with("/v1/turns/") => {
                let token = p["/v1/turns/".len()..].to_string();
                self.turns_api(req, &token).await
            }
            (_, "/v1/rekey") => self.maintenance_api(req, false),
            (_, "/v1/migrate") => self.maintenance_api(req, true),
            (&Method::GET, "/v1/keys") => self.key_counts(req).await,
            (&Method::GET, "/v1/audit") => self.audit_api(req).await,
            (&Method::GET, p) if p.starts_with("/v1/links/") => self.links_api(req).await,
            (&Method::GET, "/v1/export") => self.export_api(req).await,
            (&Method::POST, "/v1/import") => self.import_api(req).await,
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }

    async fn readyz(&self) -> AdminResponse {
        if self.draining.load(Ordering::Relaxed) {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": "shutting down"}),
            );
        }
        let store = tokio::time::timeout(Duration::from_secs(2), self.svc.backend.ping()).await;
        let store_ok = matches!(store, Ok(Ok(())));
        self.svc.health.seen(store_ok);
        if store_ok {
            if let Err(reason) = self.keys_agree().await {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"ready": false, "reason": reason.to_string(), "store": "up"}),
                );
            }
        }
        let upstream_ok = self.svc.upstream.reachable().await;
        let up_down = |ok: bool| if ok { "up" } else { "down" };
        let (store, upstream) = (up_down(store_ok), up_down(upstream_ok));
        // With `on_unavailable = "passthrough"` the operator chose degraded
        // service over none: a store outage must not take every replica out
        // of its load balancer.
        let degraded = !store_ok && self.svc.health.passes_through_when_down();
        if upstream_ok && (store_ok || degraded) {
            return json_response(
                StatusCode::OK,
                json!({"ready": true, "degraded": degraded, "store": store, "upstream": upstream}),
            );
        }
        let reason = match (store_ok, upstream_ok) {
            (false, false) => "store and upstream unreachable",
            (false, true) => "store unreachable",
            _ => "upstream unreachable",
        };
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": reason, "store": store, "upstream": upstream}),
        )
    }

    /// The key marks, compared with the store's: a replica whose keys
    /// differ from the store's serves nothing useful (every load a miss).
    async fn keys_agree(&self) -> Result<(), KeyMismatch> {
        let check = self.svc.backend.private().check_key_marks(false);
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Err(MarksError::Mismatch(e))) => {
                warn!(error = %e, "not ready: this replica's keys are not the store's");
                Err(e)
            }
            // An outage is the ping's to report; marks unread are no mismatch.
            _ => Ok(()),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        let Some(given) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        let expected = token.expose().as_bytes();
        given.len() == expected.len() && bool::from(given.ct_eq(expected))
    }

    /// `None` when the request may use the token-protected API.
    fn refused(&self, req: &Request<Incoming>) -> Option<AdminResponse> {
        if self.token.is_none() {
            return Some(json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "state API disabled: set admin.token or admin.token_env"}),
            ));
        }
        if !self.authorized(req) {
            return Some(json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "bad or missing bearer token"}),
            ));
        }
        None
    }

    /// `POST /v1/rekey?rate=N` starts resealing, `POST
    /// /v1/migrate?rate=N[&dry_run=1]` moving plaintext keys (202; 409 while
    /// a run of that job is going; 400 migrating without `store.key_secret`);
    /// `GET` on either reports its progress.
    fn maintenance_api(&self, req: Request<Incoming>, migrate: bool) -> AdminResponse {
        let runner = if migrate { &self.migrate } else { &self.rekey };
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let progress = |status| json_response(status, json!(runner.progress()));
        let query = |name: &str| {
            let q = req.uri().query().unwrap_or("");
            q.split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        match *req.method() {
            Method::GET => progress(StatusCode::OK),
            Method::POST => {
                let rate = query("rate").and_then(|v| v.parse().ok()).unwrap_or(200);
                let job = if !migrate {
                    Job::Rekey
                } else if self.svc.backend.privacy().hashes_keys() {
                    let dry_run = matches!(query("dry_run").as_deref(), Some("1" | "true"));
                    Job::Migrate { dry_run }
                } else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "store.key_secret is not set: there are no hashed keys to migrate to"}),
                    );
                };
                if runner.start(Arc::clone(&self.svc), job, rate) {
                    progress(StatusCode::ACCEPTED)
                } else {
                    progress(StatusCode::CONFLICT)
                }
            }
            _ => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "GET or POST"}),
            ),
        }
    }

    /// `GET /v1/keys`: stored snapshots per sealing key (a full scan).
    async fn key_counts(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        match self.svc.backend.private().count_keys().await {
            Ok(counts) => json_response(StatusCode::OK, json!(counts)),
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("cannot count: {e}")}),
            ),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> AdminResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

/// 400 with the reason, as every admin refusal of bad input words it.
fn bad_request(why: &str) -> AdminResponse {
    json_response(StatusCode::BAD_REQUEST, json!({ "error": why }))
}

/// 503 with the store's error: an outage or a refusal, never bad input.
fn unavailable(e: &impl std::fmt::Display) -> AdminResponse {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": e.to_string()}),
    )
}

fn json_response(status: StatusCode, body: serde_json::Value) -> AdminResponse {
    let mut resp = text(status, body.to_string());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
