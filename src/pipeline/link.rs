//! The link stage, in place of the plain save when the bot reported a link
//! (`X-Statehold-Link` / `-Unlink`, [`crate::contract::link`]): the
//! request's conversation becomes a channel of a member key, or its own
//! conversation again ([`crate::backend::link`]).
//!
//! - **Link**: the request holds its own turn; it takes the member's turn
//!   too (one more round trip, only for the linking answer), and the
//!   member's commit stores the reported snapshot, the dedupe record and
//!   the alias in one atomic step. Then the channel's own turn is
//!   released: requests that waited on it find the alias and move to the
//!   member's turn.
//! - **Unlink**: the request already holds the member's turn (it came in
//!   through the alias); the member's commit removes the alias.
//!
//! A report that cannot be honoured (it would chain links, the key is
//! linked elsewhere, the member is busy) is refused: logged, counted
//! (`statehold_links_total{result="refused"}`), and the answer is saved as
//! if the bot had not asked.

use http::StatusCode;
use tracing::{info, warn};

use super::reject::Reject;
use super::request::{Conversation, Ctx};
use super::PathStore;
use super::{Answer, Keyed, Pipeline};
use crate::backend::{Commit, LinkChange, Loaded, Origin};
use crate::contract::{LinkAsk, StateChange};
use crate::key::ConvKey;
use crate::metrics::LinkResult;
use crate::outcome::Outcome;

/// What a link report comes to.
enum Plan {
    /// Saved as if the bot had not asked (refused, or nothing to do).
    Plain,
    Unlink,
    LinkTo(ConvKey),
}

impl<B: PathStore> Pipeline<B> {
    pub(super) async fn link_and_save(
        &self,
        held: Conversation<B::Held>,
        change: StateChange,
        answer: &Answer,
        ask: LinkAsk,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Reject> {
        let conv = held.conv().clone();
        match self.plan(held.turn.loaded(), &conv, ask, answer.parts.status) {
            Plan::Plain => self.finish_turn(held, change, answer, None, cx).await,
            Plan::Unlink => {
                let unlink = Some(Box::new(LinkChange::Unlink(conv.clone())));
                self.finish_turn(held, change, answer, unlink, cx).await?;
                self.svc.metrics.link(LinkResult::Unlinked);
                info!(key = %conv.display(self.settings.reveal_ids), "unlinked from its member");
                Ok(())
            }
            Plan::LinkTo(target) => self.link_to(held, change, answer, &target, cx).await,
        }
    }

    /// Decides on a link report from the record this turn read (`None`:
    /// the store is out); refusals are logged and counted here.
    fn plan(
        &self,
        loaded: Option<&Loaded>,
        conv: &ConvKey,
        ask: LinkAsk,
        status: StatusCode,
    ) -> Plan {
        let refused = |why: &str| {
            self.svc.metrics.link(LinkResult::Refused);
            warn!(key = %conv.display(self.settings.reveal_ids), reason = why,
                "link report refused: the conversation stays as it was");
            Plan::Plain
        };
        let Some(loaded) = loaded else {
            self.svc.metrics.link(LinkResult::Error);
            warn!(key = %conv.display(self.settings.reveal_ids), "link report not honoured: the store is unavailable");
            return Plan::Plain;
        };
        if status.as_u16() >= 500 {
            return Plan::Plain;
        }
        let target = match ask {
            LinkAsk::Unlink if loaded.member.is_none() => {
                return refused("unlink: the conversation is not linked")
            }
            LinkAsk::Unlink => return Plan::Unlink,
            LinkAsk::To(target) => target,
        };
        if loaded.member.as_ref() == Some(&self.svc.backend.stored_name(&target)) {
            Plan::Plain // linked to it already
        } else if target == *conv {
            refused("a key cannot be its own channel")
        } else if loaded.member.is_some() {
            refused("the conversation is linked to another member: unlink it first")
        } else if loaded.linked {
            refused("the conversation has channels of its own")
        } else {
            Plan::LinkTo(target)
        }
    }

    /// The member's commit of a linking answer: the change, the answer's
    /// dedupe record (named for the channel), the alias.
    fn link_commit(
        &self,
        keyed: Keyed,
        change: StateChange,
        answer: &Answer,
        member: &Loaded,
    ) -> Commit {
        let conv = keyed.conv;
        let dedupe = answer.dedupe_record(keyed.dedupe);
        let audit =
            self.svc
                .audit
                .link_note(&conv, keyed.request_id, member.state.as_deref(), &change);
        Commit {
            expected_version: Some(member.version),
            change,
            dedupe,
            origin: Origin::Bot,
            audit,
            link: Some(Box::new(LinkChange::Link(conv))),
        }
    }

    /// The member's turn for a link from `conv`. Two linking answers can
    /// each hold the turn the other wants (`x` links to `y` while `y`
    /// links to `x`). Turns are taken in one order: a link to a key that
    /// sorts before the channel's own never waits; a busy member then
    /// refuses the link at once (the answer is saved as if no link was
    /// asked), so no cycle can form (issue 20, item 8).
    async fn member_turn(
        &self,
        conv: &ConvKey,
        target: &ConvKey,
    ) -> Result<(B::Held, Loaded), crate::backend::TurnError> {
        let own = self.svc.backend.stored_name(conv);
        let target_stored = self.svc.backend.stored_name(target);
        let wait = if target_stored.as_str() > own.as_str() {
            self.settings.lock_wait
        } else {
            std::time::Duration::ZERO
        };
        self.svc.backend.begin(target, wait, None).await
    }

    /// Takes the member's turn and commits the change, the dedupe record
    /// and the alias on it; the channel's own turn ends after.
    async fn link_to(
        &self,
        channel: Conversation<B::Held>,
        change: StateChange,
        answer: &Answer,
        target: &ConvKey,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Reject> {
        let conv = channel.conv().clone();
        let shown = conv.display(self.settings.reveal_ids).to_string();
        let refused = |why: &'static str| {
            self.svc.metrics.link(LinkResult::Refused);
            warn!(key = %shown, reason = why, "link report refused: the answer is saved without the link");
        };
        let (member_held, member) = match self.member_turn(&conv, target).await {
            Ok((held, member)) if member.member.is_none() => (held, member),
            Ok((held, _)) => {
                drop(held);
                refused("the member key is itself a channel");
                return self.finish_turn(channel, change, answer, None, cx).await;
            }
            Err(crate::backend::TurnError::WaitExceeded(_)) => {
                refused("the member's turn is busy (another request holds it)");
                return self.finish_turn(channel, change, answer, None, cx).await;
            }
            Err(e) => {
                // Nothing stored, no dedupe record: the redelivery runs the
                // bot again (dropping the channel's turn releases it).
                self.svc.metrics.link(LinkResult::Error);
                warn!(key = %shown, error = %e, "link not made: the member's turn could not be taken");
                return Err(Reject::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Outcome::Busy,
                    "the member key is busy or the store is out; redeliver",
                )
                .after_bot());
            }
        };
        let Conversation { turn, keyed } = channel;
        let commit = self.link_commit(keyed, change, answer, &member);
        let saved = self.save(target, member_held, commit, cx).await;
        // The alias is in place (or not): the channel's turn may go now.
        drop(turn);
        if matches!(saved, super::Saved::Committed) {
            self.svc.metrics.link(LinkResult::Linked);
            info!(key = %shown, member = %target.display(self.settings.reveal_ids), "linked to a member");
        } else {
            self.svc.metrics.link(LinkResult::Error);
        }
        self.after_save(saved, &conv, cx).await
    }
}
