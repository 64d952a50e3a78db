//! JSON pointers (RFC 6901) looked up in a document's text, without
//! building it: one pass per pointer, members off its path skipped
//! unread, the value it names kept as raw text. A request body of 1 KB would otherwise
//! be built into a tree of maps and strings for the one or two ids a key
//! source reads (issue 22: that was 6 % of a stateful request's CPU).
//!
//! Same answers as `serde_json::Value::pointer` on the parsed document
//! (the fuzz target `key_extraction` checks the two against each other):
//! `~1` and `~0` unescaped, a repeated member name resolved to its last
//! value (as the parsed map keeps it), array indices without sign or
//! leading zeros. The document must first pass [`check`], which is as
//! strict as parsing it into a `Value` (UTF-8, escapes, lone surrogates,
//! nesting depth) but keeps nothing.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Checks that `body` is one JSON value exactly as strictly as
/// `serde_json::from_slice::<Value>` does, building nothing. (`IgnoredAny`
/// alone skips strings without decoding them, so it would let invalid
/// UTF-8 or a lone surrogate through.)
pub fn check(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Strict>(body).map(|_| ())
}

/// A value read through `deserialize_any`, every string decoded.
struct Strict;

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_key::<Strict>()?.is_some() {
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }
}

/// The text of the value `pointer` names in `doc` (a checked document);
/// `None` when it names nothing. One pass over the document: members off
/// the path are skipped unread.
pub fn lookup<'a>(doc: &'a str, pointer: &str) -> Option<&'a str> {
    if pointer.is_empty() {
        return Some(doc.trim_matches([' ', '\t', '\n', '\r']));
    }
    let tokens: Vec<Cow<'_, str>> = pointer
        .strip_prefix('/')?
        .split('/')
        .map(unescape)
        .collect();
    let mut de = serde_json::Deserializer::from_str(doc);
    let found = Descend { tokens: &tokens }.deserialize(&mut de).ok()??;
    Some(found.get())
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index as `Value::pointer` reads one: digits only, no leading
/// zero but in `0` itself.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// The rest of the path: the member (or element) the first token names,
/// then down from there; the value itself once no token is left.
struct Descend<'t> {
    tokens: &'t [Cow<'t, str>],
}

impl<'de> DeserializeSeed<'de> for Descend<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.tokens.is_empty() {
            return <&'de RawValue as serde::Deserialize>::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Descend<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (token, rest) = (&self.tokens[0], &self.tokens[1..]);
        let mut found = None;
        // A repeated name: the last one counts, as in the parsed map.
        while let Some(named) = map.next_key_seed(IsName(token))? {
            if named {
                found = map.next_value_seed(Descend { tokens: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (wanted, rest) = (index(&self.tokens[0]), &self.tokens[1..]);
        let mut found = None;
        let mut at = 0usize;
        loop {
            if Some(at) == wanted {
                match seq.next_element_seed(Descend { tokens: rest })? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            at += 1;
        }
        Ok(found)
    }

    // A scalar has no members.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    // `arbitrary_precision` hands numbers over as a one-entry map, whose
    // key is not a member name anyone can write (`$serde_json::private::Number`):
    // `visit_map` finds nothing there, as `Value::pointer` finds nothing
    // under a number.
}

/// Whether a member's name is the token (decoded, escapes and all).
struct IsName<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for IsName<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsName<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<bool, E> {
        Ok(name == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// `check` refuses exactly what parsing into a `Value` refuses.
    #[test]
    fn the_check_is_as_strict_as_parsing() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let cases: [&[u8]; 14] = [
            br#"{"a":1}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\ud83d\ude00"}"#,
            b"{\"a\":\"\xff\"}",
            b"{\"\xff\":1}",
            b"{\"a\":\"\x01\"}",
            br#"{"a":NaN}"#,
            br#"{"a":1,}"#,
            br#"{"a":01}"#,
            br#"{"a":1} x"#,
            br#"{"a":1.5e999999}"#,
            b"\xef\xbb\xbf{}",
            deep.as_bytes(),
            br#"[1,2,{"b":[true,null,"x\n"]}]"#,
        ];
        for body in cases {
            let parsed = serde_json::from_slice::<Value>(body).is_ok();
            assert_eq!(
                check(body).is_ok(),
                parsed,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Both ways agree on every pointer, including the edge cases.
    #[test]
    fn answers_as_the_parsed_document_does() {
        let text = r#"{"message":{"chat":{"id":1111111,"s":"x\"y"},"chat":{"id":-5}},
            "a/b":{"~c":[10,{"d":true},null]},"n":1.5e3,"e":[],"o":{},
            "esc\u0061ped":"yes","":{"":7},"arr":[[1,2],[3]]}"#;
        let parsed: Value = serde_json::from_str(text).unwrap();
        for pointer in [
            "",
            "/",
            "/message",
            "/message/chat",
            "/message/chat/id",
            "/message/chat/s",
            "/message/chat/id/x",
            "/a~1b/~0c/0",
            "/a~1b/~0c/1/d",
            "/a~1b/~0c/2",
            "/a~1b/~0c/3",
            "/a~1b/~0c/01",
            "/a~1b/~0c/+1",
            "/a~1b/~0c/-1",
            "/n",
            "/n/0",
            "/e/0",
            "/o/x",
            "/escaped",
            "//",
            "/arr/0/1",
            "/arr/1/0",
            "/missing",
            "message",
        ] {
            let want = parsed.pointer(pointer).cloned();
            let got = lookup(text, pointer).map(|r| serde_json::from_str::<Value>(r).unwrap());
            assert_eq!(got, want, "pointer {pointer:?}");
        }
    }
}
