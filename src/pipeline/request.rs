//! What one request carries from stage to stage: its context (route,
//! outcome and what the log line tells), its key and turn, its admitted
//! body, the bot's answer, and how the save went.

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use http_body_util::{Either, Full};
use serde_json::Value;

use super::route::Route;
use super::{Body, ConnInfo};
use crate::backend::Loaded;
use crate::contract::StateChange;
use crate::key::ConvKey;
use crate::outcome::Outcome;
use crate::verify::VerifyKind;

/// One request on a route, from stage to stage: its route, and what its
/// log line and metrics will tell (outcome, key, version, time spent), and
/// the token of the turn it holds. The stages take it as `cx`.
pub(super) struct Ctx<'r> {
    pub(super) route: &'r Route,
    pub(super) outcome: Outcome,
    pub(super) key: Option<ConvKey>,
    pub(super) store_time: Duration,
    pub(super) upstream_time: Duration,
    /// The stored version after this request (for the log line).
    pub(super) version: Option<u64>,
    /// Why statehold answered by itself (early rejects).
    pub(super) reason: Option<String>,
    /// The kept version the bot rolled back to (`X-Statehold-Rollback`).
    pub(super) rolled_back: Option<u64>,
    /// The held turn's token (`X-Statehold-Turn`), until a deferral takes it.
    pub(super) turn: Option<crate::backend::TurnToken>,
}

impl<'r> Ctx<'r> {
    pub(super) fn new(route: &'r Route) -> Ctx<'r> {
        Ctx {
            route,
            outcome: Outcome::Ok,
            key: None,
            store_time: Duration::ZERO,
            upstream_time: Duration::ZERO,
            version: None,
            reason: None,
            rolled_back: None,
            turn: None,
        }
    }
}

/// How the end-of-turn write went.
pub(super) enum Saved {
    Committed,
    /// Refused: the conversation moved on (version or fence).
    Stale,
    /// The store is out; the change is handed back to be kept elsewhere.
    Failed(StateChange),
    /// The store is up but refused this conversation's write (bad data, a
    /// refused script, a value that cannot be sealed): nothing to spool.
    Refused(crate::backend::StoreError),
    /// Written, but not confirmed by `store.min_replica_acks` replicas in
    /// time: not acknowledged, so the platform redelivers.
    Unreplicated,
}

/// A dedupe id with the digest of the body it came with.
pub(super) type Dedupe = Option<(String, [u8; 32])>;

/// A keyed request: its conversation and dedupe id.
pub(super) struct Keyed {
    pub(super) conv: ConvKey,
    pub(super) dedupe: Dedupe,
    /// The request's `X-Request-Id`, for the audit trail (only with it on).
    pub(super) request_id: Option<String>,
}

/// This request's turn.
// One per request, moved along its stages, never stored in bulk: boxing
// the held variant would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Turn<H> {
    /// Held, with the record read at its start. `spooled`: a change this
    /// replica kept while the store was out, newer than the record; the
    /// record shows it, and the save writes it if the bot reports nothing.
    Held {
        held: H,
        loaded: Loaded,
        spooled: Option<StateChange>,
    },
    /// The store is out and the route degrades (`on_unavailable =
    /// "passthrough"`): no turn, no record.
    Degraded,
}

impl<H> Turn<H> {
    pub(super) fn loaded(&self) -> Option<&Loaded> {
        match self {
            Turn::Held { loaded, .. } => Some(loaded),
            Turn::Degraded => None,
        }
    }
}

/// A keyed request with its conversation's turn: what the save stage
/// finishes, a deferral parks, and the link stage trades for the member's.
pub(super) struct Conversation<H> {
    pub(super) turn: Turn<H>,
    pub(super) keyed: Keyed,
}

impl<H> Conversation<H> {
    pub(super) fn conv(&self) -> &ConvKey {
        &self.keyed.conv
    }
}

/// A route request that passed verification, with its body.
pub(super) struct Admitted {
    pub(super) parts: Parts,
    /// Who sent it.
    pub(super) conn: ConnInfo,
    pub(super) body: Bytes,
    /// The body's share of `server.max_buffered_bytes`, held until the
    /// request ends.
    pub(super) _lease: super::budget::Lease,
    /// Body mode: the parsed body (rewritten by `inject`).
    pub(super) json: Option<Value>,
    /// Header mode: the body was checked to be JSON; key sources read its
    /// members in place.
    pub(super) json_text: bool,
    pub(super) verified: Option<VerifyKind>,
}

/// The bot's answer, buffered.
pub(super) struct Answer {
    pub(super) parts: http::response::Parts,
    pub(super) body: Bytes,
}

impl Answer {
    /// A plain 200 with no body: what a late report is saved as (it
    /// records no answer).
    pub(super) fn acknowledged() -> Answer {
        let (parts, ()) = Response::new(()).into_parts();
        Answer {
            parts,
            body: Bytes::new(),
        }
    }

    pub(super) fn into_response(self) -> Response<Body> {
        Response::from_parts(self.parts, Either::Left(Full::new(self.body)))
    }
}
