//! Request-path normalization (RFC 3986 §6.2.2 and §5.2.4), so that routes
//! are matched on the path the bot's framework will route on, not on how a
//! client chose to spell it: `/%74elegram`, `//telegram` and
//! `/x/../telegram` are all `/telegram`.
//!
//! - percent-encoded unreserved characters are decoded, other escapes keep
//!   upper-case hex;
//! - runs of `/` are merged;
//! - `.` and `..` segments are resolved (never above the root);
//! - what different servers read differently is refused: an encoded `/`
//!   (`%2F`), a `\` raw or encoded, NUL and other control characters,
//!   malformed escapes, and a path that does not start with `/`.

use std::borrow::Cow;

/// Why a path cannot be normalized; the request is answered 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path contains an encoded `/` (%2F)")]
    EncodedSlash,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains an encoded control character")]
    Control,
    #[error("the path contains a malformed percent escape")]
    BadEscape,
}

/// The normalized form of `path` (borrowed when it is already normal).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(resolve_segments(&decoded)))
}

/// Quick check: nothing to decode, merge or resolve.
fn is_normal(path: &str) -> bool {
    !path.contains('%') && !path.contains("//") && !path.split('/').any(|s| s == "." || s == "..")
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` of unreserved characters; refuses the ambiguous ones.
/// Works on bytes: a path may hold raw UTF-8 (the `http` crate accepts it),
/// which passes through unchanged (a fuzzer find).
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        match byte {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b if is_unreserved(b) => out.push(b),
            b => out.extend_from_slice(&[
                b'%',
                UPPER_HEX[(b >> 4) as usize],
                UPPER_HEX[(b & 0xf) as usize],
            ]),
        }
        i += 3;
    }
    // Only ASCII was decoded, and every other byte was copied as it was.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// Merges slashes and resolves dot segments; a trailing `/` (or a final
/// dot segment) keeps the path ending in `/`.
fn resolve_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut trailing_slash = false;
    for (n, segment) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        match *segment {
            "" => trailing_slash = last,
            "." => trailing_slash = last,
            ".." => {
                kept.pop();
                trailing_slash = last;
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn spellings_of_one_path() {
        for p in [
            "/telegram",
            "/%74elegram",
            "/%74%65%6C%65%67%72%61%6d",
            "//telegram",
            "///telegram",
            "/./telegram",
            "/x/../telegram",
            "/../telegram",
            "/%2e%2e/telegram",
            "/x/%2E%2E/telegram",
        ] {
            assert_eq!(norm(p).as_deref(), Ok("/telegram"), "{p}");
        }
        assert_eq!(norm("/telegram/").as_deref(), Ok("/telegram/"));
        assert_eq!(norm("/telegram//x").as_deref(), Ok("/telegram/x"));
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/..").as_deref(), Ok("/"));
        assert_eq!(norm("/").as_deref(), Ok("/"));
        assert_eq!(norm("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
        // Raw UTF-8 passes through unchanged (a fuzzer find).
        assert_eq!(norm("//caf\u{e9}/./x%41").as_deref(), Ok("/caf\u{e9}/xA"));
        assert!(matches!(normalize("/telegram/x"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(norm("/tele%2Fgram"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/%2ftelegram"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/tele\\gram"), Err(PathError::Backslash));
        assert_eq!(norm("/tele%5Cgram"), Err(PathError::Backslash));
        assert_eq!(norm("/tele%00gram"), Err(PathError::Control));
        assert_eq!(norm("/tele%0agram"), Err(PathError::Control));
        assert_eq!(norm("/tele%zzgram"), Err(PathError::BadEscape));
        assert_eq!(norm("/tele%2"), Err(PathError::BadEscape));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normal_output_is_a_fixed_point() {
        for p in ["/a//b/./c/../d%7e%41", "/%2e%2e/%2E/x/", "/a/%C3%a9/.."] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{p}");
        }
    }
}
