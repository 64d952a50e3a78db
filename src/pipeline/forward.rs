//! The upstream stage: forwarding headers and URI, the exchange with the
//! bot (buffered on routes, streamed on unmatched paths), and statehold's
//! own answers when the bot fails.

use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT_ENCODING};
use http::request::Parts;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use tracing::warn;

use super::reject::Reject;
use super::{Answer, Body, ConnInfo, Pipeline, Trace};
use crate::backend::Backend;
use crate::contract;
use crate::outcome::Outcome;
use crate::upstream::{forward_headers, strip_hop_by_hop, UpstreamError};

impl<B: Backend> Pipeline<B> {
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
            .upstream
            .target
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| Reject::bad_request("the request path cannot be forwarded").detail(e))?;
        Ok(())
    }

    pub(super) async fn timed_exchange(
        &self,
        parts: Parts,
        body: Bytes,
        conn: ConnInfo,
        trace: &mut Trace,
    ) -> Result<Answer, Reject> {
        let started = Instant::now();
        let exchange = self.exchange(parts, body, conn).await;
        trace.upstream_time = started.elapsed();
        self.metrics.upstream(trace.upstream_time);
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
        let max = self.upstream.max_response_bytes;
        let work = async {
            let resp = self.upstream.send(req).await?;
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            // A proxy speaks its own version (RFC 9110 §6.2), not the bot's.
            parts.version = Version::HTTP_11;
            let bytes = Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::TooLarge
                    } else {
                        UpstreamError::Failed(e.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, UpstreamError>(Answer { parts, body: bytes })
        };
        match tokio::time::timeout(self.upstream.timeout, work).await {
            Err(_) => Err(upstream_reject(UpstreamError::Timeout(
                self.upstream.timeout,
            ))),
            Ok(Err(e)) => Err(upstream_reject(e)),
            Ok(Ok(done)) => Ok(done),
        }
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
        let result = tokio::time::timeout(
            self.upstream.timeout,
            self.upstream.send(Request::from_parts(parts, body)),
        )
        .await;
        self.metrics.upstream(started.elapsed());
        let reject = match result {
            Err(_) => upstream_reject(UpstreamError::Timeout(self.upstream.timeout)),
            Ok(Err(e)) => upstream_reject(e),
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                contract::strip_reserved(&mut parts.headers);
                parts.version = Version::HTTP_11;
                return Response::from_parts(parts, Either::Right(body));
            }
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
    Reject::new(status, outcome, reason).detail(e)
}
