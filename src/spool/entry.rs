//! One spool entry's bytes: `has_base u8 | base u64 (le) | change u8
//! ('p'|'c'|'k') | json`, framed with the conversation's raw key
//! (`len u16 (le) | raw key | entry`) before it is sealed.

use bytes::Bytes;

use crate::contract::StateChange;

/// `raw key` and the entry, framed.
pub(super) fn frame(raw_key: &str, base: Option<u64>, change: &StateChange) -> Vec<u8> {
    let raw = raw_key.as_bytes();
    let entry = encode(base, change);
    let mut framed = Vec::with_capacity(2 + raw.len() + entry.len());
    framed.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    framed.extend_from_slice(raw);
    framed.extend_from_slice(&entry);
    framed
}

/// (raw key, base, change) from a framed entry; `None` when malformed.
pub(super) fn unframe(framed: &[u8]) -> Option<(String, Option<u64>, StateChange)> {
    let len = u16::from_le_bytes([*framed.first()?, *framed.get(1)?]) as usize;
    let raw = std::str::from_utf8(framed.get(2..2 + len)?)
        .ok()?
        .to_string();
    let (base, change) = decode(framed.get(2 + len..)?);
    Some((raw, base, change))
}

pub(super) fn encode(base: Option<u64>, change: &StateChange) -> Vec<u8> {
    let (tag, data): (u8, &[u8]) = match change {
        StateChange::Put(json) => (b'p', json),
        // Never spooled (maintenance only); a clear is the nearest.
        StateChange::Clear | StateChange::Forget => (b'c', &[]),
        StateChange::Keep => (b'k', &[]),
    };
    let mut value = Vec::with_capacity(10 + data.len());
    value.push(u8::from(base.is_some()));
    value.extend_from_slice(&base.unwrap_or(0).to_le_bytes());
    value.push(tag);
    value.extend_from_slice(data);
    value
}

pub(super) fn decode(raw: &[u8]) -> (Option<u64>, StateChange) {
    if raw.len() < 10 {
        return (None, StateChange::Keep);
    }
    let base = (raw[0] == 1).then(|| u64::from_le_bytes(raw[1..9].try_into().unwrap_or_default()));
    let change = match raw[9] {
        b'p' => StateChange::Put(Bytes::copy_from_slice(&raw[10..])),
        b'c' => StateChange::Clear,
        _ => StateChange::Keep,
    };
    (base, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let change = StateChange::Put(Bytes::from_static(b"{\"a\":1}"));
        let framed = frame("wa:263774227441", Some(3), &change);
        assert_eq!(
            unframe(&framed),
            Some(("wa:263774227441".to_string(), Some(3), change))
        );
        assert_eq!(unframe(&framed[..5]), None);
    }
}
