//! Links on a Redis Cluster, where a channel and its member live in
//! different slots, so no script sees both (the argument that this keeps
//! one turn per member is in `docs/operations.md`, "Links on a Cluster").
//!
//! - The member's side decides: its link hash `{m}:k` maps each linked
//!   channel's tag to the link's id, and changes only in the member's
//!   commit, under the member's turn.
//! - The channel's alias `{c}:a` (`<member TTL ms> <member tag> <link
//!   id>`) only points the way. A request on the channel follows it while
//!   the channel's own turn is free (`acquire.lua`), and takes the member's
//!   turn only if the member still names that link (`member_acquire.lua`),
//!   checked again after a wait (`load.lua`); a pointer the member
//!   disowned is dropped, and the channel is its own again.
//! - A link writes the alias first, under the channel's turn (`alias.lua`
//!   `set`), then the member's commit names it; an unlink is the member's
//!   commit, then the alias is dropped. A crash between the two leaves an
//!   alias the member does not name: stale, dropped by the next request.
//! - A member's read returns its channels, whose aliases (in other slots)
//!   are slid here, off the request path.

use super::alias::ViaAlias;
use super::conn::RedisConn;
use super::keys::ConvKeys;
use super::records::RedisRecords;
use super::scripts::Scripts;
use crate::backend::{Commit, CommitOutcome, LinkChange, StoreError};
use crate::key::ConvKey;

/// What `alias.lua set` answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AliasSet {
    Written,
    /// One level only: the channel has channels of its own, or an alias.
    Refused,
    /// The channel's turn is no longer the linking request's.
    Fenced,
}

/// `alias.lua`: writes the alias under the channel's turn `fence`.
pub(super) async fn set_alias(
    conn: &RedisConn,
    scripts: &Scripts,
    channel: &ConvKeys,
    alias: &str,
    fence: u64,
) -> Result<AliasSet, StoreError> {
    let mut inv = scripts.any().alias.prepare_invoke();
    inv.key(channel.lease())
        .key(channel.alias())
        .key(channel.links())
        .arg("set")
        .arg(alias)
        .arg(fence);
    let answer: String = conn.eval(&inv).await?;
    match answer.as_str() {
        "ok" => Ok(AliasSet::Written),
        "refused" => Ok(AliasSet::Refused),
        "fenced" => Ok(AliasSet::Fenced),
        _ => Err(super::records::bad_reply("alias")),
    }
}

/// `alias.lua`: drops the alias if it is still exactly `alias`.
pub(super) async fn drop_alias(
    conn: &RedisConn,
    scripts: &Scripts,
    channel: &ConvKeys,
    alias: &str,
) -> Result<(), StoreError> {
    let mut inv = scripts.any().alias.prepare_invoke();
    inv.key(channel.lease())
        .key(channel.alias())
        .key(channel.links())
        .arg("drop")
        .arg(alias);
    let _: String = conn.eval(&inv).await?;
    Ok(())
}

impl RedisRecords {
    /// Slides the aliases of `member`'s linked `channels` (tags; only a
    /// Cluster's reads return any) to the member's lifetime, off the
    /// request path: one `PEXPIRE` each, in its own slot. A failure only
    /// shortens an alias's life until the member's next read.
    pub(super) fn slide_aliases(&self, member: &ConvKey, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        let ttl_ms = self.scripts.lifetime_of(member).as_millis().max(1) as u64;
        let conn = self.conn.clone();
        tokio::spawn(async move {
            for tag in channels {
                let mut cmd = redis::cmd("PEXPIRE");
                cmd.arg(format!("{tag}:a")).arg(ttl_ms);
                if let Err(e) = conn.query::<i64>(&cmd).await {
                    tracing::debug!(error = %e, "an alias's lifetime was not slid");
                }
            }
        });
    }

    /// A link change on a Cluster, `member`'s turn held as `fence`: a link
    /// writes the channel's alias first, under the channel's own turn
    /// (`channel_fence`: its token, as this process holds it),
    /// then commits on the member; an unlink commits, then drops the alias
    /// the request came by (`via`). `None`: the link was refused before the
    /// member's commit ran (the member's turn is still held).
    pub(super) async fn commit_link_on_cluster(
        &self,
        member: &ConvKey,
        fence: u64,
        commit: Commit,
        (via, channel_fence): (Option<&ViaAlias>, Option<u64>),
    ) -> Result<Option<CommitOutcome>, StoreError> {
        match commit.link.as_deref().cloned() {
            Some(LinkChange::Link(channel)) => {
                let channel_keys = self.conn.keys(&channel);
                let Some(channel_fence) = channel_fence else {
                    tracing::warn!("link refused: the channel's turn is not held here");
                    return Ok(None);
                };
                let ttl = self.scripts.lifetime_of(member).as_millis();
                let alias = super::alias::value(ttl, &self.conn.keys(member), channel_fence);
                let set = set_alias(
                    &self.conn,
                    &self.scripts,
                    &channel_keys,
                    &alias,
                    channel_fence,
                );
                if set.await? != AliasSet::Written {
                    return Ok(None);
                }
                let id = Some(channel_fence.to_string());
                let outcome = self.commit_with_link_id(member, fence, commit, id).await;
                if let Ok(CommitOutcome::Conflict { .. }) = outcome {
                    self.drop_alias_logged(&channel_keys, &alias).await;
                }
                // An error: the commit may or may not have run; an alias the
                // member does not name is dropped by the next request.
                outcome.map(Some)
            }
            Some(LinkChange::Unlink(channel)) => {
                let outcome = self.commit(member, fence, commit).await?;
                if let (CommitOutcome::Committed { .. }, Some(via)) = (&outcome, via) {
                    self.drop_alias_logged(&self.conn.keys(&channel), &via.alias)
                        .await;
                }
                Ok(Some(outcome))
            }
            None => self.commit(member, fence, commit).await.map(Some),
        }
    }

    async fn drop_alias_logged(&self, channel: &ConvKeys, alias: &str) {
        if let Err(e) = drop_alias(&self.conn, &self.scripts, channel, alias).await {
            // Stale from now on: the next request on the channel drops it.
            tracing::debug!(error = %e, "a stale alias stays until the channel's next request");
        }
    }
}
