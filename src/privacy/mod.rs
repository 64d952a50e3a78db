//! Privacy at rest: what statehold writes to a store never names a user
//! or shows what they typed.
//!
//! - **Key names** (`store.key_secret`): a conversation is stored under
//!   `<namespace>#:<HMAC-SHA256(secret, namespace NUL id), 128 bits,
//!   base64url>` instead of `<namespace>:<id>`, and a dedupe id under an
//!   HMAC of the conversation and the id. The `#` (never in a namespace)
//!   tells hashed keys from plaintext ones, for `migrate`.
//! - **Values** (`store.encryption.keys`): snapshots, recorded answers and
//!   spool entries are sealed with AES-256-GCM ([`keyring`]); the stored
//!   key and the kind of value are the associated data, so a value copied
//!   onto another conversation, or a recorded answer copied onto a
//!   snapshot, fails to open. Plaintext values (written before encryption
//!   was turned on) still read; they are sealed when next written.
//!
//! Callers keep using raw keys: the backend wrapper
//! (`backend::private`) and the spool apply this module.

pub mod keyring;
pub mod marks;
pub mod material;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use ring::hmac;

use crate::key::ConvKey;
pub use keyring::{Keyring, OpenError, SealError};

/// Ends a hashed key's namespace; a configured namespace never holds it.
pub const HASHED_MARK: char = '#';

/// The privacy settings of one process. [`Privacy::off`] changes nothing.
pub struct Privacy {
    key_hash: Option<hmac::Key>,
    keyring: Option<Keyring>,
    /// `store.plaintext_fallback`: while migrating, a conversation missing
    /// under its hashed key is looked up under its plaintext key.
    plaintext_fallback: bool,
    /// Fingerprints of the keys above, recorded in a shared store.
    marks: marks::KeyMarks,
}

/// What a sealed value is, bound into its associated data.
#[derive(Clone, Copy)]
enum Kind {
    Snapshot = b's' as isize,
    Recorded = b'r' as isize,
    Spooled = b'q' as isize,
}

impl Privacy {
    pub fn off() -> Privacy {
        Privacy::new(None, Vec::new())
    }

    /// `key_secret`: hash key names with it; `keys`: seal values (the
    /// first key seals, all open).
    pub fn new(key_secret: Option<&[u8]>, keys: Vec<(String, [u8; 32])>) -> Privacy {
        let key_hash = key_secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s));
        let held: Vec<String> = keys
            .iter()
            .map(|(id, secret)| marks::seal_mark(id, secret))
            .collect();
        let marks = marks::KeyMarks {
            hash: key_hash
                .as_ref()
                .map_or_else(|| marks::PLAIN.to_string(), marks::fingerprint),
            seal: held
                .first()
                .cloned()
                .unwrap_or_else(|| marks::PLAIN.to_string()),
            held,
            fallback: false,
        };
        Privacy {
            key_hash,
            keyring: (!keys.is_empty()).then(|| Keyring::new(keys)),
            plaintext_fallback: false,
            marks,
        }
    }

    /// This process's key marks (see [`marks`]).
    pub fn marks(&self) -> &marks::KeyMarks {
        &self.marks
    }

    /// See [`Privacy::plaintext_fallback`]; only with hashed keys.
    pub fn with_plaintext_fallback(mut self, on: bool) -> Privacy {
        self.plaintext_fallback = on && self.key_hash.is_some();
        self.marks.fallback = self.plaintext_fallback;
        self
    }

    /// A conversation missing under its hashed key is looked up under its
    /// plaintext key (written before `store.key_secret`).
    pub fn plaintext_fallback(&self) -> bool {
        self.plaintext_fallback
    }

    pub fn hashes_keys(&self) -> bool {
        self.key_hash.is_some()
    }

    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The route namespace of a stored key's namespace: a hashed key's is
    /// the route's plus [`HASHED_MARK`].
    pub fn route_namespace(stored_namespace: &str) -> &str {
        stored_namespace
            .strip_suffix(HASHED_MARK)
            .unwrap_or(stored_namespace)
    }

    /// A stored key named by its hash (`store.key_secret`).
    pub fn is_hashed(stored: &ConvKey) -> bool {
        stored.namespace().ends_with(HASHED_MARK)
    }

    /// The key `key` is stored under. A key already stored (its namespace
    /// carries [`HASHED_MARK`], which no route's namespace can) is its own
    /// stored name: a linked channel's member, a turn token's key.
    pub fn stored_key(&self, key: &ConvKey) -> ConvKey {
        match &self.key_hash {
            Some(_) if Privacy::is_hashed(key) => key.clone(),
            Some(secret) => {
                let id = digest(secret, &[key.namespace().as_bytes(), key.id().as_bytes()]);
                ConvKey::new(&format!("{}{HASHED_MARK}", key.namespace()), &id)
            }
            None => key.clone(),
        }
    }

    /// The name a dedupe id of `key` (raw) is stored under.
    pub fn stored_dedupe(&self, key: &ConvKey, dedupe_id: &str) -> String {
        match &self.key_hash {
            Some(secret) => digest(
                secret,
                &[b"dedupe", key.as_str().as_bytes(), dedupe_id.as_bytes()],
            ),
            None => dedupe_id.to_string(),
        }
    }

    /// What an audit event may say of `text` (a snapshot member name, a
    /// request id): with `store.key_secret`, a keyed hash (`~` and 22
    /// characters, the same for the same text, so events still correlate),
    /// since either could name a user; `text` itself otherwise.
    pub fn pseudonym(&self, kind: &str, text: &str) -> String {
        match &self.key_hash {
            Some(secret) => format!(
                "~{}",
                digest(secret, &[b"audit", kind.as_bytes(), text.as_bytes()])
            ),
            None => text.to_string(),
        }
    }

    /// A snapshot as stored under `stored`.
    pub fn seal_state(&self, stored: &ConvKey, json: Bytes) -> Result<Bytes, SealError> {
        self.seal(Kind::Snapshot, &[stored.as_str()], json)
    }

    pub fn open_state(&self, stored: &ConvKey, value: Bytes) -> Result<Bytes, OpenError> {
        self.open(Kind::Snapshot, &[stored.as_str()], value)
    }

    /// A recorded answer (encoded) as stored for `stored`'s `dedupe` name.
    pub fn seal_recorded(
        &self,
        stored: &ConvKey,
        dedupe: &str,
        encoded: Bytes,
    ) -> Result<Bytes, SealError> {
        self.seal(Kind::Recorded, &[stored.as_str(), dedupe], encoded)
    }

    pub fn open_recorded(
        &self,
        stored: &ConvKey,
        dedupe: &str,
        value: Bytes,
    ) -> Result<Bytes, OpenError> {
        self.open(Kind::Recorded, &[stored.as_str(), dedupe], value)
    }

    /// A spool entry as kept under `name`.
    pub fn seal_spooled(&self, name: &str, entry: Bytes) -> Result<Bytes, SealError> {
        self.seal(Kind::Spooled, &[name], entry)
    }

    pub fn open_spooled(&self, name: &str, value: Bytes) -> Result<Bytes, OpenError> {
        self.open(Kind::Spooled, &[name], value)
    }

    fn seal(&self, kind: Kind, context: &[&str], plain: Bytes) -> Result<Bytes, SealError> {
        match &self.keyring {
            Some(ring) => ring.seal(&aad(kind, context), &plain),
            None => Ok(plain),
        }
    }

    fn open(&self, kind: Kind, context: &[&str], value: Bytes) -> Result<Bytes, OpenError> {
        if value.first() != Some(&keyring::SEALED_V1) {
            // Format 0: written before encryption was turned on.
            return Ok(value);
        }
        match &self.keyring {
            Some(ring) => ring.open(&aad(kind, context), &value),
            None => Err(OpenError::NoKeys),
        }
    }
}

/// `kind NUL part NUL part ...`: parts never contain NUL (keys and dedupe
/// names are text from JSON, headers or paths, where NUL is refused).
fn aad(kind: Kind, context: &[&str]) -> Vec<u8> {
    let mut out = vec![kind as u8];
    for part in context {
        out.push(0);
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// HMAC-SHA256 over NUL-separated parts, 128 bits in base64url (22 chars).
fn digest(secret: &hmac::Key, parts: &[&[u8]]) -> String {
    let mut ctx = hmac::Context::with_key(secret);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            ctx.update(&[0]);
        }
        ctx.update(part);
    }
    URL_SAFE_NO_PAD.encode(&ctx.sign().as_ref()[..16])
}

#[cfg(test)]
mod tests;
