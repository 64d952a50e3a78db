//! `acquire.lua` from the turn machinery's side: queue a token for a
//! conversation's turn, and read the record when the turn is granted at
//! once (one round trip); a linked channel is queued for its member's turn
//! (on one server in the same script; on a Cluster, where the member is in
//! another slot, by `member_acquire.lua` after the channel's alias pointed
//! the way: `cluster_links.rs`).

use super::alias::ViaAlias;
use super::calls::{AcquireCall, Expiry, MemberAcquireCall};
use super::keys::ConvKeys;
use super::records::{bad_reply, granted_read, tag_of};
use super::shared::{LeaseKeys, Shared};
use crate::backend::{Loaded, StoreError, TurnError};
use crate::key::ConvKey;

/// What acquire.lua answered.
pub(super) struct Acquired {
    /// The member whose turn the token is queued for (a linked channel).
    pub(super) member: Option<ConvKey>,
    /// The record, when the turn was granted at once (else we wait).
    pub(super) prefetched: Option<Loaded>,
    /// On a Cluster: the channel's alias, to follow to the member's slot
    /// (nothing was queued).
    pub(super) to_member: Option<String>,
    /// On a Cluster: the member's linked channels, whose aliases the caller
    /// slides (read with the record).
    pub(super) channels: Vec<String>,
}

/// What member_acquire.lua answered.
pub(super) enum AtMember {
    /// The member does not name the channel's link any more: nothing queued.
    Stale,
    Queued,
    /// Granted at once: the record and the member's linked channels.
    Granted(Box<Loaded>, Vec<String>),
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
        disowned: Option<&str>,
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
            disowned,
        };
        let inv = call.invocation(&self.scripts.of(key).acquire);
        let reply: Vec<redis::Value> = self.conn.eval(&inv).await.map_err(StoreError::from)?;
        let member = |tag: Option<&redis::Value>| self.member_of(tag);
        match reply.as_slice() {
            [redis::Value::Int(1), rest @ ..] => {
                let (mut loaded, channels) = granted_read(rest)?;
                loaded.member = member(rest.get(3))?;
                Ok(Acquired {
                    member: loaded.member.clone(),
                    prefetched: Some(loaded),
                    to_member: None,
                    channels,
                })
            }
            [redis::Value::Int(0), tag @ ..] => Ok(Acquired {
                member: member(tag.first())?,
                prefetched: None,
                to_member: None,
                channels: Vec::new(),
            }),
            [redis::Value::Int(2), alias] => Ok(Acquired {
                member: None,
                prefetched: None,
                to_member: Some(tag_of(alias).ok_or_else(|| bad_reply("acquire"))?),
                channels: Vec::new(),
            }),
            _ => Err(bad_reply("acquire").into()),
        }
    }

    /// The member a script named by its tag (`false`: none).
    fn member_of(&self, tag: Option<&redis::Value>) -> Result<Option<ConvKey>, TurnError> {
        match tag.and_then(tag_of) {
            None => Ok(None),
            Some(tag) => super::keys::conversation_of_tag(self.conn.prefix(), &tag)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt("a damaged alias".into()).into()),
        }
    }

    /// member_acquire.lua (a Cluster): queues `token` for the member's
    /// turn if the member still names the channel's link.
    pub(super) async fn run_member_acquire(
        &self,
        keys: &LeaseKeys,
        token: u64,
        (member, member_keys): (&ConvKey, &ConvKeys),
        via: &ViaAlias,
        dedupe_id: Option<&str>,
    ) -> Result<AtMember, TurnError> {
        let call = MemberAcquireCall {
            lease: &keys.lease,
            queue: &keys.queue,
            snapshot: member_keys.snapshot(),
            dedupe: member_keys.dedupe(dedupe_id.unwrap_or("")),
            links: member_keys.links(),
            token,
            look_up_dedupe: dedupe_id.is_some(),
            channel_tag: &via.channel_tag,
            link_id: &via.link_id,
        };
        let inv = call.invocation(&self.scripts.of(member).member_acquire);
        let reply: Vec<redis::Value> = self.conn.eval(&inv).await.map_err(StoreError::from)?;
        match reply.as_slice() {
            [redis::Value::Int(3)] => Ok(AtMember::Stale),
            [redis::Value::Int(0)] => Ok(AtMember::Queued),
            [redis::Value::Int(1), rest @ ..] => {
                let (loaded, channels) = granted_read(rest)?;
                Ok(AtMember::Granted(Box::new(loaded), channels))
            }
            _ => Err(bad_reply("member_acquire").into()),
        }
    }
}
