//! What a request must pass before it may take a turn: the path it is
//! routed on, the route's verification (head, then body), and its keys.

use std::borrow::Cow;

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{StatusCode, Uri};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::reject::Reject;
use super::route::Route;
use super::{Keyed, Pipeline};
use crate::backend::Backend;
use crate::key::{self, ConvKey, RequestParts};
use crate::outcome::Outcome;
use crate::verify::{HeadParts, HeadVerdict, VerifyError};

impl<B: Backend> Pipeline<B> {
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
    pub(super) fn keys(
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
