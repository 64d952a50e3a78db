//! Links: a channel conversation (`wa:+4930…`, `web:sess-9`) made an alias
//! of a member key (`member:42`) by the bot's `X-Statehold-Link`. From then
//! on a request on the channel takes the member's turn, reads the member's
//! record and shares its dedupe records; [`crate::backend::Turns::begin`]
//! resolves the alias atomically with the turn (on Redis inside
//! `acquire.lua`, no extra round trip).
//!
//! Invariants every backend keeps (`tests/it/support/conformance.rs`):
//!
//! - One level only: a member is never an alias, a channel with channels
//!   of its own is never linked (the commit refuses either: a conflict).
//! - Links change only under the member's turn (and a link also under the
//!   channel's), so a turn held on a resolved member cannot see its alias
//!   move; a request that waited re-resolves once its turn comes.
//! - An alias lives as long as its member: every read of the member slides
//!   its aliases' lifetimes, and they expire with it.

use crate::key::ConvKey;

/// A link change, carried by the member's commit ([`crate::backend::Commit::link`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// This channel becomes an alias of the committing (member) key.
    Link(ConvKey),
    /// This channel is an alias of the committing key no more.
    Unlink(ConvKey),
}

impl LinkChange {
    /// The channel the change is about.
    pub fn channel(&self) -> &ConvKey {
        match self {
            LinkChange::Link(c) | LinkChange::Unlink(c) => c,
        }
    }

    /// The audit trail's and the history's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            LinkChange::Link(_) => "link",
            LinkChange::Unlink(_) => "unlink",
        }
    }
}

/// `GET /v1/links/<namespace>/<id>`: whose alias a key is, and which
/// channels are aliases of it (stored keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// The member this key is an alias of.
    pub member: Option<ConvKey>,
    /// The channels linked to this key, sorted.
    pub channels: Vec<ConvKey>,
}
