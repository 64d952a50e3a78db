//! Request bodies on matched routes: read within the size, time and buffer
//! budgets, then classified once for key extraction and body mode.
//!
//! Body mode's rule at the boundary: the client's own `_statehold` member
//! never reaches the bot. A strictly parsed JSON object has the member
//! replaced (keyed) or removed (keyless); a body that some lenient parser
//! could read as JSON (`NaN`, a lone surrogate, a BOM, UTF-16) but
//! serde_json cannot is refused with 400, because statehold could not
//! remove a member it cannot see.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::budget::{Budget, Lease};
use super::reject::Reject;
use crate::contract;
use crate::outcome::Outcome;

/// A buffered body and the budget it holds until the request ends.
pub struct Buffered {
    pub bytes: Bytes,
    pub _lease: Lease,
}

/// Reads a body of at most `max` bytes within `within`, holding budget for
/// it as it arrives (the declared length up front).
pub async fn read(
    parts: &Parts,
    body: Incoming,
    max: u64,
    within: Duration,
    budget: &std::sync::Arc<Budget>,
) -> Result<Buffered, Reject> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    let mut lease = budget.lease();
    let declared = declared.unwrap_or(0) as usize;
    lease.grow_to(declared).map_err(|_| over_budget())?;
    let mut buf = BytesMut::with_capacity(declared);
    let collect = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Reject::bad_request("cannot read body").because(e))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = buf.len() + data.len();
            if len as u64 > max {
                return Err(too_large(max));
            }
            lease.grow_to(len).map_err(|_| over_budget())?;
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(within, collect).await {
        Err(_) => Err(Reject::new(
            StatusCode::REQUEST_TIMEOUT,
            Outcome::SlowClient,
            "body not received within server.body_timeout",
        )),
        Ok(Err(reject)) => Err(reject),
        Ok(Ok(())) => Ok(Buffered {
            bytes: buf.freeze(),
            _lease: lease,
        }),
    }
}

fn too_large(max: u64) -> Reject {
    Reject::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Outcome::TooLarge,
        format!("body over server.max_body_bytes = {max}"),
    )
}

fn over_budget() -> Reject {
    Reject::new(
        StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Overloaded,
        "server.max_buffered_bytes reached",
    )
}

/// The body as JSON, when it is JSON. A body that looks like JSON but does
/// not parse strictly is a 400 when a key source or body mode depends on it;
/// other bodies (forms, text) are simply not JSON.
pub fn parse_json(body: &[u8], needed: bool) -> Result<Option<Value>, Reject> {
    if !contract::looks_like_json(body) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(Some(v)),
        Err(e) if needed => Err(Reject::bad_request("malformed JSON body").because(e)),
        Err(_) => Ok(None),
    }
}

/// Header mode: whether the body is JSON, checked as strictly as
/// [`parse_json`] but without building it (`json:` key sources read its
/// members in place); only when a key source reads it (`needed`), and a
/// body that looks like JSON but does not parse is then a 400.
pub fn check_json(body: &[u8], needed: bool) -> Result<bool, Reject> {
    if !needed || !contract::looks_like_json(body) {
        return Ok(false);
    }
    match crate::key::check_json(body) {
        Ok(()) => Ok(true),
        Err(e) => Err(Reject::bad_request("malformed JSON body").because(e)),
    }
}

/// Body mode, request side: the client's member is replaced by `field`
/// (keyed requests) or removed (keyless ones). Returns the body to forward
/// and whether `field` is in it; the body is re-serialized only when it
/// changed. A body that cannot be re-serialized is refused: the old one
/// may carry the client's member.
pub fn set_member(
    json: Option<&mut Value>,
    body: Bytes,
    pointer: &str,
    field: Option<&contract::Injection<'_>>,
) -> Result<(Bytes, bool), Reject> {
    let Some(doc) = json else {
        return Ok((body, false));
    };
    let (changed, injected) = match field {
        Some(inj) => {
            let injected = contract::inject_body(doc, pointer, inj);
            (injected, injected)
        }
        None => (contract::take_member(doc, pointer).is_some(), false),
    };
    if !changed {
        return Ok((body, false));
    }
    let rewritten = serde_json::to_vec(doc)
        .map_err(|e| Reject::bad_request("the body cannot be re-encoded").because(e))?;
    Ok((Bytes::from(rewritten), injected))
}
