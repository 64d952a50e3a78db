//! Turn-taking: requests of one conversation reach the bot one at a time, in
//! arrival order; different conversations never wait on each other.
//!
//! [`Turns`] is the interface. [`LocalTurns`] serves one process (used with
//! the embedded store, whose file lock makes sure only one statehold serves a
//! database); [`RedisTurns`] serves every replica sharing a Redis, with a
//! leased, fenced ticket queue per conversation.

pub mod local;
pub mod redis;

use std::future::Future;
use std::time::Duration;

pub use local::LocalTurns;
pub use redis::RedisTurns;

use crate::key::ConvKey;
use crate::store::{
    Commit, CommitOutcome, Loaded, RecordedResponse, StateChange, Store, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// The conversation stayed busy for the whole wait bound.
    #[error("waited {0:?} for the conversation's turn")]
    WaitExceeded(Duration),
    /// The coordination backend could not be reached.
    #[error("turn coordination unavailable: {0}")]
    Unavailable(String),
}

/// A held turn; dropping it releases the turn.
pub trait Turn: Send + Sync {
    /// Fencing token: identifies this turn. A shared store refuses a commit
    /// whose token no longer holds the conversation's lease.
    fn fence(&self) -> u64;

    /// The conversation's record, when the backend read it in the same
    /// round trip that granted the turn (see [`Turns::acquire_for_request`]).
    fn take_loaded(&mut self) -> Option<Loaded> {
        None
    }

    /// The store already released this turn (a commit with `ends_turn`);
    /// dropping it must not release it again.
    fn mark_released(&mut self) {}
}

/// Ends a held turn with one atomic commit; a shared store releases the
/// turn in the same step. The one place the request path, the spool's
/// write-back and the admin API end a turn with a write: when the commit
/// fails, dropping the turn releases it instead.
pub async fn commit_and_release<S: Store, U: Turn>(
    store: &S,
    key: &ConvKey,
    mut turn: U,
    expected_version: Option<u64>,
    change: StateChange,
    dedupe: Option<(String, RecordedResponse)>,
) -> Result<CommitOutcome, StoreError> {
    let commit = Commit {
        expected_version,
        fence: turn.fence(),
        change,
        dedupe,
        ends_turn: true,
    };
    let result = store.commit(key, commit).await;
    if result.is_ok() {
        turn.mark_released();
    }
    result
}

pub trait Turns: Send + Sync + 'static {
    type Turn: Turn + 'static;

    /// Waits (at most `wait`) for the conversation's turn. Waiters are served
    /// in the order they called `acquire`.
    fn acquire(
        &self,
        key: &ConvKey,
        wait: Duration,
    ) -> impl Future<Output = Result<Self::Turn, TurnError>> + Send;

    /// `acquire` for a request that will load the conversation next: a
    /// backend that can read the record in the same round trip does so and
    /// hands it over through [`Turn::take_loaded`].
    fn acquire_for_request(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> impl Future<Output = Result<Self::Turn, TurnError>> + Send {
        let _ = dedupe_id;
        self.acquire(key, wait)
    }

    /// At shutdown: waits (at most `within`) until released turns have
    /// reached the coordination backend, so other replicas need not wait
    /// for leases to expire.
    fn quiesce(&self, within: Duration) -> impl Future<Output = ()> + Send {
        let _ = within;
        async {}
    }
}
