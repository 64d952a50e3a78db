//! Unit tests of `contract`.

use super::*;

#[test]
fn strips_every_reserved_header() {
    let mut h = HeaderMap::new();
    h.insert("X-Statehold-State", "e30".parse().unwrap());
    h.insert("x-statehold-whatever", "1".parse().unwrap());
    h.insert("content-type", "application/json".parse().unwrap());
    strip_reserved(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("content-type"));
}

#[test]
fn decodes_raw_and_base64() {
    assert_eq!(
        decode_state(br#"{"a":1}"#, 100).unwrap(),
        &br#"{"a":1}"#[..]
    );
    let b64 = encode_state(br#"[1,2]"#);
    assert_eq!(decode_state(b64.as_bytes(), 100).unwrap(), &b"[1,2]"[..]);
    // Padding is optional.
    let padded = base64::engine::general_purpose::URL_SAFE.encode(b"\"ab\"");
    assert!(padded.ends_with('='));
    assert_eq!(
        decode_state(padded.as_bytes(), 100).unwrap(),
        &b"\"ab\""[..]
    );
}

#[test]
fn rejects_garbage_and_oversize() {
    assert_eq!(
        decode_state(b"{not json", 100),
        Err(CaptureError::Undecodable)
    );
    assert_eq!(decode_state(b"!!!", 100), Err(CaptureError::Undecodable));
    // base64 of something that is not JSON
    let b64 = encode_state(b"hello");
    assert_eq!(
        decode_state(b64.as_bytes(), 100),
        Err(CaptureError::Undecodable)
    );
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(200));
    assert!(matches!(
        decode_state(big.as_bytes(), 100),
        Err(CaptureError::TooLarge { .. })
    ));
    // Invalid UTF-8 inside a JSON string (a fuzzer find).
    let bad_utf8 = encode_state(b"{\"step\":\"em\xe1\"}");
    assert_eq!(
        decode_state(bad_utf8.as_bytes(), 100),
        Err(CaptureError::Undecodable)
    );
    assert_eq!(
        decode_state(b"{\"a\":\"\xff\"}", 100),
        Err(CaptureError::Undecodable)
    );
    // A lone surrogate escape (a fuzzer find).
    assert_eq!(
        decode_state(br#"{"\uDADD":""}"#, 100),
        Err(CaptureError::Undecodable)
    );
    assert!(decode_state(br#"{"\u00e9":"\ud83d\ude80"}"#, 100).is_ok());
    let deep = "[".repeat(100_000);
    assert_eq!(
        decode_state(encode_state(deep.as_bytes()).as_bytes(), 1 << 20),
        Err(CaptureError::Undecodable)
    );
}

#[test]
fn clear_wins() {
    let mut h = HeaderMap::new();
    h.insert(HEADER_STATE, r#"{"a":1}"#.parse().unwrap());
    h.insert(HEADER_CLEAR, "1".parse().unwrap());
    assert_eq!(capture_headers(&h, 100), Ok(StateChange::Clear));
    h.remove(HEADER_CLEAR);
    assert!(matches!(capture_headers(&h, 100), Ok(StateChange::Put(_))));
    h.remove(HEADER_STATE);
    assert_eq!(capture_headers(&h, 100), Ok(StateChange::Keep));
}

#[test]
fn body_mode_roundtrip() {
    let key = ConvKey::new("tg", "1");
    let inj = Injection {
        key: &key,
        via: None,
        version: 3,
        status: LoadStatus::Restored,
        state: Some(br#"{"step":"email"}"#),
        turn: Some("tok"),
    };
    let mut body: Value = serde_json::json!({"update_id": 1, "_statehold": "forged"});
    assert!(inject_body(&mut body, "/_statehold", &inj));
    assert_eq!(body["_statehold"]["turn"], "tok");
    assert_eq!(body["_statehold"]["state"]["step"], "email");
    assert_eq!(body["_statehold"]["version"], 3);
    let mut nested: Value = serde_json::json!({"a": 1});
    assert!(inject_body(&mut nested, "/meta/sh", &inj));
    assert_eq!(nested["meta"]["sh"]["key"], "tg:1");
    assert!(!inject_body(&mut Value::Array(vec![]), "/_statehold", &inj));

    let resp = br#"{"method":"sendMessage","_statehold":{"state":{"step":"done"}},"text":"ok"}"#;
    assert_eq!(
        capture_body(resp, "/_statehold", 100),
        BodyReport::Found(
            Bytes::from_static(br#"{"method":"sendMessage","text":"ok"}"#),
            Ok(StateChange::Put(Bytes::from_static(br#"{"step":"done"}"#))),
            None,
            false
        )
    );
    assert_eq!(
        capture_body(br#"{"_statehold":{"clear":true}}"#, "/_statehold", 100),
        BodyReport::Found(
            Bytes::from_static(b"{}"),
            Ok(StateChange::Clear),
            None,
            false
        )
    );
    assert_eq!(
        capture_body(b"plain text", "/_statehold", 100),
        BodyReport::Absent
    );
    assert_eq!(
        capture_body(br#"{"_statehold":7}"#, "/_statehold", 100),
        BodyReport::Found(
            Bytes::from_static(b"{}"),
            Err(CaptureError::BadBodyField),
            None,
            false
        )
    );
    // A lenient parser's JSON that mentions the member cannot leave.
    assert_eq!(
        capture_body(
            br#"{"x": NaN, "_statehold":{"state":{}}}"#,
            "/_statehold",
            100
        ),
        BodyReport::Unreadable
    );
    assert_eq!(
        capture_body(br#"{"x": NaN}"#, "/_statehold", 100),
        BodyReport::Absent
    );
}

#[test]
fn underscore_spellings_are_reserved() {
    let mut h = HeaderMap::new();
    h.insert("X_Statehold_State", "e30".parse().unwrap());
    h.insert("x-statehold_key", "tg:1".parse().unwrap());
    h.insert("x_statehold-verified", "meta".parse().unwrap());
    h.insert("x-stateholdx", "1".parse().unwrap());
    strip_reserved(&mut h);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("x-stateholdx"));
}

#[test]
fn what_looks_like_json() {
    assert!(looks_like_json(b" {\"a\":1}"));
    assert!(looks_like_json(b"\xEF\xBB\xBF{}"));
    assert!(looks_like_json(b"\x00{\x00}"));
    assert!(looks_like_json(b"[1]"));
    assert!(!looks_like_json(b"From=%2B1&Body=hi"));
    assert!(!looks_like_json(b""));
}

#[test]
fn a_deferred_answer_is_read_in_both_places() {
    let mut h = HeaderMap::new();
    assert!(!capture_deferred(&h));
    h.insert(HEADER_DEFERRED, HeaderValue::from_static("1"));
    assert!(capture_deferred(&h));
    h.insert(HEADER_DEFERRED, HeaderValue::from_static("no"));
    assert!(!capture_deferred(&h));
    assert_eq!(
        capture_body(
            br#"{"ok":true,"_statehold":{"deferred":true}}"#,
            "/_statehold",
            100
        ),
        BodyReport::Found(
            Bytes::from_static(br#"{"ok":true}"#),
            Ok(StateChange::Keep),
            None,
            true
        )
    );
    // A report beside it is seen (the pipeline refuses the pair).
    assert!(matches!(
        capture_body(
            br#"{"_statehold":{"deferred":true,"clear":true}}"#,
            "/_statehold",
            100
        ),
        BodyReport::Found(_, Ok(StateChange::Clear), None, true)
    ));
}
