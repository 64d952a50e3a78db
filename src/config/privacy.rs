//! `store.key_secret` and `[store.encryption]`: the config of privacy at
//! rest ([`crate::privacy`]), checked and turned into key material.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};
use crate::privacy::{material, Privacy};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Keys that seal values (AES-256-GCM): the first one not `open_only` seals; every listed key opens. Rotate: add the new key `open_only`, then make it the sealing one; remove an old one once `statehold rekey` moved every value off it.
    pub keys: Vec<EncryptionKey>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionKey {
    /// Names the key in each value it seals (1 to 64 characters of A-Z a-z 0-9 _ - .).
    pub id: String,
    /// 32 random bytes in base64, standard or URL-safe (`statehold keygen` prints one; prefer `secret_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Environment variable holding the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the key (a mounted secret); created with a new random key (0600) when missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Opens values, never seals: the first step of a rotation (every replica learns the new key before any seals with it). The first key without it seals.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub open_only: bool,
}

/// Where a secret comes from once `*_env` is resolved.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Inline(&'a Secret),
    File(&'a Path),
}

/// Whether a missing key file is created (at startup) or left for later
/// (`check-config`, which must not write).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Create,
    Skip,
}

/// Checks the privacy keys (after `*_env` resolution) and builds them.
pub fn build(
    key_secret: Option<Source<'_>>,
    encryption: Option<&EncryptionConfig>,
    missing: Missing,
) -> Result<Privacy, ConfigError> {
    let hash = match key_secret {
        Some(source) => match read(source, "store.key_secret", missing)? {
            Some(secret) => Some(hash_secret(&secret)?),
            None => None,
        },
        None => None,
    };
    let keys = match encryption {
        Some(e) if e.keys.is_empty() => {
            return Err(ConfigError::new(
                "store.encryption.keys",
                "list at least one key, or leave [store.encryption] out",
            ))
        }
        Some(e) => sealing_keys(&e.keys, missing)?,
        None => Vec::new(),
    };
    Ok(Privacy::new(hash.as_deref(), keys))
}

fn hash_secret(secret: &Secret) -> Result<Vec<u8>, ConfigError> {
    let bytes = material::decode(secret.expose()).ok_or_else(|| {
        ConfigError::new(
            "store.key_secret",
            "must be base64 (statehold keygen prints one)",
        )
    })?;
    if bytes.len() < 32 {
        return Err(ConfigError::new(
            "store.key_secret",
            format!("must hold at least 32 bytes, has {}", bytes.len()),
        ));
    }
    Ok(bytes)
}

fn sealing_keys(
    listed: &[EncryptionKey],
    missing: Missing,
) -> Result<Vec<(String, [u8; 32])>, ConfigError> {
    let mut keys: Vec<(String, [u8; 32])> = Vec::new();
    for (i, key) in listed.iter().enumerate() {
        let at = |field: &str| format!("store.encryption.keys[{i}].{field}");
        let name_chars = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
        if key.id.is_empty() || key.id.len() > 64 || !key.id.chars().all(name_chars) {
            return Err(ConfigError::new(
                at("id"),
                "1 to 64 characters of A-Z a-z 0-9 _ - .",
            ));
        }
        if keys.iter().any(|(id, _)| *id == key.id) {
            return Err(ConfigError::new(
                at("id"),
                format!("{:?} is listed twice", key.id),
            ));
        }
        let source = match (&key.secret, &key.secret_file) {
            (Some(secret), None) => Source::Inline(secret),
            (None, Some(file)) => Source::File(file),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    at("secret_file"),
                    "set one of secret, secret_env, secret_file",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    at("secret"),
                    "required (or secret_env, or secret_file)",
                ))
            }
        };
        let Some(secret) = read(source, &at("secret"), missing)? else {
            continue;
        };
        let bytes = material::key32(secret.expose()).ok_or_else(|| {
            ConfigError::new(
                at("secret"),
                "must be 32 bytes in base64 (statehold keygen prints one)",
            )
        })?;
        keys.push((key.id.clone(), bytes));
    }
    sealing_first(listed, keys)
}

/// Puts the first key not marked `open_only` first: it seals. A new key is
/// rolled out open-only first, so that no replica ever meets a value
/// sealed under a key it does not hold yet (docs/privacy.md, Rotation).
fn sealing_first(
    listed: &[EncryptionKey],
    mut keys: Vec<(String, [u8; 32])>,
) -> Result<Vec<(String, [u8; 32])>, ConfigError> {
    let sealing = listed.iter().find(|k| !k.open_only).ok_or_else(|| {
        ConfigError::new(
            "store.encryption.keys",
            "every key is open_only: one must seal",
        )
    })?;
    if let Some(at) = keys.iter().position(|(id, _)| *id == sealing.id) {
        let first = keys.remove(at);
        keys.insert(0, first);
    }
    Ok(keys)
}

/// A secret's text: inline, or from its file. A missing file is created
/// with a new random key (`Missing::Create`) or skipped (`None`).
fn read(source: Source<'_>, key: &str, missing: Missing) -> Result<Option<Secret>, ConfigError> {
    let path = match source {
        Source::Inline(secret) => return Ok(Some(secret.clone())),
        Source::File(path) => path,
    };
    let fail = |e: std::io::Error| ConfigError::new(key, format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Secret::new(text.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing == Missing::Create => {
            let fresh = material::generate()
                .map_err(|_| ConfigError::new(key, "no randomness available to create a key"))?;
            crate::private_file::prepare(path).map_err(fail)?;
            std::fs::write(path, format!("{fresh}\n")).map_err(fail)?;
            tracing::warn!(file = %path.display(), "created a new key; back it up: without it, stored conversations cannot be found or opened");
            Ok(Some(Secret::new(fresh)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(e)),
    }
}
