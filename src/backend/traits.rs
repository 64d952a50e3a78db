//! The backend traits, split by caller: [`Turns`] for the request path,
//! [`Inspect`] for the admin API, [`Lifecycle`] for the process and its
//! maintenance jobs; [`Backend`] is all three.

use std::future::Future;
use std::time::Duration;

use super::{
    audit, link::Links, Adoption, Dumped, Held, Loaded, ScanPage, StoreError, TurnError, TurnToken,
    Version,
};
use crate::key::ConvKey;
use crate::privacy::marks::{MarkWrites, Recorded};

/// The request path's side of a backend: a conversation's turn with its
/// record (taken, or adopted from another replica for a late report) and
/// how the backend names keys. See the module docs.
pub trait Turns: Send + Sync + 'static {
    type Held: Held;

    /// Waits (at most `wait`) for the conversation's turn, then reads its
    /// record and, with a dedupe id, that id's recorded response.
    fn begin(
        &self,
        key: &ConvKey,
        wait: Duration,
        dedupe_id: Option<&str>,
    ) -> impl Future<Output = Result<(Self::Held, Loaded), TurnError>> + Send;

    /// A turn deferred by another replica (or by this one, before a
    /// restart), taken over by its token for the late report: the turn,
    /// fenced as its holder's, and the record ([`Adoption`]). In-process
    /// turns are only ever reported to their own process: never adopted.
    fn adopt(
        &self,
        token: &TurnToken,
    ) -> impl Future<Output = Result<Adoption<Self::Held>, StoreError>> + Send;

    /// `key` as this backend stores it (hashed under `store.hash_keys`), to
    /// compare with the stored keys it reports ([`Loaded::member`]).
    fn stored_name(&self, key: &ConvKey) -> ConvKey {
        key.clone()
    }
}

/// The admin API's side: records, kept versions, audit events, dumps and
/// links, read outside any turn.
pub trait Inspect: Send + Sync + 'static {
    /// Reads a record without taking the turn (the admin API's GET).
    fn load(&self, key: &ConvKey) -> impl Future<Output = Result<Loaded, StoreError>> + Send;

    /// The kept versions of a conversation (`store.history`), newest
    /// first; empty with history off.
    fn history(
        &self,
        key: &ConvKey,
    ) -> impl Future<Output = Result<Vec<Version>, StoreError>> + Send;

    /// Audit events (`[audit]`): one key's newest first, or those after an
    /// id oldest first; at most `query.limit`.
    fn audit(
        &self,
        query: &audit::AuditQuery,
    ) -> impl Future<Output = Result<Vec<audit::AuditEntry>, StoreError>> + Send;

    /// A record as stored (version, stored value, lifetime left), outside
    /// any turn, for `statehold export`; `None` when there is none. `key`
    /// is a stored key, as [`Lifecycle::scan`] gives it.
    fn dump(
        &self,
        key: &ConvKey,
    ) -> impl Future<Output = Result<Option<Dumped>, StoreError>> + Send;

    /// Whose alias `key` is, and which channels are linked to it
    /// ([`super::link`]); outside any turn.
    fn links(&self, key: &ConvKey) -> impl Future<Output = Result<Links, StoreError>> + Send;

    /// Appends a `view` event to the audit trail (nothing with `[audit]`
    /// off): an operator was shown `key`'s snapshot at `version` (the
    /// console's reveal and diff). Not a change: no version moves and no
    /// turn is taken, so it needs none.
    fn note_view(
        &self,
        key: &ConvKey,
        note: &audit::AuditNote,
        version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The process's side: health, expiry, shutdown, the key marks and the
/// scans that maintenance jobs page through.
pub trait Lifecycle: Send + Sync + 'static {
    /// Cheap reachability check for `/readyz`.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The key marks a shared store records ([`crate::privacy::marks`]);
    /// `None` where the store is one process's own (the embedded file).
    fn recorded_marks(&self) -> impl Future<Output = Result<Option<Recorded>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// Writes key marks: the hashing mark only while the store still holds
    /// `expected` (`Ok(false)`: another replica recorded one meanwhile).
    fn record_marks(
        &self,
        expected: Option<&str>,
        writes: &MarkWrites,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (expected, writes);
        async { Ok(true) }
    }

    /// Deletes expired records; returns how many. Backends whose engine
    /// expires keys itself return 0.
    fn purge_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// At shutdown: waits (at most `within`) until released turns have
    /// reached the backend, so other replicas need not wait out leases.
    fn quiesce(&self, within: Duration) -> impl Future<Output = ()> + Send;

    /// Up to about `count` stored conversation keys after `cursor` (`None`:
    /// from the start), and the cursor of the next page (`None`: done).
    /// For maintenance (rekey, migrate), never on the request path; a key may come
    /// twice across pages, and keys written meanwhile may be missed.
    fn scan(
        &self,
        cursor: Option<String>,
        count: usize,
    ) -> impl Future<Output = Result<ScanPage, StoreError>> + Send;
}

/// One storage and coordination backend: all three sides. Callers that
/// need one side bound on it alone ([`Turns`], [`Inspect`], [`Lifecycle`]).
pub trait Backend: Turns + Inspect + Lifecycle {}

impl<T: Turns + Inspect + Lifecycle> Backend for T {}

// Decorators over a backend (`audit_log.rs`, `fallback.rs`, the tests'
// fault injector) change one or two calls and hand the rest to the store
// underneath: these write the handing-on once. Each expects a type with
// one parameter `B` and an `inner` field.

/// `impl Lifecycle` for a decorator that hands every call to the store
/// underneath: health, expiry, shutdown, key marks and scans are the
/// store's own.
#[doc(hidden)]
#[macro_export]
macro_rules! delegate_lifecycle {
    ($decorator:ident) => {
        impl<B: $crate::backend::Backend> $crate::backend::Lifecycle for $decorator<B> {
            async fn ping(&self) -> Result<(), $crate::backend::StoreError> {
                self.inner.ping().await
            }

            async fn recorded_marks(
                &self,
            ) -> Result<Option<$crate::privacy::marks::Recorded>, $crate::backend::StoreError> {
                self.inner.recorded_marks().await
            }

            async fn record_marks(
                &self,
                expected: Option<&str>,
                writes: &$crate::privacy::marks::MarkWrites,
            ) -> Result<bool, $crate::backend::StoreError> {
                self.inner.record_marks(expected, writes).await
            }

            async fn purge_expired(&self) -> Result<u64, $crate::backend::StoreError> {
                self.inner.purge_expired().await
            }

            async fn quiesce(&self, within: std::time::Duration) {
                self.inner.quiesce(within).await
            }

            async fn scan(
                &self,
                cursor: Option<String>,
                count: usize,
            ) -> Result<$crate::backend::ScanPage, $crate::backend::StoreError> {
                self.inner.scan(cursor, count).await
            }
        }
    };
}

/// `impl Inspect` for a decorator that hands every read to the store
/// underneath.
#[doc(hidden)]
#[macro_export]
macro_rules! delegate_inspect {
    ($decorator:ident) => {
        impl<B: $crate::backend::Backend> $crate::backend::Inspect for $decorator<B> {
            async fn load(
                &self,
                key: &$crate::key::ConvKey,
            ) -> Result<$crate::backend::Loaded, $crate::backend::StoreError> {
                self.inner.load(key).await
            }

            async fn history(
                &self,
                key: &$crate::key::ConvKey,
            ) -> Result<Vec<$crate::backend::Version>, $crate::backend::StoreError> {
                self.inner.history(key).await
            }

            async fn audit(
                &self,
                query: &$crate::backend::audit::AuditQuery,
            ) -> Result<Vec<$crate::backend::audit::AuditEntry>, $crate::backend::StoreError> {
                self.inner.audit(query).await
            }

            async fn dump(
                &self,
                key: &$crate::key::ConvKey,
            ) -> Result<Option<$crate::backend::Dumped>, $crate::backend::StoreError> {
                self.inner.dump(key).await
            }

            async fn links(
                &self,
                key: &$crate::key::ConvKey,
            ) -> Result<$crate::backend::Links, $crate::backend::StoreError> {
                self.inner.links(key).await
            }

            async fn note_view(
                &self,
                key: &$crate::key::ConvKey,
                note: &$crate::backend::audit::AuditNote,
                version: u64,
            ) -> Result<(), $crate::backend::StoreError> {
                self.inner.note_view(key, note, version).await
            }
        }
    };
}

/// Inside `impl Held for` a decorator's turn: every method but `finish`,
/// handed to the turn underneath.
#[doc(hidden)]
#[macro_export]
macro_rules! delegate_held_but_finish {
    () => {
        fn waited(&self) -> std::time::Duration {
            self.inner.waited()
        }

        fn stored_key(&self) -> &$crate::key::ConvKey {
            self.inner.stored_key()
        }

        async fn defer(
            &mut self,
            token: &$crate::backend::TurnToken,
            dedupe: Option<(String, $crate::backend::RecordedResponse)>,
            within: std::time::Duration,
        ) -> Result<(), $crate::backend::StoreError> {
            self.inner.defer(token, dedupe, within).await
        }

        async fn lost(&mut self) {
            self.inner.lost().await
        }
    };
}
