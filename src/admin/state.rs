//! The state API (bearer token): `/v1/state/<namespace>/<id>` GET (also
//! `?version=V` with `store.history`), PUT and DELETE;
//! `/v1/state/<namespace>/<id>/history` GET; `.../rollback` POST
//! `{"to": V}`. Writes and rollbacks take the conversation's turn like
//! any request. An id holding `/` is sent percent-encoded (`%2F`): a raw
//! `/` after the id only names `history` or `rollback`.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::info;

use super::{bad_request, json_response, unavailable, Admin, AdminResponse};
use crate::backend::{Backend, Commit, CommitOutcome, Held, Origin, StoreError, Version};
use crate::backend::{Inspect, Turns};
use crate::contract::StateChange;
use crate::key::ConvKey;

/// What a state API path names.
enum Target {
    Snapshot,
    History,
    Rollback,
}

/// Why a rollback was refused.
enum NoRollback {
    /// Not kept (any more), or never a snapshot.
    NotKept,
    /// The conversation holds no snapshot now (cleared since).
    Cleared,
    /// The key is a linked channel: its member is rolled back by its own key.
    Linked,
    /// Another turn committed meanwhile.
    MovedOn,
    Store(StoreError),
}

impl<B: Backend> Admin<B> {
    pub(super) async fn state_api(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let hashed = self.svc.backend.privacy().hashes_keys();
        let (key, target) = match state_path(req.uri().path(), hashed) {
            Ok(found) => found,
            Err((status, error)) => return json_response(status, json!({ "error": error })),
        };
        let version = query_u64(req.uri().query(), "version");
        match (req.method().clone(), target) {
            (Method::GET, Target::Snapshot) => match version {
                Some(Ok(v)) => self.read_version(&key, v).await,
                Some(Err(())) => bad_request("version must be a whole number"),
                None => self.read(&key).await,
            },
            (Method::PUT, Target::Snapshot) => match self.snapshot_body(req).await {
                Ok(body) => self.write(&key, StateChange::Put(body)).await,
                Err(refusal) => refusal,
            },
            (Method::DELETE, Target::Snapshot) => self.write(&key, StateChange::Clear).await,
            (Method::GET, Target::History) => self.history(&key).await,
            (Method::POST, Target::Rollback) => {
                let body = Limited::new(req.into_body(), 1024).collect().await;
                let to = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b.to_bytes()).ok())
                    .and_then(|v| v["to"].as_u64());
                match to {
                    Some(to) => self.rollback(&key, to).await,
                    None => bad_request("body must be {\"to\": <version>}"),
                }
            }
            _ => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "GET, PUT or DELETE a snapshot; GET its history; POST its rollback"}),
            ),
        }
    }

    async fn snapshot_body(&self, req: Request<Incoming>) -> Result<Bytes, AdminResponse> {
        let body = match Limited::new(req.into_body(), self.max_state_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Err(json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "snapshot over store.max_state_bytes"}),
                ))
            }
        };
        if serde_json::from_slice::<Value>(&body).is_err() {
            return Err(bad_request("body is not JSON"));
        }
        Ok(body)
    }

    async fn read(&self, key: &ConvKey) -> AdminResponse {
        match self.svc.backend.load(key).await {
            Ok(loaded) => match loaded.state {
                Some(state) => snapshot(key, loaded.version, &state),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": "no snapshot", "version": loaded.version}),
                ),
            },
            Err(e) => unavailable(&e),
        }
    }

    /// One kept version (`store.history`).
    async fn read_version(&self, key: &ConvKey, version: u64) -> AdminResponse {
        match self.kept(key, version).await {
            Ok(Some(Version {
                state: Some(state), ..
            })) => snapshot(key, version, &state),
            Ok(_) => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "version not kept (or a clear)", "version": version}),
            ),
            Err(e) => unavailable(&e),
        }
    }

    async fn kept(&self, key: &ConvKey, version: u64) -> Result<Option<Version>, StoreError> {
        let versions = self.svc.backend.history(key).await?;
        Ok(versions.into_iter().find(|v| v.version == version))
    }

    /// `[{"version", "at", "bytes", "sha256", "kind"}]`, newest first
    /// (`at`: ms since the epoch; `bytes` and `sha256` of the snapshot as
    /// the bot sees it; 0 and null for a clear).
    async fn history(&self, key: &ConvKey) -> AdminResponse {
        match self.svc.backend.history(key).await {
            Ok(versions) => {
                let listed: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let state = v.state.as_deref();
                        json!({
                            "version": v.version,
                            "at": v.at_ms,
                            "bytes": state.map_or(0, <[u8]>::len),
                            "sha256": state.map(|s| hex(&Sha256::digest(s))),
                            "kind": v.kind,
                        })
                    })
                    .collect();
                json_response(StatusCode::OK, Value::Array(listed))
            }
            Err(e) => unavailable(&e),
        }
    }

    /// Writes version `to`'s snapshot as a new version, under the turn.
    async fn rollback(&self, key: &ConvKey, to: u64) -> AdminResponse {
        match self.roll_back(key, to).await {
            Ok(version) => {
                info!(key = %key.display(false), to, version, "rolled back through the admin API");
                json_response(
                    StatusCode::OK,
                    json!({"key": key.as_str(), "version": version, "from": to}),
                )
            }
            Err(NoRollback::NotKept) => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "version not kept (or a clear)", "version": to}),
            ),
            Err(NoRollback::Cleared) => json_response(
                StatusCode::CONFLICT,
                json!({"error": "the conversation was cleared since"}),
            ),
            Err(NoRollback::Linked) => linked_channel(),
            Err(NoRollback::MovedOn) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the conversation moved on"}),
            ),
            Err(NoRollback::Store(e)) => unavailable(&e),
        }
    }

    async fn roll_back(&self, key: &ConvKey, to: u64) -> Result<u64, NoRollback> {
        let backend = &self.svc.backend;
        let store = |e: StoreError| NoRollback::Store(e);
        let (held, loaded) = backend
            .begin(key, self.lock_wait, None)
            .await
            .map_err(|e| store(e.into()))?;
        let old = loaded.state.clone();
        if loaded.member.is_some() {
            return Err(NoRollback::Linked);
        }
        if loaded.state.is_none() {
            return Err(NoRollback::Cleared);
        }
        let Some(state) = self
            .kept(key, to)
            .await
            .map_err(store)?
            .and_then(|v| v.state)
        else {
            return Err(NoRollback::NotKept);
        };
        let change = StateChange::Put(state);
        let commit = Commit {
            expected_version: Some(loaded.version),
            audit: self.svc.audit.note(key, None, old.as_deref(), &change),
            link: None,
            change,
            dedupe: None,
            origin: Origin::Rollback,
        };
        match held.finish(commit).await.map_err(store)? {
            CommitOutcome::Committed { version } => Ok(version),
            CommitOutcome::Conflict { .. } => Err(NoRollback::MovedOn),
        }
    }

    async fn write(&self, key: &ConvKey, change: StateChange) -> AdminResponse {
        let backend = &self.svc.backend;
        let (held, old) = match backend.begin(key, self.lock_wait, None).await {
            Ok((_, loaded)) if loaded.member.is_some() => return linked_channel(),
            Ok((held, loaded)) => (held, loaded.state),
            Err(e) => return unavailable(&e),
        };
        let commit = Commit {
            expected_version: None,
            audit: self.svc.audit.note(key, None, old.as_deref(), &change),
            link: None,
            change,
            dedupe: None,
            origin: Origin::Admin,
        };
        match held.finish(commit).await {
            Ok(CommitOutcome::Committed { version }) => {
                info!(key = %key.display(false), version, "snapshot written through the admin API");
                json_response(
                    StatusCode::OK,
                    json!({"key": key.as_str(), "version": version}),
                )
            }
            Ok(CommitOutcome::Conflict { current }) => json_response(
                StatusCode::CONFLICT,
                json!({"error": "conflict", "version": current}),
            ),
            Err(e) => unavailable(&e),
        }
    }
}

fn snapshot(key: &ConvKey, version: u64, state: &[u8]) -> AdminResponse {
    let state: Value = serde_json::from_slice(state).unwrap_or(Value::Null);
    json_response(
        StatusCode::OK,
        json!({"key": key.as_str(), "version": version, "state": state}),
    )
}

/// A write to a linked channel's key: refused, the member is written
/// under its own key.
fn linked_channel() -> AdminResponse {
    json_response(
        StatusCode::CONFLICT,
        json!({"error": "the key is a linked channel: write its member's key (GET /v1/links/<namespace>/<id>)"}),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `name=<u64>` in the query: `None` absent, `Err` not a number.
fn query_u64(query: Option<&str>, name: &str) -> Option<Result<u64, ()>> {
    let value = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?;
    Some(value.parse().map_err(|_| ()))
}

/// `/v1/state/<namespace>/<id>[/history|/rollback]` → the conversation and
/// what is asked of it, or the answer refusing the path.
fn state_path(path: &str, hashed: bool) -> Result<(ConvKey, Target), (StatusCode, &'static str)> {
    let rest = path.trim_start_matches("/v1/state/");
    let parts: Vec<&str> = rest.split('/').collect();
    let (ns, id, target) = match parts.as_slice() {
        [ns, id] => (*ns, *id, Target::Snapshot),
        [ns, id, "history"] => (*ns, *id, Target::History),
        [ns, id, "rollback"] => (*ns, *id, Target::Rollback),
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                "use /v1/state/<namespace>/<id>[/history|/rollback] (a '/' in the id as %2F)",
            ))
        }
    };
    if ns.is_empty() || id.is_empty() {
        return Err((StatusCode::NOT_FOUND, "use /v1/state/<namespace>/<id>"));
    }
    let Some(ns) = path_namespace(ns, hashed) else {
        return Err((StatusCode::BAD_REQUEST, NAMESPACE_RULE));
    };
    let Some(id) = strict_decode(id) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "the id must be percent-encoded UTF-8 without control characters, at most 256 bytes",
        ));
    };
    Ok((ConvKey::new(&ns, &id), target))
}

/// What a namespace in an admin path or key may hold.
pub(super) const NAMESPACE_RULE: &str =
    "the namespace must be what a route's namespace may be: ASCII letters, digits, '_', '-', '.'";

/// A namespace as the config allows one (`route.namespace`): a `:` would
/// move the key's split (`web:rb2` + `x` is `web` + `rb2:x`), a `{` or `}`
/// would name Redis hash tags. With `store.key_secret` (`hashed`), also a
/// stored key's (`<namespace>#`), which no route's can be: the trail, the
/// links and the console name conversations by their stored keys, and the
/// store takes such a key as its own stored name, never hashing it again.
pub(super) fn namespace_ok(ns: &str, hashed: bool) -> bool {
    crate::key::is_namespace(ns)
        || (hashed
            && ns
                .strip_suffix(crate::privacy::HASHED_MARK)
                .is_some_and(crate::key::is_namespace))
}

/// A namespace as a path segment gives it: a stored key's comes encoded
/// (`tg%23`: a raw `#` ends a path), and the rule is checked on what it
/// decodes to. `None`: not a namespace.
pub(super) fn path_namespace(segment: &str, hashed: bool) -> Option<String> {
    let ns = match segment.strip_suffix("%23") {
        Some(route) if hashed => format!("{route}{}", crate::privacy::HASHED_MARK),
        _ => segment.to_string(),
    };
    namespace_ok(&ns, hashed).then_some(ns)
}

/// A conversation named as the bot sees it (`X-Statehold-Key`,
/// `<namespace>:<id>`, percent-encoded in a query), or by its stored key.
pub(super) fn key_param(value: &str, hashed: bool) -> Result<ConvKey, &'static str> {
    let text = strict_decode(value).ok_or("key: percent-encoded UTF-8, please")?;
    let (ns, id) = text
        .split_once(':')
        .filter(|(ns, id)| namespace_ok(ns, hashed) && !id.is_empty())
        .ok_or("key is <namespace>:<id>, the namespace as a route's")?;
    Ok(ConvKey::new(ns, id))
}

/// `%XX` escapes in a path segment (ids like `+1415…` or `a/b`). Refused:
/// bytes that are not UTF-8 (lossy decoding would name another id) and the
/// ids the proxy itself never accepts (control characters, over 256 bytes).
pub(super) fn strict_decode(text: &str) -> Option<String> {
    let id = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()?
        .into_owned();
    crate::key::is_usable_id(&id).then_some(id)
}
