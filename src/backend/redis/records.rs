//! The Redis backend's records, shared by every replica (key layout in
//! `keys.rs`).
//!
//! Two scripts, one round trip each: `load.lua` (read + refresh TTL + dedupe
//! lookup, for reads outside a turn) and `commit.lua` (fence + version
//! check, write, TTL, dedupe record, and the turn's release). On the
//! request path the load rides along with the turn's `acquire.lua`, so an
//! uncontended request costs two round trips.

use bytes::Bytes;
use std::sync::Arc;

use redis::Value;

use super::conn::RedisConn;
use super::scripts::Scripts;
use crate::backend::audit::{AuditEntry, AuditNote, AuditQuery};
use crate::backend::{
    Commit, CommitOutcome, LinkChange, Links, Loaded, RecordedResponse, ScanPage, StoreError,
    Version,
};
use crate::contract::StateChange;
use crate::key::ConvKey;

pub(super) struct RedisRecords {
    conn: RedisConn,
    /// Replicas that must confirm each commit (`WAIT`); 0: none.
    min_replica_acks: u32,
    scripts: Arc<Scripts>,
    /// Versions kept per conversation (`store.history`); 0: none.
    history: u32,
    /// Audit events kept (`audit.max_events`); 0: no trail.
    audit: u64,
}

impl RedisRecords {
    pub(super) fn new(
        conn: RedisConn,
        scripts: Arc<Scripts>,
        min_replica_acks: u32,
        (history, audit): (u32, u64),
    ) -> RedisRecords {
        RedisRecords {
            conn,
            min_replica_acks,
            scripts,
            history,
            audit,
        }
    }
}

fn bad_reply(what: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected reply to {what}"))
}

/// Parses load.lua's `{version, data, recorded, linked}` (also the tail
/// of acquire.lua's answer, with the member tag before `linked`).
pub(super) fn parse_loaded(reply: &[Value]) -> Result<Loaded, StoreError> {
    let (version, state, recorded, linked) = match reply {
        [v, s, r] => (v, s, r, &Value::Nil),
        [v, s, r, l] | [v, s, r, _, l] => (v, s, r, l),
        _ => return Err(bad_reply("load")),
    };
    let version = u64_of(version).ok_or_else(|| bad_reply("load"))?;
    let duplicate = match bytes_of(recorded) {
        Some(raw) => Some(RecordedResponse::decode(raw)?),
        None => None,
    };
    Ok(Loaded {
        version,
        state: bytes_of(state),
        duplicate,
        undecryptable: None,
        member: None,
        linked: bytes_of(linked).is_some(),
    })
}

/// An expiry event's members but the versions (for acquire.lua, load.lua).
pub(super) fn expiry_members(stored: &ConvKey) -> String {
    let at = crate::backend::now_ms();
    AuditNote::expiry(stored).members(stored, "expire", at, None)
}

/// A tag in a script's reply (`false` → nil: none).
pub(super) fn tag_of(v: &Value) -> Option<String> {
    bytes_of(v).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

fn bytes_of(v: &Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

impl RedisRecords {
    /// Reads the record (refreshing its TTL) outside a turn.
    pub(super) async fn load(
        &self,
        key: &ConvKey,
        dedupe_id: Option<&str>,
    ) -> Result<Loaded, StoreError> {
        let keys = self.conn.keys(key);
        let mut inv = self.scripts.of(key).load.prepare_invoke();
        inv.key(keys.snapshot())
            .key(keys.dedupe(dedupe_id.unwrap_or("")))
            .arg(if dedupe_id.is_some() { "1" } else { "0" });
        let reply: Vec<Value> = self.conn.eval(&inv).await?;
        parse_loaded(&reply)
    }

    /// The record of a turn granted after a wait: `keys` are the held
    /// turn's (the member's when `member` is set); the alias of `asked`
    /// must still name `member` (`None`: the key moved, begin again).
    pub(super) async fn load_granted(
        &self,
        (asked, member): (&ConvKey, Option<&ConvKey>),
        dedupe_id: Option<&str>,
    ) -> Result<Option<Loaded>, StoreError> {
        let held = member.unwrap_or(asked);
        let keys = self.conn.keys(held);
        let mut inv = self.scripts.of(held).load.prepare_invoke();
        inv.key(keys.snapshot())
            .key(keys.dedupe(dedupe_id.unwrap_or("")))
            .key(self.conn.keys(asked).alias())
            .arg(if dedupe_id.is_some() { "1" } else { "0" })
            .arg(member.map(|_| keys.tag().to_string()).unwrap_or_default());
        if self.audit > 0 && member.is_none() {
            inv.key(keys.expiry_mark())
                .key(self.audit_stream())
                .arg(expiry_members(held));
        }
        let reply: Vec<Value> = self.conn.eval(&inv).await?;
        if let [Value::BulkString(moved)] = reply.as_slice() {
            if moved == b"moved" {
                return Ok(None);
            }
        }
        parse_loaded(&reply).map(Some)
    }

    /// Whose alias `key` is (`GET {t}:a`) and its linked channels
    /// (`SMEMBERS {t}:k`): admin only.
    pub(super) async fn links(&self, key: &ConvKey) -> Result<Links, StoreError> {
        let keys = self.conn.keys(key);
        let prefix = self.conn.prefix();
        let mut get = redis::cmd("GET");
        get.arg(keys.alias());
        let alias: Option<String> = self.conn.query(&get).await?;
        let mut members = redis::cmd("SMEMBERS");
        members.arg(keys.links());
        let tags: Vec<String> = self.conn.query(&members).await?;
        let member = alias
            .as_deref()
            .and_then(|a| a.split_once(' '))
            .and_then(|(_, tag)| super::keys::conversation_of_tag(prefix, tag));
        let mut channels: Vec<ConvKey> = tags
            .iter()
            .filter_map(|t| super::keys::conversation_of_tag(prefix, t))
            .collect();
        channels.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(Links { member, channels })
    }

    /// The turn's commit: refused unless `fence` still holds the lease;
    /// releases the turn (handing it to the next in the queue) when applied.
    pub(super) async fn commit(
        &self,
        key: &ConvKey,
        fence: u64,
        commit: Commit,
    ) -> Result<CommitOutcome, StoreError> {
        let keys = self.conn.keys(key);
        let kind = commit.kind();
        let (change, data): (&str, Bytes) = match commit.change {
            StateChange::Put(json) => ("p", json),
            StateChange::Clear => ("c", Bytes::new()),
            StateChange::Forget => ("f", Bytes::new()),
            StateChange::Keep => ("k", Bytes::new()),
        };
        let (dedupe_id, recorded) = match &commit.dedupe {
            Some((id, response)) => (id.as_str(), response.encode()),
            None => ("", Bytes::new()),
        };
        let mut inv = self.scripts.of(key).commit.prepare_invoke();
        inv.key(keys.snapshot())
            .key(keys.lease())
            .key(keys.dedupe(dedupe_id))
            .key(keys.queue())
            .arg(fence.to_string())
            .arg(
                commit
                    .expected_version
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            )
            .arg(change)
            .arg(data.as_ref())
            .arg(if commit.dedupe.is_some() { "1" } else { "0" })
            .arg(recorded.as_ref());
        // Kept versions and audit events only: the time and kind they name.
        let now = (self.history > 0 || self.audit > 0).then(crate::backend::now_ms);
        if let Some(now) = now {
            inv.key(keys.history()).arg(format!("{kind} {now}"));
        }
        let channel = commit.link.as_ref().map(|l| l.channel());
        if let (Some(now), true) = (now, self.audit > 0) {
            let members = commit
                .audit
                .as_ref()
                .map(|n| n.members(key, kind, now, channel));
            inv.key(self.audit_stream())
                .key(keys.expiry_mark())
                .arg(members.unwrap_or_default());
        }
        if let Some(link) = &commit.link {
            // ARGV[7] and [8] are positional: sent empty when unused.
            if now.is_none() {
                inv.arg("");
            }
            if self.audit == 0 {
                inv.arg("");
            }
            let op = match &**link {
                LinkChange::Link(_) => "l",
                LinkChange::Unlink(_) => "u",
            };
            inv.arg(op)
                .arg(self.conn.keys(link.channel()).tag().to_string());
        }
        let (status, version) = self.run_commit(&inv).await?;
        match status.as_str() {
            "ok" => Ok(CommitOutcome::Committed { version }),
            "conflict" | "fenced" => Ok(CommitOutcome::Conflict { current: version }),
            _ => Err(bad_reply("commit")),
        }
    }

    /// The commit script, with `WAIT` in the same round trip when
    /// `min_replica_acks` asks for it.
    async fn run_commit(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<(String, u64), StoreError> {
        if self.min_replica_acks == 0 {
            return Ok(self.conn.eval(inv).await?);
        }
        // Within half the op deadline.
        let wait_ms = (self.conn.op_timeout().as_millis() as u64 / 2).max(1);
        let ((status, version), acked): ((String, u64), i64) = self
            .conn
            .eval_and_wait(inv, self.min_replica_acks, wait_ms)
            .await?;
        let acked = u64::try_from(acked).unwrap_or(0);
        if status == "ok" && acked < u64::from(self.min_replica_acks) {
            return Err(StoreError::Unreplicated {
                acked,
                wanted: self.min_replica_acks,
            });
        }
        Ok((status, version))
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

    fn audit_stream(&self) -> String {
        super::keys::audit_stream(self.conn.prefix())
    }

    /// Audit events: `XREVRANGE` filtered by key (bounded by the stream's
    /// length), or `XRANGE` after an id.
    pub(super) async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        if self.audit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd;
        if let Some(since) = &query.since {
            cmd = redis::cmd("XRANGE");
            cmd.arg(self.audit_stream())
                .arg(format!("({since}"))
                .arg("+")
                .arg("COUNT")
                .arg(query.limit);
        } else {
            cmd = redis::cmd("XREVRANGE");
            cmd.arg(self.audit_stream()).arg("+").arg("-");
            if query.key.is_none() {
                cmd.arg("COUNT").arg(query.limit);
            }
        }
        let rows: Vec<(String, Vec<(String, String)>)> = self.conn.query(&cmd).await?;
        let wanted = query.key.as_ref().map(|k| k.as_str().to_string());
        let mut out = Vec::new();
        for (id, fields) in rows {
            let Some((_, text)) = fields.into_iter().find(|(f, _)| f == "e") else {
                return Err(bad_reply("audit"));
            };
            let event: serde_json::Value =
                serde_json::from_str(&text).map_err(|_| bad_reply("audit"))?;
            if wanted.as_deref().is_none_or(|k| event["key"] == k) {
                out.push(AuditEntry { id, event });
                if out.len() >= query.limit {
                    break;
                }
            }
        }
        Ok(out)
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

    pub(super) fn on_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.conn.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(bad_reply("PING"))
        }
    }
}
