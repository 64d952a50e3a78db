//! Webhook authenticity (`route.verify`), checked on the raw body bytes
//! before anything else reads them. Comparisons are constant-time.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Secret, VerifyKind};

/// Slack's replay window.
const SLACK_MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the replay window")]
    Stale,
}

pub struct Verifier {
    kind: VerifyKind,
    secret: Secret,
}

impl Verifier {
    pub fn new(kind: VerifyKind, secret: Secret) -> Verifier {
        Verifier { kind, secret }
    }

    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), VerifyError> {
        let secret = self.secret.expose().as_bytes();
        match self.kind {
            VerifyKind::Telegram => {
                let name = "x-telegram-bot-api-secret-token";
                let got = headers.get(name).ok_or(VerifyError::Missing(name))?;
                ct_eq(got.as_bytes(), secret)
            }
            VerifyKind::Meta => {
                let name = "x-hub-signature-256";
                let got = headers.get(name).ok_or(VerifyError::Missing(name))?;
                let hex = got
                    .as_bytes()
                    .strip_prefix(b"sha256=")
                    .ok_or(VerifyError::Mismatch)?;
                ct_eq(hex, hmac_hex(secret, &[body]).as_bytes())
            }
            VerifyKind::Slack => {
                let (ts_name, sig_name) = ("x-slack-request-timestamp", "x-slack-signature");
                let ts = headers.get(ts_name).ok_or(VerifyError::Missing(ts_name))?;
                let sig = headers
                    .get(sig_name)
                    .ok_or(VerifyError::Missing(sig_name))?;
                let ts_num: i64 = ts
                    .to_str()
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or(VerifyError::Stale)?;
                if (now_secs - ts_num).abs() > SLACK_MAX_SKEW_SECS {
                    return Err(VerifyError::Stale);
                }
                let expected = format!(
                    "v0={}",
                    hmac_hex(secret, &[b"v0:", ts.as_bytes(), b":", body])
                );
                ct_eq(sig.as_bytes(), expected.as_bytes())
            }
        }
    }
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
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_token() {
        let v = Verifier::new(VerifyKind::Telegram, Secret::new("tok_123"));
        let mut h = HeaderMap::new();
        assert!(matches!(v.check(&h, b"", 0), Err(VerifyError::Missing(_))));
        h.insert(
            "x-telegram-bot-api-secret-token",
            "tok_124".parse().unwrap(),
        );
        assert_eq!(v.check(&h, b"", 0), Err(VerifyError::Mismatch));
        h.insert(
            "x-telegram-bot-api-secret-token",
            "tok_123".parse().unwrap(),
        );
        assert_eq!(v.check(&h, b"", 0), Ok(()));
    }

    #[test]
    fn meta_signature() {
        let v = Verifier::new(VerifyKind::Meta, Secret::new("app-secret"));
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut h = HeaderMap::new();
        let sig = format!("sha256={}", hmac_hex(b"app-secret", &[body]));
        h.insert("x-hub-signature-256", sig.parse().unwrap());
        assert_eq!(v.check(&h, body, 0), Ok(()));
        assert_eq!(v.check(&h, b"{}", 0), Err(VerifyError::Mismatch));
    }

    #[test]
    fn slack_signature_and_window() {
        let v = Verifier::new(
            VerifyKind::Slack,
            Secret::new("8f742231b10e8888abcd99yyyzzz85a5"),
        );
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J";
        let ts = "1531420618";
        let mut h = HeaderMap::new();
        let sig = format!(
            "v0={}",
            hmac_hex(
                b"8f742231b10e8888abcd99yyyzzz85a5",
                &[b"v0:", ts.as_bytes(), b":", body]
            )
        );
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h.insert("x-slack-signature", sig.parse().unwrap());
        assert_eq!(v.check(&h, body, 1_531_420_618 + 10), Ok(()));
        assert_eq!(
            v.check(&h, body, 1_531_420_618 + 301),
            Err(VerifyError::Stale)
        );
    }
}
