//! Backends: where conversations live and how their turns are taken. A
//! backend is one unit: its records, its turns, its connection and its
//! error classification together, so a turn and a record of one backend
//! can never be mixed with another's.
//!
//! - [`embedded`]: a redb file and in-process turns (one node).
//! - [`redis`]: Redis, shared by every replica (leased, fenced turns).
//! - [`private`]: either, with hashed keys and sealed values at rest
//!   ([`migrate`]: moving plaintext keys onto hashed ones; [`keymarks`]:
//!   the check that replicas of a shared store hold the same keys).
//! - [`audit_log`]: the store underneath the privacy wrapper, each
//!   audited commit mirrored to the log (`audit.log`); [`fallback`]: over
//!   the privacy wrapper, a conversation still under its plaintext key
//!   (`store.plaintext_fallback`). Statehold serves
//!   `PlaintextFallback<Private<AuditLog<store>>>`; the conformance suite
//!   runs over that whole stack too.
//!
//! Errors keep their kind ([`StoreError`]): only an outage (unreachable,
//! too slow) marks the store down, waits for recovery and spools; damaged
//! data or a refused script concern one conversation.
//!
//! # A turn
//!
//! [`Turns::begin`] waits for the conversation's turn (arrival order; other
//! conversations never wait) and reads its record with the dedupe lookup:
//! on Redis both in one round trip. The [`Held`] turn ends one of two ways:
//! [`Held::finish`] writes one atomic commit and releases the turn in the
//! same step, or the `Held` is dropped (a bot error, a cancelled request, a
//! failed commit) and the turn is released at once. No other sequence
//! exists, so the request path, the spool's write-back and the admin API
//! end turns alike.
//!
//! # Records (checked by `tests/it/support/conformance.rs` on every backend)
//!
//! - A conversation has one record: a monotonically increasing `version`
//!   and, unless cleared, a snapshot (JSON text). Versions survive `Clear`
//!   (a tombstone) so a write based on an old version can always be told
//!   apart; an expired record is gone, version included.
//! - A read never returns an expired snapshot; it also reports whether a
//!   dedupe id already has a recorded response. Reads slide the TTL.
//! - A commit is atomic: compare the expected version (and, across
//!   replicas, the turn's fencing token), apply the change, set the sliding
//!   TTL, record the dedupe response, release the turn: all or nothing. A
//!   `Keep` commit only refreshes the TTL.
//! - Dedupe records expire `dedupe_window` after they were written; they do
//!   not slide.

pub mod audit;
pub mod audit_log;
pub mod clock;
pub mod deferral;
pub mod embedded;
pub mod fallback;
pub mod keymarks;
pub mod lifetime;
pub mod link;
pub mod migrate;
pub mod private;
pub mod record;
pub mod redis;
pub mod reseal;
mod sealed;
mod traits;

use std::future::Future;
use std::time::Duration;

pub use clock::now_ms;
pub use deferral::TurnToken;
pub use lifetime::{Lifetimes, Retention};
pub use link::{LinkChange, Links};
pub use record::{
    Cause, Commit, CommitOutcome, Dumped, Loaded, Origin, RecordedResponse, StateChange,
    StoreError, Version,
};
pub use traits::{Backend, Inspect, Lifecycle, Turns};

use crate::key::ConvKey;

/// Why a turn could not be begun.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// The conversation stayed busy for the whole wait bound.
    #[error("waited {0:?} for the conversation's turn")]
    WaitExceeded(Duration),
    /// The store failed: its kind says whether it is out or the record bad.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// For maintenance (migrate, reseal), a turn not granted is a failed
/// store operation: a conversation busy past the wait counts as a timeout.
impl From<TurnError> for StoreError {
    fn from(e: TurnError) -> StoreError {
        match e {
            TurnError::Store(e) => e,
            TurnError::WaitExceeded(_) => StoreError::Timeout,
        }
    }
}

/// A conversation's turn, held. Dropping it releases the turn.
pub trait Held: Send + 'static {
    /// How long `begin` waited in the queue before the turn was granted
    /// (the rest of `begin` was reading the record).
    fn waited(&self) -> Duration;

    /// Ends the turn with one atomic commit. When the commit fails the
    /// turn is released all the same.
    fn finish(
        self,
        commit: Commit,
    ) -> impl Future<Output = Result<CommitOutcome, StoreError>> + Send;

    /// The key this turn's record is stored under (a linked channel's
    /// member's; hashed under `store.key_secret`): what a turn token names.
    fn stored_key(&self) -> &ConvKey;

    /// Keeps the turn past the bot's answer (a deferred turn): writes the
    /// answer's dedupe record, so redeliveries are answered from it, and
    /// registers `token` for `within`, so that any replica can
    /// [`Turns::adopt`] the turn for its late report. The turn stays
    /// held, its lease kept alive, until it is finished or dropped.
    fn defer(
        &mut self,
        token: &TurnToken,
        dedupe: Option<(String, RecordedResponse)>,
        within: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Resolves once the turn was ended elsewhere (another replica
    /// committed its late report, or its lease was taken over); never for
    /// in-process turns.
    fn lost(&mut self) -> impl Future<Output = ()> + Send;
}

/// What [`Turns::adopt`] found for a turn token.
pub enum Adoption<H> {
    /// The deferred turn, taken over (its token is used up), and its record.
    Adopted(H, Loaded),
    /// The conversation's turn is held and not deferred (yet): a report
    /// that overtook the answer deferring it (a bot that reports from a
    /// background task before its answer reached statehold).
    Pending,
    /// No turn that token names is held and deferred.
    Unknown,
}

impl<H> Adoption<H> {
    /// The same answer around another turn type (a wrapping backend's).
    pub fn map<T>(self, wrap: impl FnOnce(H) -> T) -> Adoption<T> {
        match self {
            Adoption::Adopted(held, loaded) => Adoption::Adopted(wrap(held), loaded),
            Adoption::Pending => Adoption::Pending,
            Adoption::Unknown => Adoption::Unknown,
        }
    }
}

/// One page of [`Lifecycle::scan`].
#[derive(Debug, Default)]
pub struct ScanPage {
    pub keys: Vec<ConvKey>,
    pub next: Option<String>,
}
