//! Unit tests of `verify`.

use super::*;

fn head<'a>(headers: &'a HeaderMap, method: &'a Method, query: Option<&'a str>) -> HeadParts<'a> {
    HeadParts {
        method,
        headers,
        query,
        path_suffix: "",
    }
}

fn check(v: &Verifier, h: &HeaderMap, body: &[u8], now: i64) -> Result<(), VerifyError> {
    let req = head(h, &Method::POST, None);
    match v.check_head(&req, now)? {
        HeadVerdict::NeedsBody => v.check_body(&req, body),
        _ => Ok(()),
    }
}

#[test]
fn telegram_token() {
    let v = Verifier::new(VerifyKind::Telegram, Secret::new("tok_123"));
    let mut h = HeaderMap::new();
    assert!(matches!(
        check(&v, &h, b"", 0),
        Err(VerifyError::Missing(_))
    ));
    h.insert(
        "x-telegram-bot-api-secret-token",
        "tok_124".parse().unwrap(),
    );
    assert_eq!(check(&v, &h, b"", 0), Err(VerifyError::Mismatch));
    h.insert(
        "x-telegram-bot-api-secret-token",
        "tok_123".parse().unwrap(),
    );
    let req = head(&h, &Method::POST, None);
    assert_eq!(v.check_head(&req, 0), Ok(HeadVerdict::Verified));
}

#[test]
fn meta_signature_and_handshake() {
    let v = Verifier::new(VerifyKind::Meta, Secret::new("app-secret"))
        .with_verify_token(Some(Secret::new("hub-token")));
    let body = br#"{"object":"whatsapp_business_account"}"#;
    let mut h = HeaderMap::new();
    let sig = format!("sha256={}", hmac_hex(b"app-secret", &[body]));
    h.insert("x-hub-signature-256", sig.parse().unwrap());
    assert_eq!(check(&v, &h, body, 0), Ok(()));
    assert_eq!(check(&v, &h, b"{}", 0), Err(VerifyError::Mismatch));
    h.insert("x-hub-signature-256", "sha256=zz".parse().unwrap());
    assert!(matches!(
        check(&v, &h, body, 0),
        Err(VerifyError::Malformed(_))
    ));
    // The handshake carries no signature.
    let empty = HeaderMap::new();
    let q = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=hub-token";
    assert_eq!(
        v.check_head(&head(&empty, &Method::GET, Some(q)), 0),
        Ok(HeadVerdict::Handshake)
    );
    let bad = "hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess";
    assert_eq!(
        v.check_head(&head(&empty, &Method::GET, Some(bad)), 0),
        Err(VerifyError::HandshakeToken)
    );
    // A POST without a signature is refused from its head.
    assert!(v.check_head(&head(&empty, &Method::POST, None), 0).is_err());
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
    assert_eq!(check(&v, &h, body, 1_531_420_618 + 10), Ok(()));
    assert_eq!(
        check(&v, &h, body, 1_531_420_618 + 301),
        Err(VerifyError::Stale)
    );
    // No overflow on hostile timestamps.
    h.insert(
        "x-slack-request-timestamp",
        i64::MIN.to_string().parse().unwrap(),
    );
    assert_eq!(check(&v, &h, body, i64::MAX), Err(VerifyError::Stale));
}

#[test]
fn twilio_documentation_vector() {
    // Twilio's documented example: auth token 12345, this URL and these
    // parameters sign to GvWf1cFY/Q7PnoempGyD5oXAezc=.
    let body = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212";
    let sig = twilio_signature(
        b"12345",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        Some("foo=1&bar=2"),
        body,
    )
    .unwrap();
    assert_eq!(sig, "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    let v = Verifier::new(VerifyKind::Twilio, Secret::new("12345"))
        .with_public_url(Some("https://mycompany.com/myapp.php".into()));
    let mut h = HeaderMap::new();
    h.insert("x-twilio-signature", sig.parse().unwrap());
    let req = head(&h, &Method::POST, Some("foo=1&bar=2"));
    assert_eq!(v.check_head(&req, 0), Ok(HeadVerdict::NeedsBody));
    assert_eq!(v.check_body(&req, body), Ok(()));
    assert_eq!(
        v.check_body(&req, b"From=%2B10000000000"),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn discord_ed25519() {
    // RFC 8032 §7.1 TEST 1 key pair.
    let seed =
        decode_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let v = Verifier::discord("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        .unwrap();
    let body = br#"{"type":1}"#;
    let ts = "1700000000";
    let sig = pair.sign(&[ts.as_bytes(), body].concat());
    let sig_hex: String = sig.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let mut h = HeaderMap::new();
    h.insert("x-signature-ed25519", sig_hex.parse().unwrap());
    h.insert("x-signature-timestamp", ts.parse().unwrap());
    assert_eq!(check(&v, &h, body, 1_700_000_010), Ok(()));
    assert_eq!(
        check(&v, &h, br#"{"type":2}"#, 1_700_000_010),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(check(&v, &h, body, 1_700_001_000), Err(VerifyError::Stale));
    assert!(Verifier::discord("abcd").is_err());
}
