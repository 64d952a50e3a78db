//! Key marks: one-way fingerprints of this process's hashing key
//! (`store.key_secret`) and sealing keys (`store.encryption.keys`),
//! recorded in a shared store so that a replica with other keys refuses to
//! serve instead of silently splitting the data (a replica whose keys
//! differ finds no conversation the others wrote: every load a miss, flows
//! alternating between working and "Session expired").
//!
//! The store records two marks: `hash`, the hashing key's fingerprint
//! (`plain` without one), and `seal`, the sealing key of the replica that
//! started last as `<id>:<fingerprint>` (`plain` without encryption). A
//! replica agrees with the store when its hashing mark is the recorded
//! one and it holds the recorded sealing key (sealing or open-only), so
//! the documented rotation (a new key open-only first, then sealing) and
//! the move to hashed keys (`plaintext_fallback`) never trip it.

use ring::hmac;

/// The mark of "no key": keys in clear, values in clear.
pub const PLAIN: &str = "plain";
/// What a fingerprint signs: a fixed text, so the mark shows nothing of
/// the key and no stored value can be made to match it.
const LABEL: &[u8] = b"statehold key mark v1";

/// This process's marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMarks {
    /// The hashing key's fingerprint, or [`PLAIN`].
    pub hash: String,
    /// The sealing key's `<id>:<fingerprint>`, or [`PLAIN`].
    pub seal: String,
    /// Every key this process opens with, as `<id>:<fingerprint>`.
    pub held: Vec<String>,
    /// `store.plaintext_fallback`: replicas without `key_secret` still run
    /// beside this one (the documented move to hashed keys).
    pub fallback: bool,
}

/// The marks a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub hash: Option<String>,
    pub seal: Option<String>,
}

/// What this process writes where it agrees with the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkWrites {
    /// A new hashing mark, written only if the store still holds
    /// `Recorded::hash` (another replica may have recorded one meanwhile).
    pub hash: Option<String>,
    /// The sealing mark, overwritten.
    pub seal: Option<String>,
}

/// This process's keys are not the store's. The message names the config
/// keys to fix; the fingerprints are one-way and shortened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyMismatch {
    #[error("store.key_secret is not the one this store's conversations are named with (the store records {recorded}, this process has {mine}): every replica of one store needs the same store.key_secret (docs/operations.md#replicas-share-their-keys)")]
    Hash { recorded: String, mine: String },
    #[error("store.encryption.keys lacks the key this store's values are sealed with (the store records {recorded}, this process holds {mine}): every replica of one store needs the same keys (docs/operations.md#replicas-share-their-keys)")]
    Seal { recorded: String, mine: String },
}

/// The fingerprint of one secret: HMAC-SHA256 of a fixed label, 64 bits
/// in hex (enough to tell keys apart, too short to test guesses offline
/// against anything but the label).
pub fn fingerprint(key: &hmac::Key) -> String {
    let tag = hmac::sign(key, LABEL);
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<id>:<fingerprint>` of an encryption key.
pub fn seal_mark(id: &str, secret: &[u8; 32]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("{id}:{}", fingerprint(&key))
}

impl KeyMarks {
    /// Whether this process agrees with `recorded`, and what it then
    /// writes: at start (`at_start`) it records its marks; afterwards
    /// (`/readyz`) it only compares, so the sealing mark follows the
    /// replica that started last.
    pub fn judge(&self, recorded: &Recorded, at_start: bool) -> Result<MarkWrites, KeyMismatch> {
        let mut writes = MarkWrites::default();
        match recorded.hash.as_deref() {
            None => writes.hash = Some(self.hash.clone()),
            Some(r) if r == self.hash => {}
            // Turning key hashing on is the documented move; while the
            // fallback is on, replicas without key_secret still run.
            Some(PLAIN) if !self.fallback => writes.hash = Some(self.hash.clone()),
            Some(PLAIN) => {}
            Some(r) => {
                return Err(KeyMismatch::Hash {
                    recorded: r.to_string(),
                    mine: self.hash.clone(),
                })
            }
        }
        match recorded.seal.as_deref() {
            None | Some(PLAIN) => {}
            Some(r) if r == self.seal || self.held.iter().any(|h| h == r) => {}
            Some(r) => {
                return Err(KeyMismatch::Seal {
                    recorded: r.to_string(),
                    mine: if self.held.is_empty() {
                        PLAIN.to_string()
                    } else {
                        self.held.join(", ")
                    },
                })
            }
        }
        if recorded.seal.as_deref() != Some(self.seal.as_str()) {
            writes.seal = Some(self.seal.clone());
        }
        if !at_start {
            writes = MarkWrites::default();
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(hash: &str, seal: &str, held: &[&str]) -> KeyMarks {
        KeyMarks {
            hash: hash.into(),
            seal: seal.into(),
            held: held.iter().map(|h| h.to_string()).collect(),
            fallback: false,
        }
    }

    fn recorded(hash: Option<&str>, seal: Option<&str>) -> Recorded {
        Recorded {
            hash: hash.map(str::to_string),
            seal: seal.map(str::to_string),
        }
    }

    #[test]
    fn an_empty_store_records_the_first_replicas_marks() {
        let mine = marks("h1", "k1:f1", &["k1:f1"]);
        let writes = mine.judge(&Recorded::default(), true).unwrap();
        assert_eq!(writes.hash.as_deref(), Some("h1"));
        assert_eq!(writes.seal.as_deref(), Some("k1:f1"));
        assert_eq!(
            mine.judge(&Recorded::default(), false),
            Ok(MarkWrites::default())
        );
    }

    #[test]
    fn another_hashing_key_or_none_is_refused() {
        let stored = recorded(Some("h1"), Some("k1:f1"));
        let other = marks("h2", "k1:f1", &["k1:f1"]);
        assert!(matches!(
            other.judge(&stored, true),
            Err(KeyMismatch::Hash { .. })
        ));
        let plain = marks(PLAIN, "k1:f1", &["k1:f1"]);
        assert!(matches!(
            plain.judge(&stored, false),
            Err(KeyMismatch::Hash { .. })
        ));
    }

    #[test]
    fn a_replica_must_hold_the_recorded_sealing_key() {
        let stored = recorded(Some("h1"), Some("k1:f1"));
        let other_key = marks("h1", "k1:f9", &["k1:f9"]);
        let err = other_key.judge(&stored, true).unwrap_err();
        assert!(err.to_string().contains("store.encryption.keys"), "{err}");
        let no_keys = marks("h1", PLAIN, &[]);
        assert!(no_keys.judge(&stored, true).is_err());
    }

    #[test]
    fn rotation_and_the_move_to_hashed_keys_pass() {
        // Step 2 of a rotation: k2 seals, k1 still opens.
        let stored = recorded(Some("h1"), Some("k1:f1"));
        let rotated = marks("h1", "k2:f2", &["k2:f2", "k1:f1"]);
        let writes = rotated.judge(&stored, true).unwrap();
        assert_eq!(writes.seal.as_deref(), Some("k2:f2"));
        // A replica not restarted yet holds k2 open-only: still agrees.
        let moved = recorded(Some("h1"), Some("k2:f2"));
        let before = marks("h1", "k1:f1", &["k1:f1", "k2:f2"]);
        assert!(before.judge(&moved, false).is_ok());
        // Encryption turned on over values in clear.
        let clear = recorded(Some("h1"), Some(PLAIN));
        assert!(marks("h1", "k1:f1", &["k1:f1"]).judge(&clear, true).is_ok());
        // key_secret turned on: with the fallback the plain mark stays.
        let unhashed = recorded(Some(PLAIN), Some(PLAIN));
        let mut moving = marks("h1", PLAIN, &[]);
        moving.fallback = true;
        assert_eq!(moving.judge(&unhashed, true).unwrap().hash, None);
        moving.fallback = false;
        assert_eq!(
            moving.judge(&unhashed, true).unwrap().hash.as_deref(),
            Some("h1")
        );
    }

    #[test]
    fn fingerprints_tell_keys_apart_and_show_nothing() {
        let a = seal_mark("k1", &[1; 32]);
        let b = seal_mark("k1", &[2; 32]);
        assert_ne!(a, b);
        assert_eq!(a, seal_mark("k1", &[1; 32]));
        assert_eq!(a.len(), "k1:".len() + 16);
    }
}
