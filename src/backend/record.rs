//! The types a backend speaks: a conversation's record as loaded, the
//! commit that ends a turn, recorded responses for redeliveries, and the
//! errors of a record operation.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

pub use crate::contract::StateChange;
use crate::key::ConvKey;

/// A conversation's record as read at the start of its turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The record's version; 0 when none exists.
    pub version: u64,
    /// The snapshot's JSON text; `None` when none is stored (or cleared).
    pub state: Option<Bytes>,
    /// The recorded response of the request's dedupe id, if already handled.
    pub duplicate: Option<RecordedResponse>,
    /// Why a stored snapshot could not be opened (a key no longer
    /// configured, a damaged value): `state` is then `None`.
    pub undecryptable: Option<crate::privacy::OpenError>,
    /// The member whose turn and record these are, when the key asked for
    /// is a linked channel (an alias, [`super::link`]): the stored key.
    pub member: Option<ConvKey>,
    /// Channels are linked to this record's key (it is a member).
    pub linked: bool,
}

impl Loaded {
    /// The version the bot is told: the snapshot's, or 0 without one.
    pub fn visible_version(&self) -> u64 {
        if self.state.is_some() {
            self.version
        } else {
            0
        }
    }
}

/// One atomic write at the end of a turn.
#[derive(Clone, Debug)]
pub struct Commit {
    /// Apply only if the record is still at this version (`None`: always).
    pub expected_version: Option<u64>,
    pub change: StateChange,
    /// Dedupe id and the response to answer its redeliveries with.
    pub dedupe: Option<(String, RecordedResponse)>,
    /// Who wrote it: named in the history (`store.history`).
    pub origin: Origin,
    /// With `[audit]` on: the event's details only the writer knows; the
    /// backend appends the event with the change.
    pub audit: Option<Box<super::audit::AuditNote>>,
    /// A channel linked to or unlinked from this (member) key, atomically
    /// with the change ([`super::link`]).
    pub link: Option<Box<super::link::LinkChange>>,
}

impl Commit {
    /// Writes only a dedupe record (and refreshes the TTL): a deferred
    /// turn's answer, recorded while its turn stays held.
    pub fn dedupe_only(dedupe: Option<(String, RecordedResponse)>) -> Commit {
        Commit {
            expected_version: None,
            change: StateChange::Keep,
            dedupe,
            origin: Origin::Bot,
            audit: None,
            link: None,
        }
    }

    /// A maintenance write (rekey, migrate): no dedupe record, no audit
    /// event, applied only on `expected_version`.
    pub fn maintenance(expected_version: u64, change: StateChange) -> Commit {
        Commit {
            expected_version: Some(expected_version),
            change,
            dedupe: None,
            origin: Origin::Maintenance,
            audit: None,
            link: None,
        }
    }
}

/// Where a write came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// The bot's report (or its clear) on a request.
    #[default]
    Bot,
    /// `PUT`/`DELETE /v1/state/...`.
    Admin,
    /// A snapshot spooled during an outage, written back.
    SpoolWriteBack,
    /// A rollback to an earlier version (admin API or the bot's header).
    Rollback,
    /// `statehold rekey` or `migrate`.
    Maintenance,
    /// `statehold import`: the record as exported, at exactly this version
    /// with this much lifetime left, and only over an older one (or none),
    /// so an import is idempotent and never undoes a newer write.
    Import { version: u64, ttl_ms: u64 },
}

impl Commit {
    /// The history's and the audit trail's `kind` of this commit: a link
    /// change names itself, else [`Origin::kind`].
    pub fn kind(&self) -> &'static str {
        match &self.link {
            Some(link) => link.kind(),
            None => self.origin.kind(&self.change),
        }
    }
}

impl Origin {
    /// The history's `kind` of a version this origin wrote with `change`.
    pub fn kind(self, change: &StateChange) -> &'static str {
        let clear = matches!(change, StateChange::Clear | StateChange::Forget);
        match (self, clear) {
            (Origin::Bot, false) => "write",
            (Origin::Bot, true) => "clear",
            (Origin::Admin, false) => "admin_put",
            (Origin::Admin, true) => "admin_delete",
            (Origin::SpoolWriteBack, _) => "spool_write_back",
            (Origin::Rollback, _) => "rollback",
            (Origin::Maintenance, _) => "reseal",
            (Origin::Import { .. }, _) => "import",
        }
    }
}

/// A record as stored, for `statehold export`: the snapshot as the store
/// holds it (sealed under `[store.encryption]`), `None` for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dumped {
    pub version: u64,
    pub state: Option<Bytes>,
    /// Lifetime left, in milliseconds.
    pub ttl_ms: u64,
}

/// One kept version of a conversation (`store.history`), newest first in
/// [`crate::backend::Inspect::history`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version: u64,
    /// When it was written (ms since the Unix epoch).
    pub at_ms: u64,
    /// What wrote it ([`Origin::kind`]).
    pub kind: String,
    /// The snapshot as stored (`None`: a clear).
    pub state: Option<Bytes>,
}

impl Version {
    /// `kind u8-length | kind | at_ms u64 | has_state u8 | state`: one
    /// history entry as both backends store it.
    pub fn encode(kind: &str, at_ms: u64, state: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + kind.len() + state.map_or(0, <[u8]>::len));
        out.push(kind.len() as u8);
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(&at_ms.to_le_bytes());
        out.push(u8::from(state.is_some()));
        out.extend_from_slice(state.unwrap_or_default());
        out
    }

    pub fn decode(version: u64, raw: &[u8]) -> Result<Version, StoreError> {
        let damaged = || StoreError::Corrupt("history entry damaged".into());
        let (&len, rest) = raw.split_first().ok_or_else(damaged)?;
        let len = usize::from(len);
        if rest.len() < len + 9 {
            return Err(damaged());
        }
        let kind = std::str::from_utf8(&rest[..len]).map_err(|_| damaged())?;
        let at_ms = u64::from_le_bytes(rest[len..len + 8].try_into().map_err(|_| damaged())?);
        let state = (rest[len + 8] == 1).then(|| Bytes::copy_from_slice(&rest[len + 9..]));
        Ok(Version {
            version,
            at_ms,
            kind: kind.to_string(),
            state,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written; the record is now at `version`.
    Committed { version: u64 },
    /// Nothing written: the record's version (or fence) moved on.
    Conflict { current: u64 },
}

pub use crate::error::Cause;

/// Why a store operation failed. The variant is the kind, and decides
/// what follows: only an outage ([`StoreError::is_outage`]) marks the
/// store down, starts the recovery settle and spools; bad data and
/// refused scripts concern one conversation and are answered as such.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, or answering that it cannot serve now.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    #[error("store operation timed out")]
    Timeout,
    /// A stored record that does not read as one (damaged data).
    #[error("stored data is damaged: {0}")]
    Corrupt(#[source] Cause),
    /// The store answered one of our scripts or commands with an error.
    #[error("the store refused the operation: {0}")]
    Script(#[source] Cause),
    /// A value could not be sealed (`store.encryption`).
    #[error("a value could not be sealed: {0}")]
    Seal(#[source] Cause),
    /// Written on the primary, but fewer replicas than
    /// `store.min_replica_acks` confirmed it in time: a failover could lose
    /// it, so it is not acknowledged.
    #[error("written, but only {acked} of {wanted} replicas confirmed it")]
    Unreplicated { acked: u64, wanted: u32 },
    /// A well-formed question this store cannot answer as asked (another
    /// store's audit position): the caller's to fix, not an outage.
    #[error("{0}")]
    Unanswerable(&'static str),
}

impl StoreError {
    /// The store itself is out (unreachable or too slow): the only kind
    /// that changes store health, waits for recovery, and spools.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout)
    }
}

/// A bot response kept to answer redeliveries: status, end-to-end headers
/// and the stripped body, with the SHA-256 of the request body it answered:
/// only a byte-identical redelivery is answered from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// `None` only for records written before digests were kept.
    pub request_digest: Option<[u8; 32]>,
}

/// First byte of a record that carries a request digest. Older records
/// start with the status's high byte, which is at most 0x03.
const DIGEST_MARK: u8 = 0xD1;

impl RecordedResponse {
    /// Whether `digest` (of a redelivery's body) is the request this answered.
    pub fn answers(&self, digest: &[u8; 32]) -> bool {
        self.request_digest.is_none_or(|d| &d == digest)
    }

    /// `[0xD1, digest(32)]`, `u16 status, u16 count, (u16 name len, name,
    /// u32 value len, value)*, body`.
    pub fn encode(&self) -> Bytes {
        let size = 33
            + 4
            + self
                .headers
                .iter()
                .map(|(n, v)| 6 + n.as_str().len() + v.len())
                .sum::<usize>()
            + self.body.len();
        let mut out = BytesMut::with_capacity(size);
        if let Some(digest) = &self.request_digest {
            out.put_u8(DIGEST_MARK);
            out.put_slice(digest);
        }
        out.put_u16(self.status.as_u16());
        out.put_u16(self.headers.len().min(u16::MAX as usize) as u16);
        for (name, value) in self.headers.iter().take(u16::MAX as usize) {
            out.put_u16(name.as_str().len() as u16);
            out.put_slice(name.as_str().as_bytes());
            out.put_u32(value.len() as u32);
            out.put_slice(value.as_bytes());
        }
        out.put_slice(&self.body);
        out.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<RecordedResponse, StoreError> {
        let bad = || StoreError::Corrupt("recorded response".into());
        let mut request_digest = None;
        if buf.first() == Some(&DIGEST_MARK) {
            if buf.remaining() < 33 {
                return Err(bad());
            }
            buf.advance(1);
            let mut digest = [0u8; 32];
            buf.copy_to_slice(&mut digest);
            request_digest = Some(digest);
        }
        if buf.remaining() < 4 {
            return Err(bad());
        }
        let status = StatusCode::from_u16(buf.get_u16()).map_err(|_| bad())?;
        let count = buf.get_u16() as usize;
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            if buf.remaining() < 2 {
                return Err(bad());
            }
            let n = buf.get_u16() as usize;
            if buf.remaining() < n + 4 {
                return Err(bad());
            }
            let name = HeaderName::from_bytes(&buf.split_to(n)).map_err(|_| bad())?;
            let v = buf.get_u32() as usize;
            if buf.remaining() < v {
                return Err(bad());
            }
            let value = HeaderValue::from_maybe_shared(buf.split_to(v)).map_err(|_| bad())?;
            headers.push((name, value));
        }
        Ok(RecordedResponse {
            status,
            headers,
            body: buf,
            request_digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_response_roundtrip() {
        let r = RecordedResponse {
            status: StatusCode::CREATED,
            headers: vec![(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from_static(b"{\"ok\":true}"),
            request_digest: Some([7; 32]),
        };
        assert_eq!(RecordedResponse::decode(r.encode()).unwrap(), r);
        assert!(r.answers(&[7; 32]) && !r.answers(&[8; 32]));
        let old = RecordedResponse {
            request_digest: None,
            ..r.clone()
        };
        assert_eq!(RecordedResponse::decode(old.encode()).unwrap(), old);
        assert!(RecordedResponse::decode(Bytes::from_static(b"\x00")).is_err());
        assert!(RecordedResponse::decode(Bytes::from_static(b"\x00\xc8\x00\x05")).is_err());
    }
}
