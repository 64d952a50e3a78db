//! The embedded store's on-disk rows: its redb tables and the byte
//! layout of their values.
//!
//! - `snapshots`: `<ns>:<id>` → `version u64 | expires_ms u64 | has_state u8 | json`
//! - `dedupe`: `<ns>:<id>\x1f<dedupe id>` → `expires_ms u64 | recorded response`
//! - `expiry`: `(expires_ms, tag + table key)` → `()`, the index the purge walks,
//!   so purging costs what expired, not what is stored.
//! - `history`: `(<ns>:<id>, version)` → [`crate::backend::Version::encode`],
//!   the last `store.history` versions; removed with their snapshot.
//! - `audit`: sequence number → event JSON, the last `audit.max_events`.
//! - `aliases`: a linked channel's `<ns>:<id>` → its member's `<ns>:<id>`;
//!   `member_links`: `(member, channel)` → `()`. Both go with the member's
//!   record (`backend/link.rs`), which a link creates if need be.

use bytes::Bytes;
use redb::TableDefinition;

use crate::backend::{RecordedResponse, StoreError};
use crate::key::ConvKey;

pub(super) const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
pub(super) const DEDUPE: TableDefinition<&str, &[u8]> = TableDefinition::new("dedupe");
pub(super) const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
pub(super) const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(super) const ALIASES: TableDefinition<&str, &str> = TableDefinition::new("aliases");
pub(super) const MEMBER_LINKS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("member_links");

/// A stored `<ns>:<id>` as a key.
pub(super) fn conv_of(stored: &str) -> Option<ConvKey> {
    stored.split_once(':').map(|(ns, id)| ConvKey::new(ns, id))
}

pub(super) const TAG_SNAPSHOT: char = 's';
pub(super) const TAG_DEDUPE: char = 'd';
/// Commits applied in one transaction at most.
pub(super) const MAX_BATCH: usize = 512;
/// Expired entries deleted per purge transaction, so a purge never holds the
/// writer long.
pub(super) const PURGE_CHUNK: usize = 5_000;

/// A decoded `snapshots` row.
pub(super) struct Record<'a> {
    pub(super) version: u64,
    pub(super) expires_ms: u64,
    pub(super) state: Option<&'a [u8]>,
}

pub(super) fn decode_record(raw: &[u8]) -> Result<Record<'_>, StoreError> {
    if raw.len() < 17 {
        return Err(StoreError::Corrupt("snapshot record too short".into()));
    }
    let version = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
    let expires_ms = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
    let state = (raw[16] == 1).then(|| &raw[17..]);
    Ok(Record {
        version,
        expires_ms,
        state,
    })
}

pub(super) fn encode_record(version: u64, expires_ms: u64, state: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + state.map_or(0, <[u8]>::len));
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    out.push(u8::from(state.is_some()));
    out.extend_from_slice(state.unwrap_or_default());
    out
}

pub(super) fn dedupe_key(key: &ConvKey, id: &str) -> String {
    format!("{}\u{1f}{id}", key.as_str())
}

pub(super) fn tagged(tag: char, key: &str) -> String {
    let mut s = String::with_capacity(1 + key.len());
    s.push(tag);
    s.push_str(key);
    s
}

pub(super) fn live_recorded(raw: &[u8], now: u64) -> Result<Option<RecordedResponse>, StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Corrupt("dedupe record too short".into()));
    }
    let expires = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
    if expires <= now {
        return Ok(None);
    }
    RecordedResponse::decode(Bytes::copy_from_slice(&raw[8..])).map(Some)
}
