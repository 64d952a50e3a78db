//! How a request ended: the bounded `outcome` label of
//! `statehold_requests_total`, and statehold's own answers ([`Reject`]):
//! a status, a fixed short message for the client, and details for the log
//! only (never error chains, ids or state in a body that leaves).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::Body;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The bot answered and the turn was committed.
    Ok,
    /// Answered from the dedupe record; the bot was not called.
    Duplicate,
    /// Unmatched path, streamed untouched.
    Passthrough,
    /// Matched route, no key found, forwarded without state.
    NoKey,
    /// Store unreachable, forwarded with `X-Statehold-Status: degraded`.
    Degraded,
    /// Rejected before the bot: verification failed.
    Unverified,
    /// Rejected before the bot: bad request (no key, malformed body, path
    /// that cannot be normalized, ambiguous framing or key).
    BadRequest,
    /// Rejected before the bot: body over the limit.
    TooLarge,
    /// Rejected before the bot: body not received in time.
    SlowClient,
    /// Rejected before the bot: store unavailable (`on_unavailable = reject`).
    Unavailable,
    /// Rejected before the bot: the turn wait exceeded `store.lock_wait`.
    Busy,
    /// The bot failed (unreachable, broken connection, oversized or
    /// unreadable answer).
    UpstreamError,
    /// The bot did not answer within `upstream.timeout`.
    UpstreamTimeout,
    /// The bot answered but the commit was refused: the conversation moved
    /// on (the turn's lease was taken over). 503, so the update is redelivered.
    Conflict,
    /// Shed: `server.max_connections` or `server.max_buffered_bytes` reached. 503.
    Overloaded,
    /// Unmatched path with `server.unmatched = "reject"`: 404.
    NotFound,
    /// A known dedupe id with a different body: 409, the bot not called.
    DedupeMismatch,
    /// Meta's subscription handshake, forwarded without state.
    Handshake,
}

impl Outcome {
    pub const ALL: [Outcome; 18] = [
        Outcome::Ok,
        Outcome::Duplicate,
        Outcome::Passthrough,
        Outcome::NoKey,
        Outcome::Degraded,
        Outcome::Unverified,
        Outcome::BadRequest,
        Outcome::TooLarge,
        Outcome::SlowClient,
        Outcome::Unavailable,
        Outcome::Busy,
        Outcome::UpstreamError,
        Outcome::UpstreamTimeout,
        Outcome::Conflict,
        Outcome::Overloaded,
        Outcome::NotFound,
        Outcome::DedupeMismatch,
        Outcome::Handshake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Duplicate => "duplicate",
            Outcome::Passthrough => "passthrough",
            Outcome::NoKey => "no_key",
            Outcome::Degraded => "degraded",
            Outcome::Unverified => "unverified",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::SlowClient => "slow_client",
            Outcome::Unavailable => "store_unavailable",
            Outcome::Busy => "busy",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::Conflict => "conflict",
            Outcome::Overloaded => "overloaded",
            Outcome::NotFound => "not_found",
            Outcome::DedupeMismatch => "dedupe_mismatch",
            Outcome::Handshake => "handshake",
        }
    }
}

/// An answer statehold gives by itself.
pub struct Reject {
    pub status: StatusCode,
    pub outcome: Outcome,
    /// Short and fixed: sent to the client.
    pub reason: Cow<'static, str>,
    /// For the log line only.
    pub detail: Option<String>,
}

impl Reject {
    pub fn new(
        status: StatusCode,
        outcome: Outcome,
        reason: impl Into<Cow<'static, str>>,
    ) -> Reject {
        Reject {
            status,
            outcome,
            reason: reason.into(),
            detail: None,
        }
    }

    pub fn detail(mut self, detail: impl ToString) -> Reject {
        self.detail = Some(detail.to_string());
        self
    }

    /// What the log line says: the reason, then the detail.
    pub fn log_text(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.reason),
            None => self.reason.to_string(),
        }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Reject {
        Reject::new(StatusCode::BAD_REQUEST, Outcome::BadRequest, reason)
    }

    /// The bot's answer cannot leave as it is.
    pub fn bad_gateway(reason: &'static str) -> Reject {
        Reject::new(StatusCode::BAD_GATEWAY, Outcome::UpstreamError, reason)
    }

    /// A small JSON body naming the outcome and the fixed reason.
    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.outcome.as_str(),
            "message": self.reason,
        })
        .to_string();
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

/// Seconds the platform is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 1;
