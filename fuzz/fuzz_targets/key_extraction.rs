//! Key extraction on arbitrary bodies, queries and header values (JSON,
//! form fields, JSON inside form fields): never panics, what it extracts
//! obeys the id rules, and integral numbers are canonical. The body's text
//! checked and read in place (header mode) answers exactly as the parsed
//! body does: the check accepts what parsing accepts, and every source
//! finds the same id or the same error.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use statehold::key::{
    canonical_integer, check_json, first_present, JsonBody, KeySource, RequestParts, MAX_ID_BYTES,
};

fuzz_target!(|data: &[u8]| {
    // First line: query string and header value; the rest: the body.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(0);
    let (head, body) = data.split_at(split);
    let query = std::str::from_utf8(head).ok();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(head) {
        headers.insert("x-session", v);
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    assert_eq!(check_json(body).is_ok(), json.is_some(), "the check is as strict as parsing");
    let text: Option<&str> = json.as_ref().and_then(|_| std::str::from_utf8(body).ok());
    let sources: Vec<KeySource> = [
        "json:/message/chat/id",
        "json:/entry/0/changes/0/value/messages/0/from",
        "json:/a~1b/~0c/0",
        "header:x-session",
        "query:chat",
        "form:From",
        "form:payload#/user/id",
        "form:payload#/a~1b/0",
    ]
    .iter()
    .map(|s| KeySource::parse(s).expect("valid source"))
    .collect();
    let req = RequestParts {
        headers: &headers,
        query,
        body,
        json: json.as_ref().map(JsonBody::Parsed),
    };
    let in_place = RequestParts {
        headers: &headers,
        query,
        body,
        json: text.map(JsonBody::Text),
    };
    for source in &sources {
        let (want, got) = (source.extract(&req), source.extract(&in_place));
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{source}");
    }
    for source in &sources {
        if let Ok(Some(id)) = source.extract(&req) {
            assert!(!id.is_empty() && id.len() <= MAX_ID_BYTES);
            assert!(!id.chars().any(char::is_control));
            assert!(!id.contains('\u{FFFD}') || matches!(source, KeySource::Json(_) | KeySource::Header(_)));
        }
    }
    let _ = first_present(&sources, &req);
    // Canonical integers are a fixed point and integers in plain form.
    if let Some(text) = query {
        if let Some(c) = canonical_integer(text) {
            assert_eq!(canonical_integer(&c).as_deref(), Some(c.as_str()));
            let digits = c.strip_prefix('-').unwrap_or(&c);
            assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
            assert!(digits == "0" || !digits.starts_with('0'), "{c}");
            assert_ne!(c, "-0");
        }
    }
    // Source parsing itself.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeySource::parse(text);
    }
});
