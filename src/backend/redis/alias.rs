//! A linked channel's alias on a Redis Cluster, as statehold reads and
//! writes it: `<member TTL ms> <member tag> <link id>` (the protocol
//! around it is `cluster_links.rs`'s).

use super::keys::ConvKeys;
use crate::backend::StoreError;
use crate::key::ConvKey;

/// A request that reached its member through a channel's alias.
#[derive(Clone, Debug)]
pub(super) struct ViaAlias {
    /// The channel's tag, as the member's link hash names it.
    pub channel_tag: String,
    pub link_id: String,
    /// The alias exactly as read (what `drop` compares).
    pub alias: String,
}

impl ViaAlias {
    /// Reads an alias of the channel `channel`: the member and the link.
    pub(super) fn parse(
        prefix: &str,
        channel: &ConvKeys,
        alias: String,
    ) -> Result<(ConvKey, ViaAlias), StoreError> {
        let damaged = || StoreError::Corrupt("a damaged alias".into());
        // A tag may hold spaces (ids may): the TTL is before the first,
        // the link id (digits) after the last.
        let (_ttl, rest) = alias.split_once(' ').ok_or_else(damaged)?;
        let (tag, id) = rest.rsplit_once(' ').ok_or_else(damaged)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(damaged());
        }
        let member = super::keys::conversation_of_tag(prefix, tag).ok_or_else(damaged)?;
        let via = ViaAlias {
            channel_tag: channel.tag().to_string(),
            link_id: id.to_string(),
            alias: alias.clone(),
        };
        Ok((member, via))
    }
}

/// The alias a link of `channel` to `member` writes: the member's lifetime
/// in ms, its tag, and the link id (the linking turn's token).
pub(super) fn value(member_ttl_ms: u128, member: &ConvKeys, link_id: u64) -> String {
    format!("{member_ttl_ms} {} {link_id}", member.tag())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_names_its_member_and_link() {
        let member = ConvKeys::new("sh", &ConvKey::new("member", "4 2"));
        let channel = ConvKeys::new("sh", &ConvKey::new("wa", "+49"));
        let alias = value(86_400_000, &member, 77);
        let (back, via) = ViaAlias::parse("sh", &channel, alias.clone()).unwrap();
        assert_eq!(back, ConvKey::new("member", "4 2"));
        assert_eq!(via.link_id, "77");
        assert_eq!(via.channel_tag, channel.tag());
        assert_eq!(via.alias, alias);
        for bad in ["", "1", "1 {sh:member:42}", "1 {sh:member:42} 7x", "1 x 7"] {
            assert!(
                ViaAlias::parse("sh", &channel, bad.into()).is_err(),
                "{bad}"
            );
        }
    }
}
