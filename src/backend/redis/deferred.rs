//! Deferred turns on Redis: the turn outlives the bot's answer
//! (`defer.lua` keeps the lease and writes the deferral record `{t}:r`),
//! and any replica can adopt it by its token for the late report
//! (`adopt.lua`), fenced exactly like an answer's commit: the adopted turn
//! commits under the fencing token of the turn it adopts, so a report
//! after the turn ended (reported, timed out, its holder's lease expired
//! with the holder) is refused, and of two reports with one token only
//! one commit can land.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::calls::{AdoptCall, DeferCall};
use super::records::{bad_reply, bytes_of, u64_of};
use super::shared::LeaseKeys;
use super::turns::{RedisTurn, RedisTurns};
use crate::backend::{Adoption, Loaded, RecordedResponse, StoreError, TurnToken};
use crate::key::ConvKey;

impl RedisTurn {
    /// defer.lua: keeps the lease, records the deferral for `within`, and
    /// writes the answer's dedupe record.
    pub(super) async fn defer(
        &self,
        key: &ConvKey,
        token: &TurnToken,
        dedupe: Option<(String, RecordedResponse)>,
        within: Duration,
    ) -> Result<(), StoreError> {
        let s = &self.shared;
        let keys = s.conn.keys(key);
        let (dedupe_id, recorded) = match &dedupe {
            Some((id, response)) => (id.as_str(), response.encode()),
            None => ("", Bytes::new()),
        };
        let call = DeferCall {
            lease: &self.keys.lease,
            deferral: keys.deferral(),
            dedupe: keys.dedupe(dedupe_id),
            fence: self.token,
            digest: token.digest(),
            within_ms: within.as_millis(),
            write_dedupe: dedupe.is_some(),
            recorded: &recorded,
            replica: s.replica,
        };
        let inv = call.invocation(&s.scripts.any().defer);
        let held: i64 = s.conn.eval(&inv).await?;
        if held == 1 {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the turn's lease was lost before it could be deferred".into(),
            ))
        }
    }
}

impl RedisTurns {
    /// adopt.lua: the deferred turn `token` names, if it is still held,
    /// with its record as stored.
    pub(super) async fn adopt(&self, token: &TurnToken) -> Result<Adoption<RedisTurn>, StoreError> {
        let s = &self.shared;
        let keys = s.conn.keys(token.key());
        let lease = LeaseKeys::of(&keys);
        let call = AdoptCall {
            lease: lease.lease.clone(),
            deferral: keys.deferral(),
            snapshot: keys.snapshot(),
            digest: token.digest(),
            replica: s.replica,
        };
        let inv = call.invocation(&s.scripts.any().adopt);
        let reply: Vec<Value> = s.conn.eval(&inv).await?;
        let (fence, version, state, linked) = match reply.as_slice() {
            [] => return Ok(Adoption::Unknown),
            [Value::BulkString(p)] if p == b"pending" => return Ok(Adoption::Pending),
            [f, v, d, k] => (f, v, d, k),
            _ => return Err(bad_reply("adopt")),
        };
        let fence = u64_of(fence).ok_or_else(|| bad_reply("adopt"))?;
        let loaded = Loaded {
            version: u64_of(version).ok_or_else(|| bad_reply("adopt"))?,
            state: bytes_of(state),
            linked: bytes_of(linked).is_some(),
            ..Loaded::default()
        };
        Ok(Adoption::Adopted(
            RedisTurn::holding(s, lease, fence),
            loaded,
        ))
    }
}
