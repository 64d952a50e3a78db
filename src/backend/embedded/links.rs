//! The embedded store's links (`backend/link.rs`): a channel's alias and a
//! member's channels, written by the member's commit in the same
//! transaction, and removed with the member's record.

use redb::{ReadableTable, ReadableTableMetadata};

use super::writer::Tables;
use crate::backend::LinkChange;
use crate::key::ConvKey;

impl Tables<'_, '_> {
    /// One level only: the channel has no channels of its own and is no
    /// other member's alias, and `member` is nobody's alias.
    pub(super) fn may_link(
        &mut self,
        member: &ConvKey,
        link: &LinkChange,
    ) -> Result<bool, redb::Error> {
        let LinkChange::Link(channel) = link else {
            return Ok(true);
        };
        let c = channel.as_str();
        let has_channels = match self.member_links.range((c, "")..)?.next() {
            Some(row) => row?.0.value().0 == c,
            None => false,
        };
        let alias = self.aliases.get(c)?.map(|a| a.value().to_string());
        let member_is_alias = self.aliases.get(member.as_str())?.is_some();
        Ok(!has_channels && !member_is_alias && alias.is_none_or(|a| a == member.as_str()))
    }

    pub(super) fn apply_link(
        &mut self,
        member: &ConvKey,
        link: &LinkChange,
    ) -> Result<(), redb::Error> {
        let (m, c) = (member.as_str(), link.channel().as_str());
        match link {
            LinkChange::Link(_) => {
                self.aliases.insert(c, m)?;
                self.member_links.insert((m, c), ())?;
            }
            LinkChange::Unlink(_) => {
                let points_here = self.aliases.get(c)?.is_some_and(|a| a.value() == m);
                if points_here {
                    self.aliases.remove(c)?;
                }
                self.member_links.remove((m, c))?;
            }
        }
        Ok(())
    }

    /// Removes a member's links (its record went).
    pub(super) fn drop_links(&mut self, member: &str) -> Result<(), redb::Error> {
        if self.member_links.is_empty()? {
            return Ok(());
        }
        let mut channels = Vec::new();
        for row in self.member_links.range((member, "")..)? {
            let (k, _) = row?;
            let (m, c) = k.value();
            if m != member {
                break;
            }
            channels.push(c.to_string());
        }
        for c in &channels {
            self.member_links.remove((member, c.as_str()))?;
            let points_here = self
                .aliases
                .get(c.as_str())?
                .is_some_and(|a| a.value() == member);
            if points_here {
                self.aliases.remove(c.as_str())?;
            }
        }
        Ok(())
    }
}
