//! Backups and moving house (bearer token): `GET /v1/export?cursor=&limit=`
//! pages through every stored conversation as stored (hashed keys, sealed
//! values stay sealed), `POST /v1/import` writes a page of them, each under
//! its conversation's turn at exactly its exported version and lifetime,
//! over an older record only (idempotent; a conversation that moved on
//! since stays). `statehold export` / `import` stream JSON lines through
//! these pages, so neither side holds more than a page.
//!
//! A conversation: `{"key": "<ns>:<id>" (stored), "version", "ttl_ms",
//! "state": base64url of the stored value | null (a tombstone)}`. Dedupe
//! records, turns, history, links and the audit trail are not carried.
//! Each is checked before anything is written (`import_check.rs`), and a
//! key that is a linked channel here is skipped: an import never writes
//! through an alias (its member is imported by its own key).

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{bad_request, json_response, unavailable, Admin, AdminResponse};
use crate::backend::audit::AuditNote;
use crate::backend::{Backend, Commit, CommitOutcome, Dumped, Held, Origin, StoreError};
use crate::contract::{encode_state, StateChange};
use crate::key::ConvKey;

/// Conversations per export page at most.
const MAX_PAGE: usize = 2000;
/// Conversations of an import page written at once.
const IN_FLIGHT: usize = 64;
/// An import page's body at most.
const MAX_IMPORT_BODY: usize = 64 << 20;

/// Why one exported conversation was not imported.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("{0}")]
    Malformed(&'static str),
    /// Not written, by design (counted as skipped, with its reason).
    #[error("{0}")]
    Skipped(&'static str),
    #[error(transparent)]
    Turn(#[from] crate::backend::TurnError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did, per conversation.
#[derive(Default)]
struct Imported {
    imported: u64,
    skipped: u64,
    errors: u64,
    /// The first few reasons, for the operator.
    reasons: Vec<String>,
}

impl<B: Backend> Admin<B> {
    pub(super) async fn export_api(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let (mut cursor, mut limit) = (None, 500);
        for pair in req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("cursor", c)) if !c.is_empty() => {
                    cursor = percent_encoding::percent_decode_str(c)
                        .decode_utf8()
                        .ok()
                        .map(|c| c.into_owned())
                }
                Some(("cursor", _)) => {}
                Some(("limit", n)) => match n.parse::<usize>() {
                    Ok(n) => limit = n.clamp(1, MAX_PAGE),
                    Err(_) => return bad_request("limit is a whole number"),
                },
                _ => return bad_request("use cursor=<next of the previous page> and limit=N"),
            }
        }
        // The stored layer: keys hashed, values sealed, as they are.
        let store = self.svc.backend.private().inner();
        let page = match store.scan(cursor, limit).await {
            Ok(page) => page,
            Err(e) => return unavailable(&e),
        };
        let mut lines = Vec::with_capacity(page.keys.len());
        for key in &page.keys {
            match store.dump(key).await {
                Ok(Some(dumped)) => lines.push(line(key, &dumped)),
                Ok(None) => {} // expired meanwhile, or a bare link record
                Err(e) => return unavailable(&e),
            }
        }
        json_response(
            StatusCode::OK,
            json!({"conversations": lines, "next": page.next}),
        )
    }

    pub(super) async fn import_api(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let body = match Limited::new(req.into_body(), MAX_IMPORT_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return bad_request("an import page is at most 64 MiB"),
        };
        let Ok(page) = serde_json::from_slice::<Value>(&body) else {
            return bad_request("body is not JSON");
        };
        let Some(conversations) = page["conversations"].as_array() else {
            return bad_request("body is {\"conversations\": [...]}");
        };
        let mut done = Imported::default();
        // A few at a time: each takes its own conversation's turn, and the
        // embedded store commits what arrives together with one fsync.
        for chunk in conversations.chunks(IN_FLIGHT) {
            let results =
                futures_util::future::join_all(chunk.iter().map(|c| self.import_one(c))).await;
            for result in results {
                match result {
                    Ok(true) => done.imported += 1,
                    Ok(false) => done.skipped += 1,
                    Err(Refused::Skipped(why)) => {
                        done.skipped += 1;
                        if done.reasons.len() < 5 {
                            done.reasons.push(why.to_string());
                        }
                    }
                    Err(why) => {
                        done.errors += 1;
                        if done.reasons.len() < 5 {
                            done.reasons.push(why.to_string());
                        }
                    }
                }
            }
        }
        json_response(
            StatusCode::OK,
            json!({"imported": done.imported, "skipped": done.skipped,
                   "errors": done.errors, "reasons": done.reasons}),
        )
    }

    /// One conversation, under its turn: `true` written, `false` the store
    /// holds that version or a newer one.
    async fn import_one(&self, c: &Value) -> Result<bool, Refused> {
        let privacy = self.svc.backend.privacy();
        let (key, dumped) =
            super::import_check::parse(c, privacy, &self.lifetimes).map_err(Refused::Malformed)?;
        let store = self.svc.backend.private().inner();
        let (held, loaded) = store.begin(&key, self.lock_wait, None).await?;
        if loaded.member.is_some() {
            // The turn held is the member's: writing would overwrite it.
            return Err(Refused::Skipped(
                "a linked channel here: not written (its member is imported by its own key)",
            ));
        }
        let change = match dumped.state {
            Some(stored) => StateChange::Put(stored),
            None => StateChange::Clear,
        };
        let note = AuditNote {
            bytes: match &change {
                StateChange::Put(s) => s.len(),
                _ => 0,
            },
            ..AuditNote::bare(&key)
        };
        let commit = Commit {
            expected_version: None,
            change,
            dedupe: None,
            origin: Origin::Import {
                version: dumped.version,
                ttl_ms: dumped.ttl_ms,
            },
            audit: self.svc.audit.on().then(|| Box::new(note)),
            link: None,
        };
        match held.finish(commit).await? {
            CommitOutcome::Committed { .. } => Ok(true),
            CommitOutcome::Conflict { .. } => Ok(false),
        }
    }
}

fn line(key: &ConvKey, d: &Dumped) -> Value {
    json!({
        "key": key.as_str(),
        "version": d.version,
        "ttl_ms": d.ttl_ms,
        "state": d.state.as_deref().map(encode_state),
    })
}
