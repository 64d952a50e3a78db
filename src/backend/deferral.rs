//! Turn tokens: the credential of one turn, handed to the bot with every
//! keyed request (`X-Statehold-Turn`) so that a bot that answers first
//! (`X-Statehold-Deferred: 1`) can report later (`POST /v1/turns/<token>`,
//! on any replica).
//!
//! A token is `<secret>.<route>.<holder>.<namespace>.<id>`: 128 random
//! bits, the index of the route the request came by (whose rules the late
//! report must pass), the process that holds the turn (a report reaching
//! it is handed over in process), and the conversation's key as the store
//! names it (hashed under `store.key_secret`, so a token never carries a
//! raw id where keys are private); secret, namespace and id base64url,
//! route and holder decimal. Only its SHA-256 is stored (the
//! Redis deferral record `{t}:r`): what another replica needs to find the
//! turn is in the token itself, and the stored digest plus the turn's
//! fence decide whether it is still good. Forging one needs the secret;
//! a token names one turn and dies with it.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::key::ConvKey;

/// Random bytes in a token.
const SECRET_BYTES: usize = 16;

/// The longest token accepted (a key is bounded by the key extractor; this
/// only stops an unauthenticated caller from making us hash megabytes).
pub const MAX_TOKEN_LEN: usize = 2048;

/// One turn's token. `Display` gives its wire form.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnToken {
    text: String,
    route: usize,
    holder: u64,
    key: ConvKey,
}

/// Where token secrets come from: SHA-256 over a 256-bit seed, drawn once
/// from the system's random source, and a counter never repeated in the
/// process. Without the seed (it never leaves the process) the output
/// cannot be told from random or predicted; it costs one hash instead of
/// a `getrandom` system call on every keyed request.
struct SecretSource {
    seed: [u8; 32],
    next: AtomicU64,
}

static SECRETS: OnceLock<SecretSource> = OnceLock::new();

/// A fresh token secret; `None` only while the system's random source
/// fails to give the seed (asked again on the next call).
fn fresh_secret() -> Option<[u8; SECRET_BYTES]> {
    let source = match SECRETS.get() {
        Some(source) => source,
        None => {
            let mut seed = [0u8; 32];
            SystemRandom::new().fill(&mut seed).ok()?;
            SECRETS.get_or_init(|| SecretSource {
                seed,
                next: AtomicU64::new(0),
            })
        }
    };
    let n = source.next.fetch_add(1, Ordering::Relaxed);
    let sum = Sha256::new()
        .chain_update(source.seed)
        .chain_update(n.to_le_bytes())
        .finalize();
    let mut secret = [0u8; SECRET_BYTES];
    secret.copy_from_slice(&sum[..SECRET_BYTES]);
    Some(secret)
}

impl TurnToken {
    /// A fresh token for the turn on `key` (as stored) taken by a request
    /// on route number `route` in process `holder`; `None` only if the
    /// system's random source fails.
    pub fn mint(route: usize, holder: u64, key: &ConvKey) -> Option<TurnToken> {
        let secret = fresh_secret()?;
        let mut text = String::with_capacity(80 + key.as_str().len() * 4 / 3);
        URL_SAFE_NO_PAD.encode_string(secret, &mut text);
        // Writing into a String cannot fail.
        let _ = write!(text, ".{route}.{holder}.");
        URL_SAFE_NO_PAD.encode_string(key.namespace(), &mut text);
        text.push('.');
        URL_SAFE_NO_PAD.encode_string(key.id(), &mut text);
        Some(TurnToken {
            text,
            route,
            holder,
            key: key.clone(),
        })
    }

    /// Reads a token as the bot sends it back; `None` for anything that is
    /// not exactly one (no normalization: a token is compared whole).
    pub fn parse(text: &str) -> Option<TurnToken> {
        if text.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = text.split('.');
        let mut next = || parts.next();
        let (secret, route, holder) = (next()?, next()?, next()?);
        let (ns, id) = (next()?, next()?);
        if next().is_some() {
            return None;
        }
        let secret = URL_SAFE_NO_PAD.decode(secret).ok()?;
        if secret.len() != SECRET_BYTES {
            return None;
        }
        let (route, holder) = (decimal(route, 4)?, decimal(holder, 20)?);
        let text_of = |part: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(part).ok()?).ok();
        let (ns, id) = (text_of(ns)?, text_of(id)?);
        if ns.is_empty() || id.is_empty() || ns.contains(':') {
            return None;
        }
        Some(TurnToken {
            text: text.to_string(),
            route: usize::try_from(route).ok()?,
            holder,
            key: ConvKey::new(&ns, &id),
        })
    }

    /// The process that holds the turn (see [`TurnToken::mint`]).
    pub fn holder(&self) -> u64 {
        self.holder
    }

    /// The route the request came by (an index into the configured routes).
    pub fn route(&self) -> usize {
        self.route
    }

    /// The conversation as the store names it.
    pub fn key(&self) -> &ConvKey {
        &self.key
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the store keeps of it: SHA-256 of the whole token, hex.
    pub fn digest(&self) -> String {
        let sum = Sha256::digest(self.text.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in sum {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// A process-local handle: the secret part, unique per token.
    pub fn secret(&self) -> &str {
        self.text.split('.').next().unwrap_or_default()
    }
}

/// A decimal of at most `digits` digits, in one spelling only (no sign,
/// no leading zero).
fn decimal(text: &str, digits: usize) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= digits
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

impl std::fmt::Debug for TurnToken {
    // Never printed whole: it is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_names_its_turn() {
        let key = ConvKey::new("tg", "12:34/é");
        let t = TurnToken::mint(3, u64::MAX, &key).unwrap();
        let back = TurnToken::parse(t.as_str()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.route(), 3);
        assert_eq!(back.holder(), u64::MAX);
        assert_eq!(back.key(), &key);
        assert!(t
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_ne!(
            TurnToken::mint(3, u64::MAX, &key).unwrap(),
            t,
            "fresh secret"
        );
        assert_eq!(t.digest().len(), 64);
        assert!(!format!("{t:?}").contains(t.secret()));
    }

    #[test]
    fn secrets_do_not_repeat() {
        let secrets: std::collections::HashSet<[u8; SECRET_BYTES]> =
            (0..10_000).filter_map(|_| fresh_secret()).collect();
        assert_eq!(secrets.len(), 10_000);
    }

    #[test]
    fn anything_else_is_no_token() {
        let t = TurnToken::mint(0, 7, &ConvKey::new("tg", "1")).unwrap();
        let s = t.as_str();
        for bad in [
            "",
            "x",
            &format!("{s}.x"),
            &s.replacen('.', "", 1),
            &s.replacen(".0.", ".00.", 1),
            &s.replacen(".0.", ".-1.", 1),
            &s.replacen(".7.", ".07.", 1),
            &s.replacen(".7.", ".99999999999999999999.", 1),
            &s[1..],
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(TurnToken::parse(bad).is_none(), "{bad}");
        }
    }
}
