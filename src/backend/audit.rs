//! The audit trail (`[audit]`): one event per state change, appended by
//! the backend in the same atomic step as the change (so no event exists
//! without its change, and no change without its event), bounded to
//! `audit.max_events`, and never holding a value:
//! `{"at", "key", "from_version", "to_version", "kind", "route",
//! "request_id", "bytes", "changed"}`. `key` is the stored key (hashed
//! with `store.key_secret`); `changed` lists the top-level member names
//! whose values differ.

use serde_json::{json, Map, Value};

use crate::contract::StateChange;
use crate::key::ConvKey;

/// What the writer of a change knows that the backend does not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditNote {
    /// The route's namespace.
    pub route: String,
    /// The request's `X-Request-Id`, if it sent a usable one.
    pub request_id: Option<String>,
    /// Size of the new snapshot as the bot sees it (0 for a clear).
    pub bytes: usize,
    /// Top-level member names added, removed or changed.
    pub changed: Vec<String>,
}

/// One stored event and its id (a stream id on Redis, a sequence number
/// embedded), for `GET /v1/audit?since=<id>`.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    pub event: Value,
}

/// Which events `GET /v1/audit` asks for; neither a key nor a position:
/// the newest events of the store, newest first (the console's recent
/// conversations).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this stored key's events, newest first.
    pub key: Option<ConvKey>,
    /// Only events after this id, oldest first.
    pub since: Option<String>,
    pub limit: usize,
}

impl AuditNote {
    /// A note naming only the route: the key's namespace (a stored key's
    /// without the hashed mark). No request, no bytes, nothing changed: an
    /// expiry, a link that stores no snapshot; an import adds its bytes.
    pub fn bare(stored: &ConvKey) -> AuditNote {
        AuditNote {
            route: stored
                .namespace()
                .trim_end_matches(crate::privacy::HASHED_MARK)
                .to_string(),
            ..AuditNote::default()
        }
    }

    /// The event's members other than the versions, as JSON object members
    /// without braces (`"at":…,"key":…`): the Redis script adds the
    /// versions it alone knows.
    /// `channel`: the channel a link change is about (named `channel`).
    pub fn members(
        &self,
        stored: &ConvKey,
        kind: &str,
        at_ms: u64,
        channel: Option<&ConvKey>,
    ) -> String {
        let mut fields = json!({
            "at": at_ms,
            "key": stored.as_str(),
            "kind": kind,
            "route": self.route,
            "request_id": self.request_id,
            "bytes": self.bytes,
            "changed": self.changed,
        });
        if let Some(channel) = channel {
            fields["channel"] = Value::String(channel.as_str().to_string());
        }
        let text = fields.to_string();
        text[1..text.len() - 1].to_string()
    }

    /// The whole event, for a backend that knows both versions.
    pub fn event(
        &self,
        stored: &ConvKey,
        (kind, channel): (&str, Option<&ConvKey>),
        at_ms: u64,
        (from, to): (u64, u64),
    ) -> String {
        format!(
            "{{\"from_version\":{from},\"to_version\":{to},{}}}",
            self.members(stored, kind, at_ms, channel)
        )
    }
}

/// The note for `change` of `conv` replacing `old` (`None` for a change
/// that changes nothing), as the request path, the admin API and the
/// spool's write-back make it.
pub fn note(
    conv: &ConvKey,
    request_id: Option<String>,
    old: Option<&[u8]>,
    change: &StateChange,
) -> Option<Box<AuditNote>> {
    let new = match change {
        StateChange::Put(json) => Some(&json[..]),
        StateChange::Clear | StateChange::Forget => None,
        StateChange::Keep => return None,
    };
    Some(Box::new(AuditNote {
        route: conv.namespace().to_string(),
        request_id,
        bytes: new.map_or(0, <[u8]>::len),
        changed: changed(old, new),
    }))
}

/// Top-level member names whose values differ between two snapshots
/// (either may be absent: a new conversation, a clear), sorted.
pub fn changed(old: Option<&[u8]>, new: Option<&[u8]>) -> Vec<String> {
    let members = |raw: Option<&[u8]>| -> Map<String, Value> {
        match raw.map(serde_json::from_slice::<Value>) {
            Some(Ok(Value::Object(map))) => map,
            _ => Map::new(),
        }
    };
    let (old, new) = (members(old), members(new));
    let mut names: Vec<String> = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(new.keys().filter(|k| !old.contains_key(*k)).cloned())
        .collect();
    names.sort();
    names
}

/// A client's `X-Request-Id`, if usable: 1 to 128 characters of
/// A-Z a-z 0-9 and `-_.:` (anything else is not copied into the trail).
pub fn request_id(value: Option<&[u8]>) -> Option<String> {
    let v = std::str::from_utf8(value?).ok()?;
    let usable = (1..=128).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    usable.then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_names_members_never_values() {
        let old = br#"{"stage":"AUTH","pin":"1234","name":"Ann"}"#;
        let new = br#"{"stage":"MENU","pin":"1234","email":"a@b.c"}"#;
        assert_eq!(changed(Some(old), Some(new)), ["email", "name", "stage"]);
        assert_eq!(changed(None, Some(br#"{"a":1}"#)), ["a"]);
        assert_eq!(changed(Some(br#"{"a":1}"#), None), ["a"]);
    }

    #[test]
    fn an_event_is_json_without_values() {
        let note = AuditNote {
            route: "tg".into(),
            request_id: Some("r-1".into()),
            bytes: 12,
            changed: vec!["pin".into()],
        };
        let event: Value = serde_json::from_str(&note.event(
            &ConvKey::new("tg", "42"),
            ("write", None),
            5,
            (1, 2),
        ))
        .unwrap();
        assert_eq!(
            event,
            json!({"from_version": 1, "to_version": 2, "at": 5, "key": "tg:42", "kind": "write",
                   "route": "tg", "request_id": "r-1", "bytes": 12, "changed": ["pin"]})
        );
        assert_eq!(request_id(Some(b"abc-123")), Some("abc-123".into()));
        assert_eq!(request_id(Some(b"a b")), None);
        assert_eq!(request_id(None), None);
    }
}
