//! `acquire.lua` from the turn machinery's side: queue a token for a
//! conversation's turn, and read the record when the turn is granted at
//! once (one round trip); a linked channel is queued for its member's turn.

use super::calls::{AcquireCall, Expiry};
use super::keys::ConvKeys;
use super::shared::{LeaseKeys, Shared};
use crate::backend::{Loaded, StoreError, TurnError};
use crate::key::ConvKey;

/// What acquire.lua answered.
pub(super) struct Acquired {
    /// The member whose turn the token is queued for (a linked channel).
    pub(super) member: Option<ConvKey>,
    /// The record, when the turn was granted at once (else we wait).
    pub(super) prefetched: Option<Loaded>,
}

impl Shared {
    /// acquire.lua: queues `token`; a turn granted at once brings the
    /// record (and the dedupe lookup) along. A linked channel's request
    /// is queued for its member's turn: the member is returned.
    pub(super) async fn run_acquire(
        &self,
        keys: &LeaseKeys,
        token: u64,
        (key, conv): (&ConvKey, &ConvKeys),
        dedupe_id: Option<&str>,
    ) -> Result<Acquired, TurnError> {
        let call = AcquireCall {
            lease: &keys.lease,
            queue: &keys.queue,
            snapshot: conv.snapshot(),
            dedupe: conv.dedupe(dedupe_id.unwrap_or("")),
            alias: conv.alias(),
            token,
            look_up_dedupe: dedupe_id.is_some(),
            expiry: self.audit.then(|| Expiry {
                mark: conv.expiry_mark(),
                stream: self.conn.audit_stream(conv),
            }),
        };
        let inv = call.invocation(&self.scripts.of(key).acquire);
        let reply: Vec<redis::Value> = self.conn.eval(&inv).await.map_err(StoreError::from)?;
        let member = |tag: Option<&redis::Value>| -> Result<Option<ConvKey>, TurnError> {
            match tag.and_then(super::records::tag_of) {
                None => Ok(None),
                Some(tag) => super::keys::conversation_of_tag(self.conn.prefix(), &tag)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt("a damaged alias".into()).into()),
            }
        };
        match reply.as_slice() {
            [redis::Value::Int(1), rest @ ..] => {
                let mut loaded = super::records::parse_loaded(rest)?;
                loaded.member = member(rest.get(3))?;
                Ok(Acquired {
                    member: loaded.member.clone(),
                    prefetched: Some(loaded),
                })
            }
            [redis::Value::Int(0), tag @ ..] => Ok(Acquired {
                member: member(tag.first())?,
                prefetched: None,
            }),
            _ => Err(super::records::bad_reply("acquire").into()),
        }
    }
}
