//! Answers given before a route's stages: a head with ambiguous framing,
//! a path that cannot be normalized, and paths no route matches (streamed
//! to the bot, or 404 with `server.unmatched = "reject"`).

use std::time::Instant;

use http::header::HeaderValue;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use tracing::warn;

use super::PathStore;
use super::{Body, ConnInfo, Pipeline, Reject};
use crate::config::Unmatched;
use crate::framing::Flaw;
use crate::outcome::Outcome;

impl<B: PathStore> Pipeline<B> {
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
    pub(super) fn unrouted(&self, reject: Reject, started: Instant) -> Response<Body> {
        let status = reject.status.as_u16();
        self.svc.metrics.request(
            self.svc.metrics.unmatched(),
            reject.outcome,
            status,
            started.elapsed(),
        );
        warn!(outcome = reject.outcome.as_str(), status, reason = %reject.log_text(), "request rejected");
        reject.response()
    }

    /// Paths no route matches: streamed to the bot, or 404.
    pub(super) async fn unmatched(
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
        self.svc.metrics.request(
            self.svc.metrics.unmatched(),
            outcome,
            resp.status().as_u16(),
            started.elapsed(),
        );
        resp
    }
}
