//! A real store that fails on demand: a backend (the embedded store, in
//! the in-process tests) behind a switch that makes `begin` or a commit
//! return a chosen kind of `StoreError`: an outage, damaged data, a
//! refused write. Everything else is the wrapped store's own behaviour;
//! nothing here imitates a store.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use statehold::backend::{
    Adoption, Backend, Commit, CommitOutcome, Held, Lifecycle, Loaded, ScanPage, StoreError,
    TurnError, TurnToken, Turns,
};
use statehold::key::ConvKey;
use statehold::privacy::marks::{MarkWrites, Recorded};

/// A kind of store failure, as the backends report it.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The store cannot be reached (`StoreError::Unavailable`).
    Outage,
    /// The record does not read as one (`StoreError::Corrupt`).
    Damaged,
    /// The store refused the operation (`StoreError::Script`).
    Refused,
}

impl Fault {
    fn error(self) -> StoreError {
        match self {
            Fault::Outage => StoreError::Unavailable("injected: connection refused".into()),
            Fault::Damaged => StoreError::Corrupt("injected: not a record".into()),
            Fault::Refused => StoreError::Script("injected: ERR refused".into()),
        }
    }
}

/// Which operations fail now; changed by the test while statehold serves.
#[derive(Default)]
pub struct Faults {
    begin: Mutex<Option<Fault>>,
    commit: Mutex<Option<Fault>>,
}

impl Faults {
    /// Every turn's `begin` (the request path's load) fails with `fault`.
    pub fn fail_begin(&self, fault: Option<Fault>) {
        *self.begin.lock() = fault;
    }

    /// Every commit (the save at the end of a turn) fails with `fault`;
    /// the turn is released all the same, as a failed commit releases it.
    pub fn fail_commit(&self, fault: Option<Fault>) {
        *self.commit.lock() = fault;
    }
}

pub struct Faulty<B> {
    inner: B,
    faults: Arc<Faults>,
}

impl<B> Faulty<B> {
    pub fn new(inner: B) -> (Faulty<B>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let faulty = Faulty {
            inner,
            faults: Arc::clone(&faults),
        };
        (faulty, faults)
    }
}

pub struct FaultyHeld<H> {
    inner: H,
    faults: Arc<Faults>,
}

impl<B: Backend> Turns for Faulty<B> {
    type Held = FaultyHeld<B::Held>;

    async fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> Result<(Self::Held, Loaded), TurnError> {
        let fault = *self.faults.begin.lock();
        if let Some(fault) = fault {
            return Err(TurnError::Store(fault.error()));
        }
        let (inner, loaded) = self.inner.begin(key, wait, dedupe_id).await?;
        let faults = Arc::clone(&self.faults);
        Ok((FaultyHeld { inner, faults }, loaded))
    }

    async fn adopt(&self, token: &TurnToken) -> Result<Adoption<Self::Held>, StoreError> {
        let faults = Arc::clone(&self.faults);
        let adoption = self.inner.adopt(token).await?;
        Ok(adoption.map(|inner| FaultyHeld { inner, faults }))
    }

    fn stored_name(&self, key: &ConvKey) -> ConvKey {
        self.inner.stored_name(key)
    }
}

impl<H: Held> Held for FaultyHeld<H> {
    statehold::delegate_held_but_finish!();

    async fn finish(self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let fault = *self.faults.commit.lock();
        match fault {
            // Dropping the inner turn releases it, as a failed commit does.
            Some(fault) => Err(fault.error()),
            None => self.inner.finish(commit).await,
        }
    }
}

statehold::delegate_inspect!(Faulty);

impl<B: Backend> Lifecycle for Faulty<B> {
    async fn ping(&self) -> Result<(), StoreError> {
        let fault = *self.faults.begin.lock();
        match fault {
            Some(Fault::Outage) => Err(Fault::Outage.error()),
            _ => self.inner.ping().await,
        }
    }

    async fn recorded_marks(&self) -> Result<Option<Recorded>, StoreError> {
        self.inner.recorded_marks().await
    }

    async fn record_marks(
        &self,
        expected: Option<&str>,
        writes: &MarkWrites,
    ) -> Result<bool, StoreError> {
        self.inner.record_marks(expected, writes).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }

    async fn quiesce(&self, within: Duration) {
        self.inner.quiesce(within).await
    }

    async fn scan(&self, cursor: Option<String>, count: usize) -> Result<ScanPage, StoreError> {
        self.inner.scan(cursor, count).await
    }
}
