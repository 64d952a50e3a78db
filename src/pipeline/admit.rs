//! What a request must pass before it may take a turn: the path it is
//! routed on, the route's verification (head, then body), and its keys.

use std::borrow::Cow;

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::Response;
use http::{StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::reject::Reject;
use super::request::{Admitted, Ctx};
use super::route::Route;
use super::PathStore;
use super::{body, Body, ConnInfo, Keyed, Pipeline};
use crate::key::{self, ConvKey, JsonBody, RequestParts};
use crate::outcome::Outcome;
use crate::verify::{HeadParts, HeadVerdict, VerifyError};

/// What the verify and body stages leave of a request.
pub(super) enum Admission {
    /// Meta's subscription handshake: forwarded without a body or state.
    Handshake(Parts),
    Admitted(Admitted),
}

impl<B: PathStore> Pipeline<B> {
    /// verify (head), body, verify (body): the request as admitted, its
    /// body buffered within the budgets and parsed if the route reads JSON.
    pub(super) async fn admit(
        &self,
        parts: Parts,
        body: Incoming,
        conn: ConnInfo,
        route: &Route,
    ) -> Result<Admission, Reject> {
        let head = self.verify_head(route, &parts)?;
        if head == Some(HeadVerdict::Handshake) {
            // Meta's handshake carries no body: none is forwarded, so
            // nothing unverified (a body-mode member) rides along.
            drop(body);
            return Ok(Admission::Handshake(parts));
        }
        let s = &self.settings;
        let buffered =
            body::read(&parts, body, s.max_body_bytes, s.body_timeout, &self.budget).await?;
        if head == Some(HeadVerdict::NeedsBody) {
            self.verify_body(route, &parts, &buffered.bytes)?;
        }
        // Body mode rewrites the body, so it is parsed; header mode only
        // reads ids out of it, in place.
        let (json, json_text) = if self.body_mode() {
            (body::parse_json(&buffered.bytes, true)?, false)
        } else {
            (None, body::check_json(&buffered.bytes, route.needs_json)?)
        };
        Ok(Admission::Admitted(Admitted {
            parts,
            conn,
            body: buffered.bytes,
            _lease: buffered._lease,
            json,
            json_text,
            verified: route.verifier.as_ref().map(|v| v.kind()),
        }))
    }

    /// Meta's handshake, answered by the bot: no body, no state.
    pub(super) async fn handshake(
        &self,
        mut parts: Parts,
        conn: ConnInfo,
        cx: &mut Ctx<'_>,
    ) -> Response<Body> {
        cx.outcome = Outcome::Handshake;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        let empty = Either::Left(Full::new(Bytes::new()));
        self.passthrough(parts, empty, conn).await
    }

    pub(super) fn verify_head(
        &self,
        route: &Route,
        parts: &Parts,
    ) -> Result<Option<HeadVerdict>, Reject> {
        let Some(verifier) = &route.verifier else {
            return Ok(None);
        };
        let now = crate::backend::clock::system_ms() as i64 / 1000;
        verifier
            .check_head(&head_parts(route, parts), now)
            .map(Some)
            .map_err(unverified)
    }

    pub(super) fn verify_body(
        &self,
        route: &Route,
        parts: &Parts,
        body: &[u8],
    ) -> Result<(), Reject> {
        match &route.verifier {
            Some(v) => v
                .check_body(&head_parts(route, parts), body)
                .map_err(unverified),
            None => Ok(()),
        }
    }

    /// The conversation key and dedupe id; `None` when the request has no key.
    pub(super) fn keys(&self, route: &Route, admitted: &Admitted) -> Result<Option<Keyed>, Reject> {
        let Admitted {
            parts,
            body,
            json,
            json_text,
            ..
        } = admitted;
        // Checked in `admit`, so UTF-8 (no second pass over it as JSON).
        let text = json_text.then(|| std::str::from_utf8(body).ok()).flatten();
        let req = RequestParts {
            headers: &parts.headers,
            query: parts.uri.query(),
            body,
            json: match (json, text) {
                (Some(doc), _) => Some(JsonBody::Parsed(doc)),
                (None, Some(text)) => Some(JsonBody::Text(text)),
                (None, None) => None,
            },
        };
        let ambiguous = |e: key::KeyError| {
            Reject::bad_request("ambiguous or unusable conversation key").because(e)
        };
        let Some(id) = key::first_present(&route.key, &req).map_err(ambiguous)? else {
            return Ok(None);
        };
        let conv = ConvKey::new(&route.namespace, &id);
        // Qualified by the route's namespace: conversations linked to one
        // member share its dedupe records, and two routes' update ids are
        // not one sequence (issue 20, item 3).
        let dedupe = key::first_present(&route.dedupe, &req)
            .map_err(ambiguous)?
            .map(|d| {
                (
                    format!("{}:{d}", route.namespace),
                    Sha256::digest(body).into(),
                )
            });
        let request_id = self
            .svc
            .audit
            .on()
            .then(|| {
                crate::services::request_id(parts.headers.get("x-request-id").map(|v| v.as_bytes()))
            })
            .flatten();
        Ok(Some(Keyed {
            conv,
            dedupe,
            request_id,
        }))
    }
}

/// Rewrites `uri` to its normalized origin form when normalizing changes it.
pub(super) fn normalize_uri(uri: &mut Uri) -> Result<(), crate::path::PathError> {
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
    Reject::new(status, Outcome::Unverified, "webhook verification failed").because(e)
}
