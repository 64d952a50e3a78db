//! Body mode, response side: the bot's report in the body field of a JSON
//! answer (`{"state": …}`, `{"clear": true}`, `"link"`, `"unlink"`), read
//! and removed so that no trace of it leaves.

use bytes::Bytes;
use serde_json::Value;

use super::link::{self, LinkAsk};
use super::{split_pointer, CaptureError, StateChange};

/// What the body of a bot's answer held, body mode.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyReport {
    /// Not a JSON object, or no member at the pointer: nothing to strip.
    Absent,
    /// The member was found and removed: the new body (the caller fixes
    /// `Content-Length`), what it asked for, its link report, and whether
    /// it deferred its report (`"deferred": true`).
    Found(
        Bytes,
        Result<StateChange, CaptureError>,
        Option<Result<LinkAsk, CaptureError>>,
        bool,
    ),
    /// Looks like a JSON object that mentions the member, but does not
    /// parse strictly (`NaN`, a lone surrogate): it cannot be stripped, so
    /// it must not leave.
    Unreadable,
}

/// Body mode, response side: reads and removes the member at `pointer` of a
/// JSON-object body.
pub fn capture_body(body: &[u8], pointer: &str, max: usize) -> BodyReport {
    if !looks_like_json(body) {
        return BodyReport::Absent;
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
        return if mentions(body, &split_pointer(pointer).1) {
            BodyReport::Unreadable
        } else {
            BodyReport::Absent
        };
    };
    let Some(member) = take_member(&mut json, pointer) else {
        return BodyReport::Absent;
    };
    let (change, link, deferred) = field_change(member, max);
    match serde_json::to_vec(&json) {
        Ok(new_body) => BodyReport::Found(Bytes::from(new_body), change, link, deferred),
        Err(_) => BodyReport::Unreadable,
    }
}

/// Removes and returns the member at `pointer` of a parsed body, if any.
pub fn take_member(body: &mut Value, pointer: &str) -> Option<Value> {
    let (parents, last) = split_pointer(pointer);
    let mut target = body.as_object_mut();
    for token in &parents {
        target = target
            .and_then(|t| t.get_mut(token))
            .and_then(Value::as_object_mut);
    }
    target.and_then(|t| t.shift_remove(&last))
}

/// Whether some lenient JSON parser could read `body` as a JSON document
/// holding objects: after an optional UTF-8 BOM and white space it starts
/// with `{` or `[`, or it is UTF-16/32 (a BOM or NUL bytes up front, which
/// Python's `json.loads` detects).
pub fn looks_like_json(body: &[u8]) -> bool {
    let head = &body[..body.len().min(4)];
    if head.starts_with(&[0xFE, 0xFF]) || head.starts_with(&[0xFF, 0xFE]) || head.contains(&0) {
        return true;
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{' || b == b'[')
}

/// The member name appears in the text, plainly or through an escape.
fn mentions(body: &[u8], name: &str) -> bool {
    body.windows(name.len().max(1))
        .any(|w| w == name.as_bytes())
        || body.windows(2).any(|w| w == b"\\u")
}

/// The body field's change and link report: `{"state": …}` or
/// `{"clear": true}`, with `"link"` / `"unlink"` beside them or alone; or
/// `{"deferred": true}` (a report beside it is seen, and refused by the
/// caller as ambiguous).
fn field_change(
    member: Value,
    max: usize,
) -> (
    Result<StateChange, CaptureError>,
    Option<Result<LinkAsk, CaptureError>>,
    bool,
) {
    let Value::Object(mut obj) = member else {
        return (Err(CaptureError::BadBodyField), None, false);
    };
    let link = link::take_link(&mut obj);
    let deferred = obj.shift_remove("deferred") == Some(Value::Bool(true));
    let (change, link) = report_of(obj, link, deferred, max);
    (change, link, deferred)
}

/// What a body field without its `deferred` member reports.
fn report_of(
    mut obj: serde_json::Map<String, Value>,
    link: Option<Result<LinkAsk, CaptureError>>,
    deferred: bool,
    max: usize,
) -> (
    Result<StateChange, CaptureError>,
    Option<Result<LinkAsk, CaptureError>>,
) {
    if obj.get("clear") == Some(&Value::Bool(true)) {
        return (Ok(StateChange::Clear), link);
    }
    let change = match obj.shift_remove("state") {
        Some(state) => match serde_json::to_vec(&state) {
            Err(_) => Err(CaptureError::Undecodable),
            Ok(text) if text.len() > max => Err(CaptureError::TooLarge {
                size: text.len(),
                max,
            }),
            Ok(text) => Ok(StateChange::Put(Bytes::from(text))),
        },
        None if link.is_some() || deferred => Ok(StateChange::Keep),
        None => Err(CaptureError::BadBodyField),
    };
    (change, link)
}
