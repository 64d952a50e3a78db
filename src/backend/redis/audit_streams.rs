//! Where the Redis backend's audit events live. One server (or Sentinel):
//! one stream, `{prefix:audit}`. A Cluster: one stream per hash slot,
//! `{prefix:audit:<n>}`, `n` the smallest number whose name hashes to that
//! slot; so each event is appended in its conversation's slot by the same
//! script as the change (a script touches one slot), and a slot's events
//! move with it in a reshard. The feed across the Cluster (`?since=`)
//! merges the slots' streams (`views.rs`, format in `docs/contract.md`).

use std::fmt::Write;

use super::keys::ConvKeys;

/// Redis Cluster's hash slots.
pub const SLOTS: u16 = 16384;

/// Events each slot's stream keeps at least on a Cluster: `audit.max_events`
/// is spread over the slots, but a slot keeps its recent history (what
/// `?key=` answers from) even when the total is small.
pub const PER_SLOT_AT_LEAST: u64 = 100;

/// The stream names of one deployment.
pub struct AuditStreams {
    prefix: String,
    /// On a Cluster, slot → the `n` of its stream's name.
    per_slot: Option<Box<[u32]>>,
}

impl AuditStreams {
    pub fn new(prefix: &str, cluster: bool) -> AuditStreams {
        AuditStreams {
            prefix: prefix.to_string(),
            per_slot: cluster.then(|| numbers_per_slot(prefix)),
        }
    }

    /// The stream a conversation's events go to.
    pub fn of(&self, keys: &ConvKeys) -> String {
        match &self.per_slot {
            None => format!("{{{}:audit}}", self.prefix),
            Some(_) => self.of_slot(slot_of(keys.tag())),
        }
    }

    /// On a Cluster, the stream of `slot`; else the one stream.
    pub fn of_slot(&self, slot: u16) -> String {
        match &self.per_slot {
            None => format!("{{{}:audit}}", self.prefix),
            Some(numbers) => {
                let n = numbers.get(usize::from(slot)).copied().unwrap_or(0);
                format!("{{{}:audit:{n}}}", self.prefix)
            }
        }
    }

    /// One stream per slot (a Cluster).
    pub fn per_slot(&self) -> bool {
        self.per_slot.is_some()
    }
}

/// The events each stream keeps (`MAXLEN ~`): all of `max_events` in the
/// one stream; on a Cluster its share per slot, at least
/// [`PER_SLOT_AT_LEAST`].
pub fn kept_per_stream(max_events: u64, cluster: bool) -> u64 {
    if cluster && max_events > 0 {
        max_events.div_ceil(u64::from(SLOTS)).max(PER_SLOT_AT_LEAST)
    } else {
        max_events
    }
}

/// The hash slot of a key or a `{tag}` (Redis's rule: the text between
/// the first `{` and the next `}` when not empty, else the whole key).
pub fn slot_of(key: &str) -> u16 {
    let hashed = key
        .find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes()) % SLOTS
}

/// For each slot, the smallest `n` with `prefix:audit:<n>` in it: the
/// same table on every replica (about 170,000 hashes, a few ms, once).
fn numbers_per_slot(prefix: &str) -> Box<[u32]> {
    let mut numbers = vec![u32::MAX; usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut name = String::with_capacity(prefix.len() + 20);
    let mut n = 0u32;
    while missing > 0 {
        name.clear();
        // Writing into a String cannot fail.
        let _ = write!(name, "{prefix}:audit:{n}");
        let slot = crc16::State::<crc16::XMODEM>::calculate(name.as_bytes()) % SLOTS;
        let entry = &mut numbers[usize::from(slot)];
        if *entry == u32::MAX {
            *entry = n;
            missing -= 1;
        }
        n += 1;
    }
    numbers.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ConvKey;

    #[test]
    fn a_conversation_and_its_stream_share_a_slot() {
        let streams = AuditStreams::new("sh", true);
        for id in ["1", "42", "x}:d:evil", "+4915112345678", "é"] {
            let keys = ConvKeys::new("sh", &ConvKey::new("tg", id));
            let stream = streams.of(&keys);
            assert_eq!(slot_of(&stream), slot_of(&keys.snapshot()), "{stream}");
        }
        for slot in [0, 1, 8000, SLOTS - 1] {
            assert_eq!(slot_of(&streams.of_slot(slot)), slot);
        }
        let one = AuditStreams::new("sh", false);
        assert_eq!(
            one.of(&ConvKeys::new("sh", &ConvKey::new("tg", "1"))),
            "{sh:audit}"
        );
    }

    #[test]
    fn slots_as_redis_computes_them() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}"));
        assert_eq!(slot_of("123456789"), 12739);
    }

    #[test]
    fn each_slot_keeps_its_share() {
        assert_eq!(kept_per_stream(100_000, false), 100_000);
        assert_eq!(kept_per_stream(100_000, true), PER_SLOT_AT_LEAST);
        assert_eq!(kept_per_stream(16_384_000, true), 1000);
        assert_eq!(kept_per_stream(0, true), 0);
    }
}
