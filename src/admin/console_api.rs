//! The console's own calls (bearer token), beside the state API it also
//! uses: what the page shows of a conversation without its values, the
//! two calls that show values (each an audit event of kind `view`, since
//! snapshots hold personal data), and the recent conversations.
//!
//! - `GET /v1/console/conversation?key=K`: `{"key", "stored_key",
//!   "status", "version", "ttl_ms", "bytes", "member", "channels"}`;
//!   `status` is `stored`, `cleared`, `expired` (no record, and the trail
//!   says there was one) or `none`.
//! - `POST /v1/console/reveal?key=K`: `{"key", "version", "state"}`, sealed
//!   values opened for this answer only.
//! - `POST /v1/console/diff?key=K&version=V`: what changed from the kept
//!   version before `V` to `V`, member by member: `{"from", "to",
//!   "changes": [{"member", "before", "after"}]}` (`store.history`).
//! - `GET /v1/console/recent?limit=N`: the conversations of the newest
//!   audit events, each once, newest first: `[{"key", "route", "at",
//!   "kind", "version"}]` (empty with `[audit]` off).
//!
//! `K` is the key as the bot sees it in `X-Statehold-Key` (hashed here
//! with `store.key_secret`, so an operator never handles hashed names) or
//! a stored key as the trail and links name it.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tracing::info;

use super::state::key_param;
use super::{bad_request, json_response, unavailable, Admin, AdminResponse};
use crate::backend::audit::{AuditNote, AuditQuery};
use crate::backend::{Backend, Inspect, StoreError, Turns};
use crate::key::ConvKey;

/// Conversations listed as recent at most.
const MAX_RECENT: usize = 100;

impl<B: Backend> Admin<B> {
    pub(super) async fn console_api(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let query = req.uri().query().unwrap_or("");
        // One of each: a repeated or unknown parameter is ambiguous (which
        // one would a proxy in front of us have checked?), refused.
        let mut names: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').map_or(kv, |(name, _)| name))
            .collect();
        let given = names.len();
        names.sort_unstable();
        names.dedup();
        if names.len() != given
            || names
                .iter()
                .any(|n| !["key", "version", "limit"].contains(n))
        {
            return bad_request("each of key, version and limit at most once, and nothing else");
        }
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        let number = |name: &str| param(name).map(|v| v.parse::<u64>().map_err(|_| ()));
        let path = req.uri().path();
        if (req.method(), path) == (&Method::GET, "/v1/console/recent") {
            let limit = match number("limit") {
                None => 20,
                Some(Ok(n)) => (n as usize).clamp(1, MAX_RECENT),
                Some(Err(())) => return bad_request("limit is a whole number"),
            };
            return self.recent(limit).await;
        }
        let hashed = self.svc.backend.privacy().hashes_keys();
        let key = match param("key").map(|v| key_param(v, hashed)) {
            Some(Ok(key)) => key,
            Some(Err(why)) => return bad_request(why),
            None => return bad_request("give key=<namespace>:<id>, as in X-Statehold-Key"),
        };
        match (req.method(), path) {
            (&Method::GET, "/v1/console/conversation") => self.summary(&key).await,
            (&Method::POST, "/v1/console/reveal") => self.reveal(&key).await,
            (&Method::POST, "/v1/console/diff") => match number("version") {
                Some(Ok(v)) => self.diff(&key, v).await,
                _ => bad_request("give version=<a kept version>"),
            },
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "GET conversation or recent; POST reveal or diff"}),
            ),
        }
    }

    /// What the page shows before anything is revealed.
    async fn summary(&self, key: &ConvKey) -> AdminResponse {
        let backend = &self.svc.backend;
        let stored = backend.stored_name(key);
        let read = async {
            // The lifetime first: an admin read slides it, as a request does.
            let dumped = backend.dump(&stored).await?;
            let (loaded, links) = tokio::try_join!(backend.load(key), backend.links(key))?;
            let last_event = match loaded.version {
                0 => self.last_event(key).await?,
                _ => None,
            };
            Ok::<_, StoreError>((loaded, links, dumped, last_event))
        };
        let (loaded, links, dumped, last_event) = match read.await {
            Ok(found) => found,
            Err(e) => return unavailable(&e),
        };
        let status = match (&loaded.state, loaded.version, last_event) {
            (Some(_), ..) => "stored",
            (None, 0, Some(_)) => "expired",
            (None, 0, None) => "none",
            (None, ..) => "cleared",
        };
        json_response(
            StatusCode::OK,
            json!({
                "key": key.as_str(),
                "stored_key": stored.as_str(),
                "status": status,
                "version": loaded.version,
                "ttl_ms": dumped.map(|d| d.ttl_ms),
                "bytes": loaded.state.as_ref().map_or(0, |s| s.len()),
                "member": links.member.as_ref().map(ConvKey::as_str),
                "channels": links.channels.iter().map(ConvKey::as_str).collect::<Vec<_>>(),
            }),
        )
    }

    /// The trail's newest event of a conversation that has no record now,
    /// if it says the conversation had one (an expiry, or a change whose
    /// expiry the store has not noticed yet).
    async fn last_event(&self, key: &ConvKey) -> Result<Option<Value>, StoreError> {
        let query = AuditQuery {
            key: Some(key.clone()),
            since: None,
            limit: 1,
        };
        let newest = self.svc.backend.audit(&query).await?.into_iter().next();
        Ok(newest
            .map(|e| e.event)
            .filter(|e| e["kind"] == "expire" || e["to_version"].as_u64().unwrap_or(0) > 0))
    }

    async fn reveal(&self, key: &ConvKey) -> AdminResponse {
        let loaded = match self.svc.backend.load(key).await {
            Ok(loaded) => loaded,
            Err(e) => return unavailable(&e),
        };
        let Some(state) = loaded.state else {
            let why = match loaded.undecryptable {
                Some(_) => "the snapshot cannot be opened with the configured keys",
                None => "no snapshot stored",
            };
            return json_response(StatusCode::NOT_FOUND, json!({ "error": why }));
        };
        if let Err(e) = self.viewed(key, loaded.version, state.len()).await {
            return unavailable(&e);
        }
        let state: Value = serde_json::from_slice(&state).unwrap_or(Value::Null);
        json_response(
            StatusCode::OK,
            json!({"key": key.as_str(), "version": loaded.version, "state": state}),
        )
    }

    /// Version `to` against the kept version before it, member by member.
    async fn diff(&self, key: &ConvKey, to: u64) -> AdminResponse {
        let versions = match self.svc.backend.history(key).await {
            Ok(versions) => versions,
            Err(e) => return unavailable(&e),
        };
        let Some(at) = versions.iter().position(|v| v.version == to) else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "version not kept", "version": to}),
            );
        };
        let members = |i: usize| -> Map<String, Value> {
            let state = versions.get(i).and_then(|v| v.state.as_deref());
            match state.map(serde_json::from_slice::<Value>) {
                Some(Ok(Value::Object(m))) => m,
                Some(Ok(other)) => Map::from_iter([(String::new(), other)]),
                _ => Map::new(),
            }
        };
        let (before, after) = (members(at + 1), members(at));
        let from = versions.get(at + 1).map(|v| v.version);
        let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
        names.sort_unstable();
        names.dedup();
        let changes: Vec<Value> = names
            .into_iter()
            .filter(|n| before.get(*n) != after.get(*n))
            .map(|n| json!({"member": n, "before": before.get(n), "after": after.get(n)}))
            .collect();
        let bytes = versions[at].state.as_ref().map_or(0, |s| s.len());
        if let Err(e) = self.viewed(key, to, bytes).await {
            return unavailable(&e);
        }
        json_response(
            StatusCode::OK,
            json!({"key": key.as_str(), "from": from, "to": to, "changes": changes}),
        )
    }

    /// The `view` event of a reveal or a diff, and its log line (the key
    /// masked, as in every line).
    async fn viewed(&self, key: &ConvKey, version: u64, bytes: usize) -> Result<(), StoreError> {
        // The route: the namespace, a stored key's without its mark.
        let note = AuditNote {
            bytes,
            ..AuditNote::bare(key)
        };
        self.svc.backend.note_view(key, &note, version).await?;
        info!(key = %key.display(false), version, "snapshot shown in the console");
        Ok(())
    }

    async fn recent(&self, limit: usize) -> AdminResponse {
        // Events outnumber conversations: read a few per conversation.
        let query = AuditQuery {
            key: None,
            since: None,
            limit: (limit * 10).min(1000),
        };
        let events = match self.svc.backend.audit(&query).await {
            Ok(events) => events,
            Err(e) => return unavailable(&e),
        };
        let mut seen = std::collections::HashSet::new();
        let listed: Vec<Value> = events
            .into_iter()
            .map(|e| e.event)
            .filter(|e| {
                e["key"]
                    .as_str()
                    .is_some_and(|k| seen.insert(k.to_string()))
            })
            .take(limit)
            .map(|e| {
                json!({
                    "key": e["key"], "route": e["route"], "at": e["at"],
                    "kind": e["kind"], "version": e["to_version"],
                })
            })
            .collect();
        json_response(StatusCode::OK, Value::Array(listed))
    }
}
