//! Redis key names: every key of one conversation under one hash tag, so
//! every script touches a single Redis Cluster slot.
//!
//! - `{t}:s` hash: `v` version, `d` snapshot JSON (absent once cleared); TTL = `store.ttl`
//! - `{t}:d:<dedupe id>` string: the recorded response; TTL = `store.dedupe_window`
//! - `{t}:l` the turn's lease (holder's token), `{t}:q` the turn queue
//! - `{t}:h` hash: kept versions (`store.history`)
//! - `{t}:x` string (with `[audit]`): the last version, TTL twice the
//!   record's, so an expiry is noticed on load; the audit streams are
//!   `audit_streams.rs`'s
//! - `{t}:a` string: a linked channel's alias, `<member TTL ms> <member tag>`;
//!   `{t}:k` set: the tags of a member's linked channels (and `k` in its
//!   `{t}:s`); TTL = the member's (`backend/link.rs`)
//! - `<prefix>:turns:<tag>`: the pub/sub channel hand-overs to one replica
//!   are announced on (its notice tag, the last four digits of its tokens)

use crate::key::ConvKey;

/// The keys of one conversation, all under one hash tag so every script
/// touches a single Redis Cluster slot.
///
/// Key names are an injective encoding of (prefix, namespace, id, dedupe
/// id): `%`, `{` and `}` in ids are percent-escaped, so an id cannot end
/// the hash tag early and two different (id, dedupe id) pairs never share a
/// key (`x}:d:evil` + `123` against `x` + `evil}:d:123`). The prefix and
/// namespace use name characters only, so `:` splits them unambiguously.
pub struct ConvKeys {
    /// `{prefix:ns:escaped id}`
    tag: String,
}

/// `%`, `{`, `}` as `%25`, `%7B`, `%7D`; everything else as is.
pub fn escape_key_part(part: &str) -> std::borrow::Cow<'_, str> {
    if !part.contains(['%', '{', '}']) {
        return std::borrow::Cow::Borrowed(part);
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The conversation a tag (`{prefix:ns:escaped id}`) names.
pub fn conversation_of_tag(prefix: &str, tag: &str) -> Option<ConvKey> {
    let inner = tag.strip_prefix('{')?.strip_suffix('}')?;
    let rest = inner.strip_prefix(prefix)?.strip_prefix(':')?;
    let (ns, escaped) = rest.split_once(':')?;
    let id = escaped
        .replace("%7B", "{")
        .replace("%7D", "}")
        .replace("%25", "%");
    Some(ConvKey::new(ns, &id))
}

/// The conversation a snapshot key names (`{prefix:ns:escaped id}:s`),
/// for scans; `None` for any other key.
pub fn conversation_of(prefix: &str, name: &str) -> Option<ConvKey> {
    conversation_of_tag(prefix, name.strip_suffix(":s")?)
}

impl ConvKeys {
    pub fn snapshot(&self) -> String {
        format!("{}:s", self.tag)
    }
    pub fn dedupe(&self, id: &str) -> String {
        format!("{}:d:{}", self.tag, escape_key_part(id))
    }
    pub fn lease(&self) -> String {
        format!("{}:l", self.tag)
    }
    pub fn queue(&self) -> String {
        format!("{}:q", self.tag)
    }
    /// Kept versions (`store.history`): `m<version>` → `kind at_ms`,
    /// `v<version>` → the snapshot as stored.
    pub fn history(&self) -> String {
        format!("{}:h", self.tag)
    }
    /// A deferred turn's record: `<fence> <turn token SHA-256>` (defer.lua).
    pub fn deferral(&self) -> String {
        format!("{}:r", self.tag)
    }
    /// A linked channel's alias: `<member TTL ms> <member tag>`.
    pub fn alias(&self) -> String {
        format!("{}:a", self.tag)
    }
    /// A member's linked channels (their tags).
    pub fn links(&self) -> String {
        format!("{}:k", self.tag)
    }
    /// With the audit trail on: the last version, outliving the record
    /// (an expiry is then noticed on load).
    pub fn expiry_mark(&self) -> String {
        format!("{}:x", self.tag)
    }
    /// `{prefix:ns:escaped id}`, as aliases and link sets name it.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl ConvKeys {
    /// The keys of `key` under `prefix`.
    pub fn new(prefix: &str, key: &ConvKey) -> ConvKeys {
        ConvKeys {
            tag: format!(
                "{{{}:{}:{}}}",
                prefix,
                key.namespace(),
                escape_key_part(key.id())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_injective() {
        let a = ConvKeys::new("sh", &ConvKey::new("tg", "x}:d:evil")).dedupe("123");
        let b = ConvKeys::new("sh", &ConvKey::new("tg", "x")).dedupe("evil}:d:123");
        assert_ne!(a, b);
        assert_eq!(a, "{sh:tg:x%7D:d:evil}:d:123");
        assert_eq!(b, "{sh:tg:x}:d:evil%7D:d:123");
        // An escape cannot be forged by sending it literally.
        let c = ConvKeys::new("sh", &ConvKey::new("tg", "x%7D")).snapshot();
        let d = ConvKeys::new("sh", &ConvKey::new("tg", "x}")).snapshot();
        assert_ne!(c, d);
        assert_eq!(
            ConvKeys::new("sh", &ConvKey::new("tg", "42")).snapshot(),
            "{sh:tg:42}:s"
        );
        // A scan reads the conversation back from its snapshot key.
        for id in ["42", "x}:d:evil", "a%7Db{", "%25"] {
            let key = ConvKey::new("tg#", id);
            let name = ConvKeys::new("sh", &key).snapshot();
            assert_eq!(conversation_of("sh", &name), Some(key));
        }
        assert_eq!(conversation_of("sh", "{sh:tg:42}:l"), None);
        assert_eq!(conversation_of("other", "{sh:tg:42}:s"), None);
    }
}
