//! How a request ended: the bounded `outcome` label of
//! `statehold_requests_total`. A leaf module: the pipeline sets it, the
//! metrics count it.

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
    /// The store is up but refused this conversation's operation (a
    /// damaged record, a refused script, a value that cannot be sealed):
    /// 500, store health unchanged, nothing spooled.
    StoreError,
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
    /// The bot answered first (`X-Statehold-Deferred: 1`): the answer left,
    /// the turn stays held for its late report.
    Deferred,
}

impl Outcome {
    pub const ALL: [Outcome; 20] = [
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
        Outcome::StoreError,
        Outcome::UpstreamError,
        Outcome::UpstreamTimeout,
        Outcome::Conflict,
        Outcome::Overloaded,
        Outcome::NotFound,
        Outcome::DedupeMismatch,
        Outcome::Handshake,
        Outcome::Deferred,
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
            Outcome::StoreError => "store_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::Conflict => "conflict",
            Outcome::Overloaded => "overloaded",
            Outcome::NotFound => "not_found",
            Outcome::DedupeMismatch => "dedupe_mismatch",
            Outcome::Handshake => "handshake",
            Outcome::Deferred => "deferred",
        }
    }
}
