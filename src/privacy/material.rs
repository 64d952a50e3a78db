//! Key material from the config: base64 (standard or URL-safe alphabet,
//! padded or not), and `statehold keygen`'s fresh keys.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// Decodes a base64 secret in any common alphabet and padding.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// A 32-byte encryption key, decoded.
pub fn key32(text: &str) -> Option<[u8; 32]> {
    decode(text)?.try_into().ok()
}

/// 32 random bytes in standard base64: a new encryption key or key secret.
pub fn generate() -> Result<String, ring::error::Unspecified> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key)?;
    Ok(STANDARD.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_alphabet_any_padding() {
        let key = generate().unwrap();
        let bytes = key32(&key).unwrap();
        let url = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(key32(&url), Some(bytes));
        assert_eq!(key32("c2hvcnQ="), None, "too short");
        assert_eq!(decode("not base64!"), None);
        assert_ne!(generate().unwrap(), key);
    }
}
