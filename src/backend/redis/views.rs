//! The Redis backend's reads outside the request path, for the admin API
//! and maintenance: links (`GET {t}:a`, `SMEMBERS {t}:k`), kept versions,
//! and the scan of stored conversations (one server or slot
//! by slot on a Cluster).

use bytes::Bytes;

use super::records::{bad_reply, bytes_of, u64_of, RedisRecords};
use crate::backend::{Dumped, Links, ScanPage, StoreError, Version};
use crate::key::ConvKey;

impl RedisRecords {
    /// The record as stored, with its lifetime left (`dump.lua`).
    pub(super) async fn dump(&self, key: &ConvKey) -> Result<Option<Dumped>, StoreError> {
        let mut inv = self.scripts.any().dump.prepare_invoke();
        inv.key(self.conn.keys(key).snapshot());
        let reply: Vec<redis::Value> = self.conn.eval(&inv).await?;
        let [version, state, ttl] = reply.as_slice() else {
            return Err(bad_reply("dump"));
        };
        if *version == redis::Value::Nil {
            return Ok(None);
        }
        let version = u64_of(version).ok_or_else(|| bad_reply("dump"))?;
        // PTTL: -2 gone meanwhile, -1 never (not a record statehold wrote).
        let Some(ttl_ms) = u64_of(ttl).filter(|ms| *ms > 0) else {
            return Ok(None);
        };
        Ok(Some(Dumped {
            version,
            state: bytes_of(state),
            ttl_ms,
        }))
    }

    /// Whose alias `key` is (`GET {t}:a`) and its linked channels
    /// (`SMEMBERS {t}:k`): admin only.
    pub(super) async fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        let keys = self.conn.keys(key);
        let prefix = self.conn.prefix();
        let mut get = redis::cmd("GET");
        get.arg(keys.alias());
        let alias: Option<String> = self.conn.query(&get).await?;
        // On a Cluster the link hash maps channel tags to link ids, and
        // the alias ends with the link id (`cluster_links.rs`).
        let cluster = self.on_cluster();
        let mut members = redis::cmd(if cluster { "HKEYS" } else { "SMEMBERS" });
        members.arg(keys.links());
        let tags: Vec<String> = self.conn.query(&members).await?;
        let member = alias
            .as_deref()
            .and_then(|a| a.split_once(' '))
            .map(|(_, rest)| match rest.rsplit_once(' ') {
                Some((tag, _id)) if cluster => tag,
                _ => rest,
            })
            .and_then(|tag| super::keys::conversation_of_tag(prefix, tag));
        let mut channels: Vec<ConvKey> = tags
            .iter()
            .filter_map(|t| super::keys::conversation_of_tag(prefix, t))
            .collect();
        channels.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(Links { member, channels })
    }

    /// Snapshot keys by `SCAN` (one server), or on a Cluster slot by slot
    /// (`CLUSTER GETKEYSINSLOT` on the slot's primary; the cursor is the
    /// next slot). A slot moving meanwhile may be missed or seen twice:
    /// rekey and migrate are idempotent, and a second run finds the rest.
    pub(super) async fn scan(
        &self,
        cursor: Option<String>,
        count: usize,
    ) -> Result<ScanPage, StoreError> {
        if self.conn.is_cluster() {
            return self.scan_slots(cursor, count).await;
        }
        let prefix = self.conn.prefix();
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor.as_deref().unwrap_or("0"))
            .arg("MATCH")
            .arg(format!("{{{prefix}:*}}:s"))
            .arg("COUNT")
            .arg(count.max(1));
        let (next, names): (String, Vec<String>) = self.conn.query(&cmd).await?;
        Ok(ScanPage {
            keys: names
                .iter()
                .filter_map(|n| super::keys::conversation_of(prefix, n))
                .collect(),
            next: (next != "0").then_some(next),
        })
    }

    async fn scan_slots(
        &self,
        cursor: Option<String>,
        count: usize,
    ) -> Result<ScanPage, StoreError> {
        /// Slots in a Redis Cluster.
        const SLOTS: u16 = 16384;
        /// Far above any slot's share of conversations' keys.
        const KEYS_PER_SLOT: usize = 100_000;
        let prefix = self.conn.prefix();
        let mut slot: u16 = match cursor {
            Some(c) => c.parse().map_err(|_| bad_reply("scan cursor"))?,
            None => 0,
        };
        let mut keys = Vec::new();
        while slot < SLOTS && keys.len() < count.max(1) {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("GETKEYSINSLOT").arg(slot).arg(KEYS_PER_SLOT);
            let names: Vec<String> = self.conn.query_slot(&cmd, slot).await?;
            // Snapshot keys only: one per conversation.
            keys.extend(
                names
                    .iter()
                    .filter_map(|n| super::keys::conversation_of(prefix, n)),
            );
            slot += 1;
        }
        Ok(ScanPage {
            keys,
            next: (slot < SLOTS).then(|| slot.to_string()),
        })
    }

    /// The kept versions, newest first (`HGETALL` of the history hash).
    pub(super) async fn history(&self, key: &ConvKey) -> Result<Vec<Version>, StoreError> {
        if self.history == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.conn.keys(key).history());
        let fields: Vec<(String, Vec<u8>)> = self.conn.query(&cmd).await?;
        let mut states = std::collections::HashMap::new();
        let mut versions = Vec::new();
        for (field, value) in fields {
            let (tag, number) = field.split_at(1.min(field.len()));
            let version: u64 = number.parse().map_err(|_| bad_reply("history"))?;
            match tag {
                "v" => {
                    states.insert(version, Bytes::from(value));
                }
                "m" => {
                    let meta = String::from_utf8(value).map_err(|_| bad_reply("history"))?;
                    let (kind, at) = meta.split_once(' ').ok_or_else(|| bad_reply("history"))?;
                    let at_ms = at.parse().map_err(|_| bad_reply("history"))?;
                    versions.push((version, kind.to_string(), at_ms));
                }
                _ => return Err(bad_reply("history")),
            }
        }
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        Ok(versions
            .into_iter()
            .map(|(version, kind, at_ms)| Version {
                version,
                at_ms,
                kind,
                state: states.remove(&version),
            })
            .collect())
    }
}
