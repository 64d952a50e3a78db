//! `GET /v1/audit` (bearer token): `?key=<namespace>:<id>&limit=N` one
//! conversation's events, newest first; `?since=<id>&limit=N` every event
//! after that id, oldest first (for shipping to a SIEM: pass the last id
//! seen). `limit` defaults to 100, at most 1000. Answers
//! `[{"id", "event": {...}}]`.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::state::key_param;
use super::{bad_request, json_response, unavailable, Admin, AdminResponse};
use crate::backend::audit::AuditQuery;
use crate::backend::Inspect;
use crate::backend::{Backend, StoreError};

const MAX_LIMIT: usize = 1000;

impl<B: Backend> Admin<B> {
    pub(super) async fn audit_api(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let hashed = self.svc.backend.privacy().hashes_keys();
        let query = match parse(req.uri().query().unwrap_or(""), hashed) {
            Ok(q) => q,
            Err(why) => return bad_request(why),
        };
        match self.svc.backend.audit(&query).await {
            Ok(entries) => {
                let listed: Vec<Value> = entries
                    .into_iter()
                    .map(|e| json!({"id": e.id, "event": e.event}))
                    .collect();
                json_response(StatusCode::OK, Value::Array(listed))
            }
            Err(StoreError::Unanswerable(why)) => bad_request(why),
            Err(e) => unavailable(&e),
        }
    }
}

fn parse(query: &str, hashed: bool) -> Result<AuditQuery, &'static str> {
    let mut q = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let mut seen = std::collections::HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            // Given twice, which one was meant? Refused, not last-wins.
            "key" | "since" | "limit" if !seen.insert(name) => {
                return Err("each of key, since and limit at most once")
            }
            "key" => q.key = Some(key_param(value, hashed)?),
            "since" => {
                // `17` (embedded), `1733094000000-0` (one Redis stream),
                // `1733094000000-0-5461` (a Redis Cluster: id and slot).
                let parts: Vec<&str> = value.split('-').collect();
                let number = |s: &str| {
                    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
                };
                let slot_ok = parts
                    .get(2)
                    .is_none_or(|s| s.parse::<u16>().is_ok_and(|n| n < 16384));
                if parts.len() > 3 || !parts.iter().all(|p| number(p)) || !slot_ok {
                    return Err(
                        "since is an event id, e.g. 17, 1733094000000-0 or 1733094000000-0-5461",
                    );
                }
                q.since = Some(value.to_string());
            }
            "limit" => {
                let n: usize = value.parse().map_err(|_| "limit is a whole number")?;
                q.limit = n.clamp(1, MAX_LIMIT);
            }
            _ => return Err("use key=<namespace>:<id> or since=<id>, and limit=N"),
        }
    }
    if q.key.is_some() == q.since.is_some() {
        return Err("give one of key=<namespace>:<id> or since=<id> (since=0 from the start)");
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_positions_of_every_store_and_nothing_else() {
        for ok in ["0", "17", "1733094000000-0", "1733094000000-3-16383"] {
            assert_eq!(
                parse(&format!("since={ok}"), false)
                    .unwrap()
                    .since
                    .as_deref(),
                Some(ok)
            );
        }
        assert!(parse("since=1&since=2", false).is_err(), "given twice");
        for bad in [
            "x",
            "1-",
            "-1",
            "1-2-16384",
            "1-2-3-4",
            "1-2-x",
            "123456789012345678901",
        ] {
            assert!(parse(&format!("since={bad}"), false).is_err(), "{bad}");
        }
    }
}
