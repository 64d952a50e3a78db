//! Conversation keys: the key sources of `route.key` / `route.dedupe`
//! (`json:`, `header:`, `query:`, `form:`) and the `<namespace>:<id>` key.
//!
//! Sources are parsed once at startup; extraction borrows from the request and
//! allocates only the final key.

use std::borrow::Cow;
use std::fmt;

use http::header::HeaderName;
use http::HeaderMap;
use serde_json::Value;

/// Longest accepted conversation id or dedupe id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// One place a key (or dedupe id) may be found in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// RFC 6901 pointer into a JSON body.
    Json(String),
    Header(HeaderName),
    Query(String),
    /// Field of an `application/x-www-form-urlencoded` body.
    Form(String),
}

impl KeySource {
    pub fn parse(text: &str) -> Result<KeySource, String> {
        let (kind, arg) = text.split_once(':').ok_or_else(|| {
            format!("`{text}`: expected `json:<pointer>`, `header:<name>`, `query:<name>` or `form:<field>`")
        })?;
        if arg.is_empty() {
            return Err(format!(
                "`{text}`: the source names nothing after `{kind}:`"
            ));
        }
        match kind {
            "json" => {
                if !arg.starts_with('/') {
                    return Err(format!("`{text}`: a JSON pointer starts with `/`"));
                }
                Ok(KeySource::Json(arg.to_string()))
            }
            "header" => HeaderName::from_bytes(arg.as_bytes())
                .map(KeySource::Header)
                .map_err(|_| format!("`{text}`: `{arg}` is not a valid header name")),
            "query" => Ok(KeySource::Query(arg.to_string())),
            "form" => Ok(KeySource::Form(arg.to_string())),
            _ => Err(format!(
                "`{text}`: unknown source `{kind}` (use json, header, query or form)"
            )),
        }
    }

    pub fn needs_json(&self) -> bool {
        matches!(self, KeySource::Json(_))
    }

    /// The value this source finds in the request, if any. A JSON number or
    /// string counts; other JSON types, empty values, values longer than
    /// [`MAX_ID_BYTES`] and values with control characters do not.
    pub fn extract<'a>(&self, req: &RequestParts<'a>) -> Option<Cow<'a, str>> {
        let found: Cow<'a, str> = match self {
            KeySource::Json(pointer) => match req.json?.pointer(pointer)? {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Number(n) => Cow::Owned(n.to_string()),
                _ => return None,
            },
            KeySource::Header(name) => Cow::Borrowed(req.headers.get(name)?.to_str().ok()?.trim()),
            KeySource::Query(name) => find_urlencoded(req.query?.as_bytes(), name)?,
            KeySource::Form(name) => find_urlencoded(req.body, name)?,
        };
        valid_id(&found).then_some(found)
    }
}

fn find_urlencoded<'a>(data: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(data)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

/// What key extraction may look at. `json` is the parsed body when the route
/// has a `json:` source and the body is JSON.
pub struct RequestParts<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub json: Option<&'a Value>,
}

/// First present source wins.
pub fn first_present<'a>(sources: &[KeySource], req: &RequestParts<'a>) -> Option<Cow<'a, str>> {
    sources.iter().find_map(|s| s.extract(req))
}

/// A conversation key, `<namespace>:<id>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConvKey {
    full: String,
    ns_len: usize,
}

impl ConvKey {
    pub fn new(namespace: &str, id: &str) -> ConvKey {
        let mut full = String::with_capacity(namespace.len() + 1 + id.len());
        full.push_str(namespace);
        full.push(':');
        full.push_str(id);
        ConvKey {
            full,
            ns_len: namespace.len(),
        }
    }

    /// `<namespace>:<id>`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
    pub fn namespace(&self) -> &str {
        &self.full[..self.ns_len]
    }
    pub fn id(&self) -> &str {
        &self.full[self.ns_len + 1..]
    }

    /// The key as logs show it: the id masked unless ids are revealed.
    pub fn display(&self, reveal: bool) -> Masked<'_> {
        Masked {
            namespace: self.namespace(),
            id: self.id(),
            reveal,
        }
    }
}

impl fmt::Debug for ConvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs: never the raw id.
        write!(f, "{}", self.display(false))
    }
}

/// A key for logs: `tg:***4567`.
pub struct Masked<'a> {
    namespace: &'a str,
    id: &'a str,
    reveal: bool,
}

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reveal {
            return write!(f, "{}:{}", self.namespace, self.id);
        }
        write!(f, "{}:{}", self.namespace, mask_id(self.id))
    }
}

/// `***` followed by the id's last four characters (fewer for short ids).
pub fn mask_id(id: &str) -> String {
    let n = id.chars().count();
    let keep = if n > 6 { 4 } else { n / 2 };
    let tail: String = id.chars().skip(n - keep).collect();
    format!("***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        headers: &'a HeaderMap,
        json: Option<&'a Value>,
        body: &'a [u8],
    ) -> RequestParts<'a> {
        RequestParts {
            headers,
            query: Some("chat=42&x=1"),
            body,
            json,
        }
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
            .map(|s| KeySource::parse(s).unwrap())
            .collect();
        assert_eq!(first_present(&sources, &p).as_deref(), Some("1111111"));
        let s = KeySource::parse("json:/s").unwrap();
        assert_eq!(s.extract(&p).as_deref(), Some("abc"));
        let q = KeySource::parse("query:chat").unwrap();
        assert_eq!(q.extract(&p).as_deref(), Some("42"));
        let f = KeySource::parse("form:From").unwrap();
        assert_eq!(f.extract(&p).as_deref(), Some("+14158675310"));
    }

    #[test]
    fn header_source_and_limits() {
        let mut headers = HeaderMap::new();
        headers.insert("x-session", "sess-1".parse().unwrap());
        let p = parts(&headers, None, b"");
        let h = KeySource::parse("header:X-Session").unwrap();
        assert_eq!(h.extract(&p).as_deref(), Some("sess-1"));
        assert!(!valid_id(&"x".repeat(MAX_ID_BYTES + 1)));
        assert!(!valid_id("a\nb"));
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
}
