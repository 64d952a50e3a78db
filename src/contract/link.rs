//! The bot's link report (`backend/link.rs`): `X-Statehold-Link:
//! <namespace>:<id>` makes the request's conversation a channel of that
//! member key, `X-Statehold-Unlink: 1` ends it; in body mode the same as
//! `"link": "<namespace>:<id>"` and `"unlink": true` in the body field.
//! The bot is told where a linked request came from with
//! `X-Statehold-Via`.

use http::HeaderMap;
use serde_json::{Map, Value};

use super::CaptureError;
use crate::key::{is_namespace, is_usable_id, ConvKey};

pub const HEADER_LINK: &str = "x-statehold-link";
pub const HEADER_UNLINK: &str = "x-statehold-unlink";
/// Request: the channel key a linked request came in on.
pub const HEADER_VIA: &str = "x-statehold-via";

/// What the bot asked of the conversation's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkAsk {
    /// Make it a channel of this member key.
    To(ConvKey),
    /// Make it its own conversation again.
    Unlink,
}

/// `<namespace>:<id>`: the namespace of name characters (as route
/// namespaces), the id text of at most `MAX_ID_BYTES` bytes without
/// control characters (as extracted ids).
pub fn parse_member(text: &str) -> Result<ConvKey, CaptureError> {
    let (ns, id) = text.split_once(':').ok_or(CaptureError::BadLink)?;
    if ns.len() <= 64 && is_namespace(ns) && is_usable_id(id) {
        Ok(ConvKey::new(ns, id))
    } else {
        Err(CaptureError::BadLink)
    }
}

/// The link report in the bot's headers, if any (unlink wins: it is the
/// safe reading of an answer that says both).
pub fn capture_link(headers: &HeaderMap) -> Option<Result<LinkAsk, CaptureError>> {
    if let Some(v) = headers.get(HEADER_UNLINK) {
        let v = v.as_bytes();
        if v == b"1" || v.eq_ignore_ascii_case(b"true") {
            return Some(Ok(LinkAsk::Unlink));
        }
    }
    let value = headers.get(HEADER_LINK)?;
    Some(match value.to_str() {
        Ok(text) => parse_member(text.trim()).map(LinkAsk::To),
        Err(_) => Err(CaptureError::BadLink),
    })
}

/// Body mode: takes `link` / `unlink` out of the body field's object.
pub fn take_link(field: &mut Map<String, Value>) -> Option<Result<LinkAsk, CaptureError>> {
    let unlink = field.shift_remove("unlink");
    let link = field.shift_remove("link");
    if unlink == Some(Value::Bool(true)) {
        return Some(Ok(LinkAsk::Unlink));
    }
    match link? {
        Value::String(text) => Some(parse_member(&text).map(LinkAsk::To)),
        _ => Some(Err(CaptureError::BadLink)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn link_reports_are_read_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(capture_link(&h), None);
        h.insert(HEADER_LINK, HeaderValue::from_static("member:42"));
        assert_eq!(
            capture_link(&h),
            Some(Ok(LinkAsk::To(ConvKey::new("member", "42"))))
        );
        for bad in ["member", ":42", "mem ber:42", "member:", "m/x:1"] {
            h.insert(HEADER_LINK, HeaderValue::from_str(bad).unwrap());
            assert_eq!(capture_link(&h), Some(Err(CaptureError::BadLink)), "{bad}");
        }
        h.insert(HEADER_UNLINK, HeaderValue::from_static("1"));
        assert_eq!(capture_link(&h), Some(Ok(LinkAsk::Unlink)));
        let long = format!("member:{}", "x".repeat(crate::key::MAX_ID_BYTES + 1));
        assert_eq!(parse_member(&long), Err(CaptureError::BadLink));
    }
}
