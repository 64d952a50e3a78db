//! Webhook authenticity (`route.verify`), in two stages so that an
//! unauthenticated client costs as little as possible:
//!
//! 1. [`Verifier::check_head`] runs before the body is read. Telegram's
//!    secret token is checked completely here; for the signature kinds the
//!    headers must be present and well formed, and Slack's and Discord's
//!    timestamps within the replay window.
//! 2. [`Verifier::check_body`] checks the signature over the raw body bytes.
//!
//! Signature checks apply to the methods that carry one: Meta's subscription
//! handshake (`GET ?hub.mode=subscribe`) carries none and is forwarded to
//! the bot without state ([`HeadVerdict::Handshake`]), after checking
//! `hub.verify_token` when `verify.verify_token` is set. Comparisons are
//! constant-time.

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use ring::signature::{UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// How a route checks that a webhook really comes from its platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyKind {
    /// `X-Telegram-Bot-Api-Secret-Token` equals the secret.
    Telegram,
    /// `X-Hub-Signature-256` is the HMAC-SHA256 of the body (WhatsApp Cloud API).
    Meta,
    /// `X-Slack-Signature` over timestamp and body, timestamp within 5 minutes.
    Slack,
    /// `X-Twilio-Signature`: HMAC-SHA1 over `verify.public_url` and the
    /// sorted form parameters.
    Twilio,
    /// `X-Signature-Ed25519` over `X-Signature-Timestamp` and body, with
    /// `verify.public_key`; timestamp within 5 minutes.
    Discord,
}

impl VerifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyKind::Telegram => "telegram",
            VerifyKind::Meta => "meta",
            VerifyKind::Slack => "slack",
            VerifyKind::Twilio => "twilio",
            VerifyKind::Discord => "discord",
        }
    }
}

/// Slack's replay window; also applied to Discord's signed timestamp.
const MAX_SKEW_SECS: u64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("hub.verify_token does not match")]
    HandshakeToken,
}

/// What the head alone decided.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadVerdict {
    /// Authentic; the body need not be checked (Telegram).
    Verified,
    /// Plausible; the signature over the body decides.
    NeedsBody,
    /// Meta's subscription handshake: forwarded to the bot without state.
    Handshake,
}

/// What a check looks at besides the body.
pub struct HeadParts<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// The request path after the route's prefix (Twilio signs the URL).
    pub path_suffix: &'a str,
}

/// The key material of one kind.
enum Key {
    /// HMAC key or shared token.
    Secret(Secret),
    /// Discord's Ed25519 public key.
    Ed25519(Vec<u8>),
}

pub struct Verifier {
    kind: VerifyKind,
    key: Key,
    /// Twilio: the public URL the platform calls for this route's path.
    public_url: Option<String>,
    /// Meta: the handshake's `hub.verify_token`.
    verify_token: Option<Secret>,
}

/// A Discord public key that is not 32 bytes of hex.
#[derive(Debug, thiserror::Error)]
#[error("must be 64 hex digits (the application's Ed25519 public key)")]
pub struct BadPublicKey;

impl Verifier {
    /// A verifier for the secret-based kinds (all but Discord).
    pub fn new(kind: VerifyKind, secret: Secret) -> Verifier {
        Verifier {
            kind,
            key: Key::Secret(secret),
            public_url: None,
            verify_token: None,
        }
    }

    /// Discord: the application's public key, 64 hex digits.
    pub fn discord(public_key_hex: &str) -> Result<Verifier, BadPublicKey> {
        let key = decode_hex(public_key_hex.trim())
            .filter(|k| k.len() == 32)
            .ok_or(BadPublicKey)?;
        Ok(Verifier {
            kind: VerifyKind::Discord,
            key: Key::Ed25519(key),
            public_url: None,
            verify_token: None,
        })
    }

    pub fn with_public_url(mut self, url: Option<String>) -> Verifier {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    pub fn with_verify_token(mut self, token: Option<Secret>) -> Verifier {
        self.verify_token = token;
        self
    }

    pub fn kind(&self) -> VerifyKind {
        self.kind
    }

    /// Stage 1: what can be decided from the request head.
    pub fn check_head(
        &self,
        req: &HeadParts<'_>,
        now_secs: i64,
    ) -> Result<HeadVerdict, VerifyError> {
        let h = req.headers;
        match self.kind {
            VerifyKind::Telegram => {
                let name = "x-telegram-bot-api-secret-token";
                let got = h.get(name).ok_or(VerifyError::Missing(name))?;
                ct_eq(got.as_bytes(), self.secret())?;
                Ok(HeadVerdict::Verified)
            }
            VerifyKind::Meta if req.method == Method::GET || req.method == Method::HEAD => {
                if let Some(token) = &self.verify_token {
                    let got = query_value(req.query, "hub.verify_token").unwrap_or_default();
                    ct_eq(got.as_bytes(), token.expose().as_bytes())
                        .map_err(|_| VerifyError::HandshakeToken)?;
                }
                Ok(HeadVerdict::Handshake)
            }
            VerifyKind::Meta => {
                let name = "x-hub-signature-256";
                let got = h.get(name).ok_or(VerifyError::Missing(name))?;
                let hex = got.as_bytes().strip_prefix(b"sha256=");
                if !hex.is_some_and(|x| x.len() == 64 && x.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(VerifyError::Malformed(name));
                }
                Ok(HeadVerdict::NeedsBody)
            }
            VerifyKind::Slack => {
                h.get("x-slack-signature")
                    .ok_or(VerifyError::Missing("x-slack-signature"))?;
                fresh(h, "x-slack-request-timestamp", now_secs)?;
                Ok(HeadVerdict::NeedsBody)
            }
            VerifyKind::Twilio => {
                let name = "x-twilio-signature";
                h.get(name).ok_or(VerifyError::Missing(name))?;
                Ok(HeadVerdict::NeedsBody)
            }
            VerifyKind::Discord => {
                let name = "x-signature-ed25519";
                let sig = h.get(name).ok_or(VerifyError::Missing(name))?;
                if sig.len() != 128 || !sig.as_bytes().iter().all(u8::is_ascii_hexdigit) {
                    return Err(VerifyError::Malformed(name));
                }
                fresh(h, "x-signature-timestamp", now_secs)?;
                Ok(HeadVerdict::NeedsBody)
            }
        }
    }

    /// Stage 2: the signature over the raw body (after `check_head` said
    /// [`HeadVerdict::NeedsBody`]).
    pub fn check_body(&self, req: &HeadParts<'_>, body: &[u8]) -> Result<(), VerifyError> {
        let h = req.headers;
        match self.kind {
            VerifyKind::Telegram => Ok(()),
            VerifyKind::Meta => {
                let got = h
                    .get("x-hub-signature-256")
                    .ok_or(VerifyError::Missing("x-hub-signature-256"))?;
                let hex = got
                    .as_bytes()
                    .strip_prefix(b"sha256=")
                    .ok_or(VerifyError::Mismatch)?;
                let expected = hmac_hex(self.secret(), &[body]);
                ct_eq(&hex.to_ascii_lowercase(), expected.as_bytes())
            }
            VerifyKind::Slack => {
                let ts = h
                    .get("x-slack-request-timestamp")
                    .ok_or(VerifyError::Missing("x-slack-request-timestamp"))?;
                let sig = h
                    .get("x-slack-signature")
                    .ok_or(VerifyError::Missing("x-slack-signature"))?;
                let expected = format!(
                    "v0={}",
                    hmac_hex(self.secret(), &[b"v0:", ts.as_bytes(), b":", body])
                );
                ct_eq(sig.as_bytes(), expected.as_bytes())
            }
            VerifyKind::Twilio => {
                let sig = h
                    .get("x-twilio-signature")
                    .ok_or(VerifyError::Missing("x-twilio-signature"))?;
                let url = self.twilio_url(req);
                let expected = twilio_signature(self.secret(), &url, req.query, body)?;
                ct_eq(sig.as_bytes(), expected.as_bytes())
            }
            VerifyKind::Discord => {
                let (Some(sig), Some(ts)) =
                    (h.get("x-signature-ed25519"), h.get("x-signature-timestamp"))
                else {
                    return Err(VerifyError::Missing("x-signature-ed25519"));
                };
                let sig = decode_hex(sig.to_str().unwrap_or_default())
                    .ok_or(VerifyError::Malformed("x-signature-ed25519"))?;
                let Key::Ed25519(key) = &self.key else {
                    return Err(VerifyError::Mismatch);
                };
                let mut message = Vec::with_capacity(ts.len() + body.len());
                message.extend_from_slice(ts.as_bytes());
                message.extend_from_slice(body);
                UnparsedPublicKey::new(&ED25519, key)
                    .verify(&message, &sig)
                    .map_err(|_| VerifyError::Mismatch)
            }
        }
    }

    fn secret(&self) -> &[u8] {
        match &self.key {
            Key::Secret(s) => s.expose().as_bytes(),
            Key::Ed25519(_) => &[],
        }
    }

    /// The URL Twilio signed: `verify.public_url`, the path below the
    /// route's prefix, and the query as received.
    fn twilio_url(&self, req: &HeadParts<'_>) -> String {
        let mut url = self.public_url.clone().unwrap_or_default();
        url.push_str(req.path_suffix);
        if let Some(q) = req.query {
            url.push('?');
            url.push_str(q);
        }
        url
    }
}

/// Twilio's `X-Twilio-Signature`: base64 of HMAC-SHA1 over the URL followed
/// by every form parameter as `name` + `value`, sorted by name. JSON bodies
/// are signed through the URL's `bodySHA256` parameter instead.
pub fn twilio_signature(
    token: &[u8],
    url: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<String, VerifyError> {
    let mut data = url.as_bytes().to_vec();
    match query_value(query, "bodySHA256") {
        Some(hash) => {
            let actual = Sha256::digest(body);
            let actual: String = actual.iter().map(|b| format!("{b:02x}")).collect();
            ct_eq(hash.to_ascii_lowercase().as_bytes(), actual.as_bytes())?;
        }
        None => {
            let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            params.sort();
            for (k, v) in params {
                data.extend_from_slice(k.as_bytes());
                data.extend_from_slice(v.as_bytes());
            }
        }
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token);
    let tag = ring::hmac::sign(&key, &data);
    Ok(base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

/// A timestamp header (Unix seconds) within the replay window.
fn fresh(h: &HeaderMap, name: &'static str, now_secs: i64) -> Result<(), VerifyError> {
    let ts: i64 = h
        .get(name)
        .ok_or(VerifyError::Missing(name))?
        .to_str()
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or(VerifyError::Malformed(name))?;
    // abs_diff: no overflow whatever the client sends (i64::MIN included).
    if now_secs.abs_diff(ts) > MAX_SKEW_SECS {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> Result<(), VerifyError> {
    if a.len() == b.len() && bool::from(a.ct_eq(b)) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Lower-case hex HMAC-SHA256 over the concatenated parts.
pub fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            write!(s, "{b:02x}").ok();
            s
        })
}

#[cfg(test)]
mod tests;
