//! Path normalization on arbitrary request paths: never panics, and what it
//! returns is normal: absolute, no empty or dot segments, no encoded `/`,
//! `\` or control characters, unreserved characters never escaped, a fixed
//! point, and a valid request-target path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statehold::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Only what a parsed request-target can hold reaches the normalizer.
    let Ok(pq) = http::uri::PathAndQuery::try_from(text) else {
        return;
    };
    let Ok(out) = normalize(pq.path()) else {
        return;
    };
    assert!(out.starts_with('/'), "{out}");
    assert!(!out.contains("//"), "{out}");
    assert!(!out.contains('\\'), "{out}");
    assert!(!out.split('/').any(|s| s == "." || s == ".."), "{out}");
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("escape");
        let b = u8::from_str_radix(hex, 16).expect("hex escape");
        assert_eq!(hex, hex.to_ascii_uppercase(), "{out}");
        assert!(b != b'/' && b != b'\\' && b >= 0x20 && b != 0x7f, "{out}");
        assert!(!(b.is_ascii_alphanumeric() || b"-._~".contains(&b)), "{out}");
    }
    assert_eq!(normalize(&out).expect("normal output normalizes").as_ref(), out.as_ref());
    assert!(http::uri::PathAndQuery::try_from(out.as_ref()).is_ok(), "{out}");
});
