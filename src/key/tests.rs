//! Unit tests of `key`.

use super::*;

fn parts<'a>(headers: &'a HeaderMap, json: Option<&'a Value>, body: &'a [u8]) -> RequestParts<'a> {
    RequestParts {
        headers,
        query: Some("chat=42&x=1&dup=1&dup=2"),
        body,
        json: json.map(JsonBody::Parsed),
    }
}

/// Every `json:` source finds the same id (or the same error) in the
/// body's text as in the parsed body.
#[test]
fn the_text_and_the_parsed_body_give_the_same_ids() {
    let headers = HeaderMap::new();
    let text =
        r#"{"update_id": 10000, "message": {"chat": {"id": 1.111111e6, "s": "a\u0062", "f": 1.5,
        "neg": -0, "big": 123456789012345678901234567890, "o": {}, "a": [], "n": null, "t": true,
        "long": "LONG", "ctl": "a\u0001b"}, "chat": {"id": -42}}, "a/b": {"~c": ["x", 7]}}"#
            .replace("LONG", &"x".repeat(300));
    let parsed: Value = serde_json::from_str(&text).unwrap();
    let pointers = [
        "/update_id",
        "/message/chat/id",
        "/message/chat/s",
        "/message/chat/f",
        "/message/chat/neg",
        "/message/chat/big",
        "/message/chat/o",
        "/message/chat/a",
        "/message/chat/n",
        "/message/chat/t",
        "/message/chat/long",
        "/message/chat/ctl",
        "/a~1b/~0c/0",
        "/a~1b/~0c/1",
        "/a~1b/~0c/2",
        "/missing",
        "/message",
    ];
    for pointer in pointers {
        let source = source(&format!("json:{pointer}"));
        let with = |json| RequestParts {
            headers: &headers,
            query: None,
            body: b"",
            json: Some(json),
        };
        let want = source.extract(&with(JsonBody::Parsed(&parsed)));
        let got = source.extract(&with(JsonBody::Text(&text)));
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{pointer}");
    }
}

fn source(s: &str) -> KeySource {
    KeySource::parse(s).unwrap()
}

#[test]
fn parses_sources() {
    assert_eq!(
        KeySource::parse("json:/message/from/id"),
        Ok(KeySource::Json("/message/from/id".into()))
    );
    assert!(KeySource::parse("json:message").is_err());
    assert!(KeySource::parse("cookie:x").is_err());
    assert!(KeySource::parse("header:").is_err());
    assert!(KeySource::parse("header:bad name").is_err());
    assert!(KeySource::parse("nothing").is_err());
    assert!(KeySource::parse("form:payload#user").is_err());
    assert!(KeySource::parse("form:#/user").is_err());
    assert_eq!(
        source("form:payload#/user/id").to_string(),
        "form:payload#/user/id"
    );
}

#[test]
fn first_present_wins_and_types_matter() {
    let json: Value = serde_json::json!({
        "message": {"from": {"id": 1111111}},
        "obj": {"id": {"nested": 1}},
        "s": "abc",
        "empty": ""
    });
    let headers = HeaderMap::new();
    let p = parts(&headers, Some(&json), b"From=%2B14158675310&Body=hi");
    let sources: Vec<KeySource> = ["json:/obj/id", "json:/empty", "json:/message/from/id"]
        .iter()
        .map(|s| source(s))
        .collect();
    assert_eq!(
        first_present(&sources, &p).unwrap().as_deref(),
        Some("1111111")
    );
    assert_eq!(
        source("json:/s").extract(&p).unwrap().as_deref(),
        Some("abc")
    );
    assert_eq!(
        source("query:chat").extract(&p).unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(
        source("form:From").extract(&p).unwrap().as_deref(),
        Some("+14158675310")
    );
}

#[test]
fn repeated_sources_are_refused() {
    let mut headers = HeaderMap::new();
    headers.append("x-session", "a".parse().unwrap());
    headers.append("x-session", "b".parse().unwrap());
    let p = parts(&headers, None, b"From=victim&From=attacker");
    assert!(matches!(
        source("form:From").extract(&p),
        Err(KeyError::Repeated(_))
    ));
    assert!(matches!(
        source("query:dup").extract(&p),
        Err(KeyError::Repeated(_))
    ));
    assert!(matches!(
        source("header:x-session").extract(&p),
        Err(KeyError::Repeated(_))
    ));
    // Percent-encoded names are the same name.
    let p = parts(&headers, None, b"From=a&Fr%6Fm=b");
    assert!(matches!(
        source("form:From").extract(&p),
        Err(KeyError::Repeated(_))
    ));
    // Lossy decoding would merge different raw values.
    let p = parts(&headers, None, b"From=%ff");
    assert!(matches!(
        source("form:From").extract(&p),
        Err(KeyError::NotText(_))
    ));
}

#[test]
fn integral_numbers_are_canonical() {
    for text in [
        "1111111",
        "1111111.0",
        "1.111111e6",
        "111111100e-2",
        "1.111111E+6",
    ] {
        assert_eq!(
            canonical_integer(text).as_deref(),
            Some("1111111"),
            "{text}"
        );
    }
    assert_eq!(canonical_integer("-0").as_deref(), Some("0"));
    assert_eq!(canonical_integer("-0.0e5").as_deref(), Some("0"));
    assert_eq!(canonical_integer("-12").as_deref(), Some("-12"));
    assert_eq!(canonical_integer("1.5"), None);
    assert_eq!(canonical_integer("0.5e0"), None);
    assert_eq!(canonical_integer("1e999999999999"), None);
    assert_eq!(canonical_integer("1e65"), None);
    let json: Value = serde_json::from_str(r#"{"a": 1.111111e6, "b": 1.5}"#).unwrap();
    let headers = HeaderMap::new();
    let p = parts(&headers, Some(&json), b"");
    assert_eq!(
        source("json:/a").extract(&p).unwrap().as_deref(),
        Some("1111111")
    );
    assert!(matches!(
        source("json:/b").extract(&p),
        Err(KeyError::NotInteger(_))
    ));
}

#[test]
fn json_inside_a_form_field() {
    let body = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U123%22%7D%7D";
    let headers = HeaderMap::new();
    let p = parts(&headers, None, body);
    assert_eq!(
        source("form:payload#/user/id")
            .extract(&p)
            .unwrap()
            .as_deref(),
        Some("U123")
    );
    assert_eq!(source("form:payload#/user/name").extract(&p).unwrap(), None);
    let p = parts(&headers, None, b"payload=%7Bnot");
    assert!(matches!(
        source("form:payload#/user/id").extract(&p),
        Err(KeyError::Malformed(_))
    ));
}

#[test]
fn header_source_and_limits() {
    let mut headers = HeaderMap::new();
    headers.insert("x-session", "sess-1".parse().unwrap());
    let p = parts(&headers, None, b"");
    assert_eq!(
        source("header:X-Session").extract(&p).unwrap().as_deref(),
        Some("sess-1")
    );
    let long = format!("a={}", "x".repeat(MAX_ID_BYTES + 1));
    let p = parts(&headers, None, long.as_bytes());
    assert!(matches!(
        source("form:a").extract(&p),
        Err(KeyError::TooLong(_))
    ));
    let p = parts(&headers, None, b"a=x%0Ay");
    assert!(matches!(
        source("form:a").extract(&p),
        Err(KeyError::NotText(_))
    ));
}

#[test]
fn keys_mask() {
    let k = ConvKey::new("wa", "16505551234");
    assert_eq!(k.as_str(), "wa:16505551234");
    assert_eq!(k.namespace(), "wa");
    assert_eq!(k.id(), "16505551234");
    assert_eq!(k.display(false).to_string(), "wa:***1234");
    assert_eq!(k.display(true).to_string(), "wa:16505551234");
    assert_eq!(mask_id("42"), "***2");
    assert!(!format!("{k:?}").contains("16505551234"));
}
