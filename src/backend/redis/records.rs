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

use super::alias::ViaAlias;
use super::calls::{Expiry, Granted, LoadCall, RestoreCall};
use super::commit_call::{CommitCall, Required};
use super::conn::RedisConn;
use super::keys::ConvKeys;
use super::scripts::Scripts;
use crate::backend::{Commit, CommitOutcome, LinkChange, Loaded, RecordedResponse, StoreError};
use crate::contract::StateChange;
use crate::key::ConvKey;

pub(super) struct RedisRecords {
    pub(super) conn: RedisConn,
    /// Replicas that must confirm each commit (`WAIT`); 0: none.
    min_replica_acks: u32,
    pub(super) scripts: Arc<Scripts>,
    /// Versions kept per conversation (`store.history`); 0: none.
    pub(super) history: u32,
    /// Audit events kept (`audit.max_events`); 0: no trail.
    pub(super) audit: u64,
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

pub(super) fn bad_reply(what: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected reply to {what}").into())
}

/// Parses load.lua's `{version, data, recorded, linked}` (also the tail
/// of acquire.lua's answer, with the member tag before `linked`).
pub(super) fn parse_loaded(reply: &[Value]) -> Result<Loaded, StoreError> {
    // Every read returns version, data, recorded, member, linked, channels.
    let (version, state, recorded, linked) = match reply {
        [v, s, r, _, l, ..] => (v, s, r, l),
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

/// A granted read's record and, on a Cluster, a member's linked channels
/// (the reply's `rest`: version, data, recorded, member, linked, channels).
pub(super) fn granted_read(rest: &[redis::Value]) -> Result<(Loaded, Vec<String>), StoreError> {
    let loaded = parse_loaded(rest)?;
    let channels = match rest.get(5) {
        Some(redis::Value::Array(tags)) => tags.iter().filter_map(tag_of).collect(),
        _ => Vec::new(),
    };
    Ok((loaded, channels))
}

/// A tag in a script's reply (`false` → nil: none).
pub(super) fn tag_of(v: &Value) -> Option<String> {
    bytes_of(v).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

pub(super) fn bytes_of(v: &Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

pub(super) fn u64_of(v: &Value) -> Option<u64> {
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
        let call = LoadCall {
            snapshot: keys.snapshot(),
            dedupe: keys.dedupe(dedupe_id.unwrap_or("")),
            look_up_dedupe: dedupe_id.is_some(),
            granted: None,
        };
        let inv = call.invocation(&self.scripts.of(key).load);
        let reply: Vec<Value> = self.conn.eval(&inv).await?;
        parse_loaded(&reply)
    }

    /// The record of a turn granted after a wait: `keys` are the held
    /// turn's (the member's when `member` is set); the alias of `asked`
    /// must still name `member` (on a Cluster, reached `via` a channel's
    /// alias: the member must still name the link); `None`: the key moved,
    /// begin again. With the record, a member's channels on a Cluster.
    pub(super) async fn load_granted(
        &self,
        (asked, member): (&ConvKey, Option<&ConvKey>),
        via: Option<&ViaAlias>,
        dedupe_id: Option<&str>,
    ) -> Result<Option<(Loaded, Vec<String>)>, StoreError> {
        let held = member.unwrap_or(asked);
        let keys = self.conn.keys(held);
        let audited = self.audit > 0 && member.is_none();
        let expiry = audited.then(|| Expiry {
            mark: keys.expiry_mark(),
            stream: self.conn.audit_stream(&keys),
        });
        let granted = match via {
            Some(via) => Granted {
                alias: keys.links(),
                member_tag: Some(via.channel_tag.clone()),
                link_id: Some(via.link_id.clone()),
                expiry,
            },
            None => Granted {
                alias: self.conn.keys(asked).alias(),
                member_tag: member.map(|_| keys.tag().to_string()),
                link_id: None,
                expiry,
            },
        };
        let call = LoadCall {
            snapshot: keys.snapshot(),
            dedupe: keys.dedupe(dedupe_id.unwrap_or("")),
            look_up_dedupe: dedupe_id.is_some(),
            granted: Some(granted),
        };
        let inv = call.invocation(&self.scripts.of(held).load);
        let reply: Vec<Value> = self.conn.eval(&inv).await?;
        if let [Value::BulkString(moved)] = reply.as_slice() {
            if moved == b"moved" {
                return Ok(None);
            }
        }
        granted_read(&reply).map(Some)
    }

    /// The turn's commit: refused unless `fence` still holds the lease;
    /// releases the turn (handing it to the next in the queue) when applied.
    pub(super) async fn commit(
        &self,
        key: &ConvKey,
        fence: u64,
        commit: Commit,
    ) -> Result<CommitOutcome, StoreError> {
        self.commit_with_link_id(key, fence, commit, None).await
    }

    /// [`RedisRecords::commit`]; on a Cluster a link change names its
    /// link id (`cluster_links.rs`).
    pub(super) async fn commit_with_link_id(
        &self,
        key: &ConvKey,
        fence: u64,
        commit: Commit,
        link_id: Option<String>,
    ) -> Result<CommitOutcome, StoreError> {
        let keys = self.conn.keys(key);
        let (change, data): (&'static str, Bytes) = match &commit.change {
            StateChange::Put(json) => ("p", json.clone()),
            StateChange::Clear => ("c", Bytes::new()),
            StateChange::Forget => ("f", Bytes::new()),
            StateChange::Keep => ("k", Bytes::new()),
        };
        let (dedupe_id, recorded) = match &commit.dedupe {
            Some((id, response)) => (id.as_str(), Some(response.encode())),
            None => ("", None),
        };
        let mut call = CommitCall::new(Required {
            snapshot: keys.snapshot(),
            lease: keys.lease(),
            dedupe: keys.dedupe(dedupe_id),
            queue: keys.queue(),
            fence,
            expected_version: commit.expected_version,
            change,
            snapshot_json: &data,
            recorded: recorded.as_deref(),
        });
        self.optional_args(&mut call, (key, &keys), &commit, link_id);
        let inv = call.invocation(&self.scripts.of(key).commit);
        let (status, version) = self.run_commit(&inv).await?;
        match status.as_str() {
            "ok" => Ok(CommitOutcome::Committed { version }),
            "conflict" | "fenced" => Ok(CommitOutcome::Conflict { current: version }),
            _ => Err(bad_reply("commit")),
        }
    }

    /// commit.lua's optional slots: the kept version's time and kind, the
    /// audit event, the link change ([`CommitCall`] pads what comes
    /// before a filled slot).
    fn optional_args(
        &self,
        call: &mut CommitCall,
        (key, keys): (&ConvKey, &ConvKeys),
        commit: &Commit,
        link_id: Option<String>,
    ) {
        let kind = commit.kind();
        let now = (self.history > 0 || self.audit > 0).then(crate::backend::now_ms);
        if let Some(now) = now {
            call.history(keys.history(), format!("{kind} {now}"));
            if self.audit > 0 {
                let channel = commit.link.as_ref().map(|l| l.channel());
                let members = commit
                    .audit
                    .as_ref()
                    .map(|n| n.members(key, kind, now, channel));
                call.audit(
                    self.conn.audit_stream(keys),
                    keys.expiry_mark(),
                    members.unwrap_or_default(),
                );
            }
        }
        if let Some(link) = &commit.link {
            let op = match &**link {
                LinkChange::Link(_) => "l",
                LinkChange::Unlink(_) => "u",
            };
            call.link(
                op,
                self.conn.keys(link.channel()).tag().to_string(),
                link_id,
            );
        }
    }

    /// An import's write (`restore.lua`): the exported record at its
    /// version and lifetime, over an older one only; releases the turn.
    pub(super) async fn restore(
        &self,
        key: &ConvKey,
        fence: u64,
        commit: Commit,
        (version, ttl_ms): (u64, u64),
    ) -> Result<CommitOutcome, StoreError> {
        let keys = self.conn.keys(key);
        let (change, data) = match &commit.change {
            StateChange::Put(stored) => ("p", stored.clone()),
            _ => ("c", Bytes::new()),
        };
        let audit = (self.audit > 0).then(|| {
            let at = crate::backend::now_ms();
            let members = commit
                .audit
                .as_ref()
                .map(|n| n.members(key, commit.kind(), at, None));
            (self.conn.audit_stream(&keys), members.unwrap_or_default())
        });
        let call = RestoreCall {
            snapshot: keys.snapshot(),
            lease: keys.lease(),
            queue: keys.queue(),
            fence,
            version,
            change,
            data: &data,
            ttl_ms,
            audit,
        };
        let inv = call.invocation(&self.scripts.of(key).restore);
        let (status, version) = self.run_commit(&inv).await?;
        match status.as_str() {
            "ok" => Ok(CommitOutcome::Committed { version }),
            "conflict" | "fenced" => Ok(CommitOutcome::Conflict { current: version }),
            _ => Err(bad_reply("restore")),
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
        let ((status, version), acked): ((String, u64), i64) = self
            .conn
            .eval_and_wait(inv, self.min_replica_acks, self.wait_ms())
            .await?;
        if status == "ok" {
            self.enough_acks(acked)?;
        }
        Ok((status, version))
    }

    /// How long a `WAIT` may take: within half the op deadline.
    fn wait_ms(&self) -> u64 {
        (self.conn.op_timeout().as_millis() as u64 / 2).max(1)
    }

    /// A `WAIT`'s count against `min_replica_acks`.
    pub(super) fn enough_acks(&self, acked: i64) -> Result<(), StoreError> {
        let acked = u64::try_from(acked).unwrap_or(0);
        if acked < u64::from(self.min_replica_acks) {
            return Err(StoreError::Unreplicated {
                acked,
                wanted: self.min_replica_acks,
            });
        }
        Ok(())
    }

    /// With `min_replica_acks`: how many replicas must confirm a write,
    /// and how long a `WAIT` for them may take.
    pub(super) fn confirmation(&self) -> Option<(u32, u64)> {
        (self.min_replica_acks > 0).then(|| (self.min_replica_acks, self.wait_ms()))
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
