//! Key extraction on arbitrary bodies, queries and header values: never
//! panics, and what it extracts obeys the id rules.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use statehold::key::{first_present, KeySource, RequestParts, MAX_ID_BYTES};

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
    let sources: Vec<KeySource> = [
        "json:/message/chat/id",
        "json:/entry/0/changes/0/value/messages/0/from",
        "json:/a~1b/~0c/0",
        "header:x-session",
        "query:chat",
        "form:From",
    ]
    .iter()
    .map(|s| KeySource::parse(s).expect("valid source"))
    .collect();
    let req = RequestParts {
        headers: &headers,
        query,
        body,
        json: json.as_ref(),
    };
    if let Ok(Some(id)) = first_present(&sources, &req) {
        assert!(!id.is_empty() && id.len() <= MAX_ID_BYTES);
        assert!(!id.chars().any(char::is_control));
    }
    // Source parsing itself.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeySource::parse(text);
    }
});
