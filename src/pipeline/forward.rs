//! The upstream stage: forwarding headers and URI, the exchange with the
//! bot (buffered on routes, streamed on unmatched paths), and statehold's
//! own answers when the bot fails.

use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT_ENCODING};
use http::request::Parts;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use tracing::warn;

use super::reject::Reject;
use super::request::{Admitted, Ctx};
use super::PathStore;
use super::{Answer, Body, ConnInfo, Pipeline};
use crate::config::OnMissingKey;
use crate::contract::{self, StateChange};
use crate::metrics::SaveResult;
use crate::outcome::Outcome;
use crate::upstream::{forward_headers, UpstreamError};

impl<B: PathStore> Pipeline<B> {
    pub(super) fn trusted(&self, peer: std::net::IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    }

    /// Forwarding headers and the bot's URI.
    pub(super) fn forward(&self, parts: &mut Parts, conn: ConnInfo) -> Result<(), Reject> {
        let peer = conn.peer.ip();
        forward_headers(&mut parts.headers, peer, conn.tls, self.trusted(peer));
        // statehold speaks HTTP/1.1 to the bot, whatever the client spoke.
        parts.version = Version::HTTP_11;
        parts.uri = self
            .svc
            .upstream
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| Reject::bad_request("the request path cannot be forwarded").because(e))?;
        Ok(())
    }

    pub(super) async fn timed_exchange(
        &self,
        parts: Parts,
        body: Bytes,
        conn: ConnInfo,
        cx: &mut Ctx<'_>,
    ) -> Result<Answer, Reject> {
        let started = Instant::now();
        let exchange = self.exchange(parts, body, conn).await;
        cx.upstream_time = started.elapsed();
        self.svc.metrics.upstream(cx.upstream_time);
        // On failure nothing is saved and no dedupe record is written, so
        // the platform's redelivery runs the bot again; the turn is
        // released on return.
        exchange
    }

    /// Sends a buffered request to the bot and buffers its answer, all
    /// within `upstream.timeout`.
    pub(super) async fn exchange(
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
        let (parts, body) = self
            .svc
            .upstream
            .exchange(req)
            .await
            .map_err(upstream_reject)?;
        Ok(Answer { parts, body })
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
        let result = self
            .svc
            .upstream
            .stream(Request::from_parts(parts, body))
            .await;
        self.svc.metrics.upstream(started.elapsed());
        let reject = match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                contract::strip_reserved(&mut parts.headers);
                return Response::from_parts(parts, Either::Right(body));
            }
            Err(e) => upstream_reject(e),
        };
        warn!(reason = %reject.log_text(), "bot failed on a forwarded request");
        reject.response()
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
    Reject::new(status, outcome, reason).because(e)
}

impl<B: PathStore> Pipeline<B> {
    /// A route request without a key (already stripped of any client
    /// member by `inject`): refused, or forwarded without state.
    pub(super) async fn keyless(
        &self,
        mut admitted: Admitted,
        cx: &mut Ctx<'_>,
    ) -> Result<Response<Body>, Reject> {
        let body = self.inject(&mut admitted, None)?;
        if cx.route.on_missing_key == OnMissingKey::Reject {
            return Err(Reject::bad_request("no conversation key in the request"));
        }
        cx.outcome = Outcome::NoKey;
        let (parts, conn) = (admitted.parts, admitted.conn);
        let mut answer = self.timed_exchange(parts, body, conn, cx).await?;
        if self.capture(&mut answer, None, &[])?.change != StateChange::Keep {
            self.svc.metrics.save(SaveResult::Rejected);
            warn!(route = %cx.route.path, "state reported for a request without a conversation key: not stored");
        }
        Ok(answer.into_response())
    }
}
