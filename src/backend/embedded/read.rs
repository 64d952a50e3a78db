//! The embedded store's reads, inline on the caller (a read transaction on
//! cached pages takes microseconds, less than handing it to the blocking
//! pool and back: `cargo bench --bench hot_paths -- embedded/load`): a
//! turn's record with its dedupe lookup and alias check, and the links.

use bytes::Bytes;
use redb::{ReadTransaction, ReadableDatabase};

use super::rows::{
    conv_of, decode_record, dedupe_key, live_recorded, ALIASES, DEDUPE, MEMBER_LINKS, SNAPSHOTS,
};
use super::store::{db_err, EmbeddedStore};
use super::writer::Job;
use crate::backend::{now_ms, Links, Loaded, StoreError};
use crate::key::ConvKey;

/// What a turn's read found.
pub(super) enum TurnRead {
    Loaded(Loaded),
    /// The key asked for is (or is no longer) an alias of another member
    /// than the turn was taken for: take that one's turn instead.
    Moved(Option<ConvKey>),
}

impl EmbeddedStore {
    /// Reads the record (never an expired one) and a dedupe record, outside
    /// a turn (the admin API).
    pub async fn load(&self, key: &ConvKey, dedupe_id: Option<&str>) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        self.read_record(&txn, key, dedupe_id, now_ms())
    }

    /// The read of a turn taken for `member` (`None`: for `asked` itself),
    /// in one read transaction: the alias of `asked` must still name
    /// `member` (links change only under the member's turn, so once it
    /// does, it does for the whole turn), then the held key's record.
    pub(super) fn read_turn(
        &self,
        (asked, member): (&ConvKey, Option<&ConvKey>),
        dedupe_id: Option<&str>,
    ) -> Result<TurnRead, StoreError> {
        let now = now_ms();
        let txn = self.db.begin_read().map_err(db_err)?;
        let alias = live_alias(&txn, asked, now)?;
        if alias.as_ref() != member {
            return Ok(TurnRead::Moved(alias));
        }
        let mut loaded = self.read_record(&txn, member.unwrap_or(asked), dedupe_id, now)?;
        loaded.member = member.cloned();
        Ok(TurnRead::Loaded(loaded))
    }

    /// `held`'s record, its dedupe lookup and whether channels are linked
    /// to it; slides its TTL.
    fn read_record(
        &self,
        txn: &ReadTransaction,
        held: &ConvKey,
        dedupe_id: Option<&str>,
        now: u64,
    ) -> Result<Loaded, StoreError> {
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
        let mut loaded = Loaded::default();
        let mut touch = false;
        if let Some(raw) = snapshots.get(held.as_str()).map_err(db_err)? {
            let record = decode_record(raw.value())?;
            if record.expires_ms > now {
                loaded.version = record.version;
                loaded.state = record.state.map(Bytes::copy_from_slice);
                // Slide the TTL unless a recent write already did (the
                // end-of-turn commit refreshes it too): at most one
                // extra write per 1% of the TTL per conversation.
                let ttl_ms = self.limits.ttl_ms(held);
                touch = record.expires_ms - now < ttl_ms - ttl_ms / 100;
                loaded.linked = has_channels(txn, held)?;
            }
        }
        if let Some(id) = dedupe_id {
            let dedupe = txn.open_table(DEDUPE).map_err(db_err)?;
            if let Some(raw) = dedupe.get(dedupe_key(held, id).as_str()).map_err(db_err)? {
                loaded.duplicate = live_recorded(raw.value(), now)?;
            }
        }
        if touch {
            let touched = Job::Touch {
                key: held.clone(),
                now,
            };
            if self.writer.send(touched).is_err() {
                // Only when the writer stopped (shutdown): the TTL refresh
                // is lost with it, the load itself is fine.
                tracing::debug!("embedded store writer gone: TTL refresh skipped");
            }
        }
        Ok(loaded)
    }

    /// The live record of `key` as stored, with its lifetime left.
    pub fn dump(&self, key: &ConvKey) -> Result<Option<crate::backend::Dumped>, StoreError> {
        let now = now_ms();
        let txn = self.db.begin_read().map_err(db_err)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
        let Some(raw) = snapshots.get(key.as_str()).map_err(db_err)? else {
            return Ok(None);
        };
        let record = decode_record(raw.value())?;
        if record.expires_ms <= now || record.version == 0 {
            return Ok(None);
        }
        Ok(Some(crate::backend::Dumped {
            version: record.version,
            state: record.state.map(Bytes::copy_from_slice),
            ttl_ms: record.expires_ms - now,
        }))
    }

    /// Whose alias `key` is, and its linked channels.
    pub fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let member = live_alias(&txn, key, now_ms())?;
        let links = txn.open_table(MEMBER_LINKS).map_err(db_err)?;
        let k = key.as_str();
        let mut channels = Vec::new();
        for row in links.range((k, "")..).map_err(db_err)? {
            let (at, _) = row.map_err(db_err)?;
            let (m, c) = at.value();
            if m != k {
                break;
            }
            channels.extend(conv_of(c));
        }
        Ok(Links { member, channels })
    }
}

/// The member `key` is an alias of, while the member's record lives
/// (links go with it, purged or not yet).
fn live_alias(
    txn: &ReadTransaction,
    key: &ConvKey,
    now: u64,
) -> Result<Option<ConvKey>, StoreError> {
    let aliases = txn.open_table(ALIASES).map_err(db_err)?;
    let Some(member) = aliases.get(key.as_str()).map_err(db_err)? else {
        return Ok(None);
    };
    let member = member.value().to_string();
    let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
    let live = match snapshots.get(member.as_str()).map_err(db_err)? {
        Some(raw) => decode_record(raw.value())?.expires_ms > now,
        None => false,
    };
    Ok(if live { conv_of(&member) } else { None })
}

/// Channels are linked to `key`.
fn has_channels(txn: &ReadTransaction, key: &ConvKey) -> Result<bool, StoreError> {
    let links = txn.open_table(MEMBER_LINKS).map_err(db_err)?;
    let k = key.as_str();
    Ok(match links.range((k, "")..).map_err(db_err)?.next() {
        Some(row) => row.map_err(db_err)?.0.value().0 == k,
        None => false,
    })
}
