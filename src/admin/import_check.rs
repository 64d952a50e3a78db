//! What `POST /v1/import` accepts of one exported conversation, checked
//! before anything is written (issue 20, item 6): a stored key named as
//! an extracted key is (the namespace as a route's, hashed exactly when
//! this store hashes), a version below 2^53 (versions are JSON numbers and
//! Lua numbers), a lifetime left no longer than the namespace's configured
//! one, and a value sealed exactly when this store seals (and opening under
//! this key), or JSON text when it does not.

use bytes::Bytes;
use serde_json::Value;

use crate::backend::{Dumped, Lifetimes};
use crate::contract::decode_b64;
use crate::key::{is_namespace, is_usable_id, ConvKey};
use crate::privacy::{Privacy, HASHED_MARK};

/// Versions are exchanged as JSON numbers and kept as Lua numbers: above
/// 2^53 they lose their last digits.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// One exported conversation, checked against this store's privacy and
/// lifetimes; `Err` names what is wrong (never a value).
pub fn parse(
    c: &Value,
    privacy: &Privacy,
    lifetimes: &Lifetimes,
) -> Result<(ConvKey, Dumped), &'static str> {
    let key = c["key"]
        .as_str()
        .and_then(|k| k.split_once(':'))
        .filter(|(ns, id)| stored_namespace(ns) && is_usable_id(id))
        .map(|(ns, id)| ConvKey::new(ns, id))
        .ok_or("key is <namespace>:<id>, named as a route names its keys")?;
    if Privacy::is_hashed(&key) != privacy.hashes_keys() {
        return Err("the key's hashing does not match this store's (store.key_secret)");
    }
    let version = c["version"]
        .as_u64()
        .filter(|v| (1..=MAX_VERSION).contains(v))
        .ok_or("version is a whole number from 1 to 2^53 - 1")?;
    let most = u64::try_from(lifetimes.of(&key).as_millis()).unwrap_or(u64::MAX);
    let ttl_ms = c["ttl_ms"]
        .as_u64()
        .filter(|t| (1..=most).contains(t))
        .ok_or("ttl_ms is a number over 0, at most the namespace's lifetime")?;
    let state = match &c["state"] {
        Value::Null => None,
        Value::String(b64) => {
            let value = decode_b64(b64.as_bytes()).ok_or("state is base64url or null")?;
            Some(checked_value(&key, Bytes::from(value), privacy)?)
        }
        _ => return Err("state is base64url or null"),
    };
    let dumped = Dumped {
        version,
        state,
        ttl_ms,
    };
    Ok((key, dumped))
}

/// A stored value this store can serve: sealed under one of its keys for
/// this very key when it seals, plain JSON when it does not.
fn checked_value(key: &ConvKey, value: Bytes, privacy: &Privacy) -> Result<Bytes, &'static str> {
    let sealed = value.first() == Some(&crate::privacy::keyring::SEALED_V1);
    match (privacy.keyring().is_some(), sealed) {
        (true, false) => Err("a plaintext value for a store that seals ([store.encryption])"),
        (false, true) => Err("a sealed value for a store that does not seal"),
        (true, true) => match privacy.open_state(key, value.clone()) {
            Ok(_) => Ok(value),
            Err(_) => Err("a sealed value that none of this store's keys opens for this key"),
        },
        (false, false) => serde_json::from_slice::<serde::de::IgnoredAny>(&value)
            .map(|_| value)
            .map_err(|_| "state is not JSON"),
    }
}

/// A stored namespace: a route's, hashed or not.
fn stored_namespace(ns: &str) -> bool {
    is_namespace(ns.strip_suffix(HASHED_MARK).unwrap_or(ns))
}
