//! Sealing values with AES-256-GCM (ring): the first key of the ring seals,
//! every key opens. A sealed value is `[1, id len, id, nonce(12),
//! ciphertext + tag(16)]`: format version 1, then the id of the key that
//! sealed it, so a ring that lists several keys opens each value with its
//! own. Values that do not start with byte 1 are plaintext (format 0): a
//! JSON snapshot never starts with it, and a recorded response is only
//! read as sealed through its carrier (see `super`).

use bytes::{BufMut, Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// First byte of a sealed value.
pub const SEALED_V1: u8 = 1;

pub struct Keyring {
    /// In the configured order: the first seals.
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

/// Why a sealed value could not be opened.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("sealed under key id {0:?}, which is not in store.encryption.keys")]
    UnknownKey(String),
    #[error("sealed value fails authentication (damaged, or copied from another conversation)")]
    Forged,
    #[error("sealed value is truncated")]
    Truncated,
    #[error("value is sealed but store.encryption is not configured")]
    NoKeys,
}

impl Keyring {
    /// `keys`: (id, 32-byte key), the sealing key first. Ids are checked
    /// by the config (non-empty, unique, at most 64 bytes).
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Keyring {
        let keys = keys
            .into_iter()
            .filter_map(|(id, bytes)| {
                let key = UnboundKey::new(&AES_256_GCM, &bytes).ok()?;
                Some((id, LessSafeKey::new(key)))
            })
            .collect();
        Keyring {
            keys,
            random: SystemRandom::new(),
        }
    }

    /// The id of the key that seals.
    pub fn active_id(&self) -> Option<&str> {
        self.keys.first().map(|(id, _)| id.as_str())
    }

    /// Seals `plain` under the first key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Bytes, SealError> {
        let (id, key) = self.keys.first().ok_or(SealError)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError)?;
        let mut body = Vec::with_capacity(plain.len() + 16);
        body.extend_from_slice(plain);
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| SealError)?;
        let mut out = BytesMut::with_capacity(2 + id.len() + NONCE_LEN + body.len());
        out.put_u8(SEALED_V1);
        out.put_u8(id.len() as u8);
        out.put_slice(id.as_bytes());
        out.put_slice(&nonce);
        out.put_slice(&body);
        Ok(out.freeze())
    }

    /// Opens a value `seal` made with `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Bytes, OpenError> {
        let (id, nonce, body) = split(sealed)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k.as_bytes() == id)
            .ok_or_else(|| OpenError::UnknownKey(String::from_utf8_lossy(id).into_owned()))?;
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| OpenError::Forged)?;
        let len = plain.len();
        body.truncate(len);
        Ok(Bytes::from(body))
    }
}

/// The key id of a sealed value (for counting values per key).
pub fn sealed_key_id(sealed: &[u8]) -> Option<&[u8]> {
    split(sealed).ok().map(|(id, _, _)| id)
}

/// A sealed value's parts: key id, nonce, ciphertext with tag.
type Parts<'a> = (&'a [u8], [u8; NONCE_LEN], &'a [u8]);

fn split(sealed: &[u8]) -> Result<Parts<'_>, OpenError> {
    let [SEALED_V1, id_len, rest @ ..] = sealed else {
        return Err(OpenError::Truncated);
    };
    let id_len = *id_len as usize;
    if rest.len() < id_len + NONCE_LEN + 16 {
        return Err(OpenError::Truncated);
    }
    let (id, rest) = rest.split_at(id_len);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok((id, n, body))
}

/// The system's random source failed (no value was written).
#[derive(Debug, thiserror::Error)]
#[error("cannot seal: no sealing key or no randomness")]
pub struct SealError;

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(ids: &[(&str, u8)]) -> Keyring {
        Keyring::new(
            ids.iter()
                .map(|(id, b)| (id.to_string(), [*b; 32]))
                .collect(),
        )
    }

    #[test]
    fn seals_with_the_first_opens_with_any_and_binds_the_context() {
        let old = ring_of(&[("k1", 1)]);
        let sealed_old = old.seal(b"s\0wa#:abc", b"{\"pin\":\"1234\"}").unwrap();
        assert_eq!(sealed_old[0], SEALED_V1);
        assert!(!sealed_old.windows(4).any(|w| w == b"1234"));
        let both = ring_of(&[("k2", 2), ("k1", 1)]);
        assert_eq!(
            both.open(b"s\0wa#:abc", &sealed_old).unwrap(),
            Bytes::from_static(b"{\"pin\":\"1234\"}")
        );
        let sealed_new = both.seal(b"s\0wa#:abc", b"x").unwrap();
        assert_eq!(sealed_key_id(&sealed_new), Some(&b"k2"[..]));
        // Another conversation's context, or a key that left the ring.
        assert_eq!(
            both.open(b"s\0wa#:xyz", &sealed_old),
            Err(OpenError::Forged)
        );
        assert_eq!(
            old.open(b"s\0wa#:abc", &sealed_new),
            Err(OpenError::UnknownKey("k2".into()))
        );
        let mut flipped = sealed_old.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(both.open(b"s\0wa#:abc", &flipped), Err(OpenError::Forged));
        assert_eq!(
            both.open(b"s\0wa#:abc", &sealed_old[..10]),
            Err(OpenError::Truncated)
        );
    }
}
