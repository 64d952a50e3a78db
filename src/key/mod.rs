//! Conversation keys: the key sources of `route.key` / `route.dedupe`
//! (`json:`, `header:`, `query:`, `form:`, `form:<field>#<pointer>`) and the
//! `<namespace>:<id>` key.
//!
//! Sources are parsed once at startup; extraction borrows from the request and
//! allocates only the final key. Extraction refuses what is ambiguous: a
//! source found more than once (`From=a&From=b`: Rack and PHP take the last,
//! Python the first), a number that is not an integer, an id that is too long
//! or carries a control character. Integral JSON numbers are canonicalized
//! (`1111111`, `1111111.0` and `1.111111e6` are one key).

use std::borrow::Cow;
use std::fmt;

use http::header::HeaderName;
use http::HeaderMap;
use serde_json::Value;

mod conv;
mod pointer;

pub use conv::{is_name_char, is_namespace, is_usable_id, mask_id, ConvKey, Masked};
pub use pointer::check as check_json;

/// Longest accepted conversation id or dedupe id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Most digits of a canonicalized integral number (u64 has 20).
const MAX_INTEGER_DIGITS: usize = 64;

/// One place a key (or dedupe id) may be found in a request. In the config
/// it is a string (`"json:/message/chat/id"`), parsed once when the config
/// is read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeySource {
    /// RFC 6901 pointer into a JSON body.
    Json(String),
    Header(HeaderName),
    Query(String),
    /// Field of an `application/x-www-form-urlencoded` body; with a pointer,
    /// the field holds a JSON document (Slack's `payload=`) and the pointer
    /// picks the value inside it.
    Form {
        field: String,
        pointer: Option<String>,
    },
}

/// Why a request's key cannot be used. Never carries the id itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key source `{0}` appears more than once in the request")]
    Repeated(String),
    #[error("key source `{0}` holds a number that is not an integer")]
    NotInteger(String),
    #[error("key source `{0}` holds a value over {MAX_ID_BYTES} bytes")]
    TooLong(String),
    #[error("key source `{0}` holds a control character or undecodable bytes")]
    NotText(String),
    #[error("key source `{0}` holds a JSON document that does not parse")]
    Malformed(String),
}

/// A key source that does not parse (a config error).
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("`{text}`: {reason}")]
pub struct SourceError {
    pub text: String,
    pub reason: String,
}

impl KeySource {
    pub fn parse(text: &str) -> Result<KeySource, SourceError> {
        let bad = |reason: String| SourceError {
            text: text.to_string(),
            reason,
        };
        let (kind, arg) = text.split_once(':').ok_or_else(|| {
            bad("expected `json:<pointer>`, `header:<name>`, `query:<name>`, `form:<field>` or `form:<field>#<pointer>`".into())
        })?;
        if arg.is_empty() {
            return Err(bad(format!("the source names nothing after `{kind}:`")));
        }
        let pointer = |p: &str| {
            if p.starts_with('/') {
                Ok(p.to_string())
            } else {
                Err(bad("a JSON pointer starts with `/`".into()))
            }
        };
        match kind {
            "json" => pointer(arg).map(KeySource::Json),
            "header" => HeaderName::from_bytes(arg.as_bytes())
                .map(KeySource::Header)
                .map_err(|_| bad(format!("`{arg}` is not a valid header name"))),
            "query" => Ok(KeySource::Query(arg.to_string())),
            "form" => match arg.split_once('#') {
                Some(("", _)) => Err(bad("the form field name is empty".into())),
                Some((field, p)) => Ok(KeySource::Form {
                    field: field.to_string(),
                    pointer: Some(pointer(p)?),
                }),
                None => Ok(KeySource::Form {
                    field: arg.to_string(),
                    pointer: None,
                }),
            },
            _ => Err(bad(format!(
                "unknown source `{kind}` (use json, header, query or form)"
            ))),
        }
    }

    pub fn needs_json(&self) -> bool {
        matches!(self, KeySource::Json(_))
    }

    /// The value this source finds in the request: `Ok(None)` when absent
    /// (a JSON value other than a number or string, or an empty value, counts
    /// as absent), `Err` when present but unusable or ambiguous.
    pub fn extract<'a>(&self, req: &RequestParts<'a>) -> Result<Option<Cow<'a, str>>, KeyError> {
        let found: Option<Cow<'a, str>> = match self {
            KeySource::Json(pointer) => match req.json {
                Some(JsonBody::Parsed(doc)) => match doc.pointer(pointer) {
                    Some(v) => self.json_id(v)?,
                    None => None,
                },
                Some(JsonBody::Text(doc)) => match pointer::lookup(doc, pointer) {
                    Some(v) => self.raw_id(v)?,
                    None => None,
                },
                None => None,
            },
            KeySource::Header(name) => {
                let mut all = req.headers.get_all(name).iter();
                match (all.next(), all.next()) {
                    (None, _) => None,
                    (Some(_), Some(_)) => return Err(KeyError::Repeated(self.to_string())),
                    (Some(v), None) => Some(Cow::Borrowed(
                        v.to_str()
                            .map_err(|_| KeyError::NotText(self.to_string()))?
                            .trim(),
                    )),
                }
            }
            KeySource::Query(name) => match req.query {
                Some(q) => self.unique_field(q.as_bytes(), name)?,
                None => None,
            },
            KeySource::Form { field, pointer } => match self.unique_field(req.body, field)? {
                None => None,
                Some(doc) => match pointer {
                    None => Some(doc),
                    Some(p) => {
                        let json: Value = serde_json::from_str(&doc)
                            .map_err(|_| KeyError::Malformed(self.to_string()))?;
                        match json.pointer(p) {
                            Some(v) => self.json_id(v)?.map(|c| Cow::Owned(c.into_owned())),
                            None => None,
                        }
                    }
                },
            },
        };
        match found {
            Some(id) if !id.is_empty() => self.valid(id).map(Some),
            _ => Ok(None),
        }
    }

    fn json_id<'v>(&self, value: &'v Value) -> Result<Option<Cow<'v, str>>, KeyError> {
        Ok(match value {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(Cow::Owned(
                canonical_integer(&n.to_string())
                    .ok_or_else(|| KeyError::NotInteger(self.to_string()))?,
            )),
            _ => None,
        })
    }

    /// [`Self::json_id`] of a value found in a document's text: only a
    /// string or a number is parsed (an object or array is absent).
    fn raw_id<'v>(&self, value: &str) -> Result<Option<Cow<'v, str>>, KeyError> {
        match value.as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9') => {
                let value: Value = serde_json::from_str(value)
                    .map_err(|_| KeyError::Malformed(self.to_string()))?;
                Ok(self.json_id(&value)?.map(|id| Cow::Owned(id.into_owned())))
            }
            _ => Ok(None),
        }
    }

    /// The one value of `name` in urlencoded `data`; a second one is an error.
    fn unique_field<'a>(
        &self,
        data: &'a [u8],
        name: &str,
    ) -> Result<Option<Cow<'a, str>>, KeyError> {
        let mut found = None;
        for (k, v) in form_urlencoded::parse(data) {
            if k == name {
                if found.is_some() {
                    return Err(KeyError::Repeated(self.to_string()));
                }
                // Lossy decoding turns different raw bytes into one key.
                if v.contains('\u{FFFD}') {
                    return Err(KeyError::NotText(self.to_string()));
                }
                found = Some(v);
            }
        }
        Ok(found)
    }

    fn valid<'a>(&self, id: Cow<'a, str>) -> Result<Cow<'a, str>, KeyError> {
        if id.len() > MAX_ID_BYTES {
            return Err(KeyError::TooLong(self.to_string()));
        }
        if id.chars().any(char::is_control) {
            return Err(KeyError::NotText(self.to_string()));
        }
        Ok(id)
    }
}

impl TryFrom<String> for KeySource {
    type Error = SourceError;
    fn try_from(text: String) -> Result<KeySource, SourceError> {
        KeySource::parse(&text)
    }
}

impl From<KeySource> for String {
    fn from(source: KeySource) -> String {
        source.to_string()
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Json(p) => write!(f, "json:{p}"),
            KeySource::Header(h) => write!(f, "header:{h}"),
            KeySource::Query(q) => write!(f, "query:{q}"),
            KeySource::Form {
                field,
                pointer: None,
            } => write!(f, "form:{field}"),
            KeySource::Form {
                field,
                pointer: Some(p),
            } => write!(f, "form:{field}#{p}"),
        }
    }
}

/// The canonical decimal text of an integral JSON number (`1.5e1` → `15`,
/// `-0` → `0`); `None` when it is not an integer or has too many digits.
pub fn canonical_integer(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exp: i64 = unsigned[at + 1..].trim_start_matches('+').parse().ok()?;
            (&unsigned[..at], exp)
        }
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    if exponent.unsigned_abs() > 4 * MAX_INTEGER_DIGITS as u64 {
        return None;
    }
    let digits: String = int.chars().chain(frac.chars()).collect();
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some("0".into());
    }
    let scale = exponent - frac.len() as i64;
    let magnitude = if scale >= 0 {
        let len = digits.len() + scale as usize;
        if len > MAX_INTEGER_DIGITS {
            return None;
        }
        let mut s = String::with_capacity(len);
        s.push_str(digits);
        s.extend(std::iter::repeat_n('0', scale as usize));
        s
    } else {
        let cut = digits.len().checked_sub(scale.unsigned_abs() as usize)?;
        let (kept, dropped) = digits.split_at(cut);
        if kept.is_empty() || dropped.bytes().any(|b| b != b'0') || kept.len() > MAX_INTEGER_DIGITS
        {
            return None;
        }
        kept.to_string()
    };
    Some(if negative {
        format!("-{magnitude}")
    } else {
        magnitude
    })
}

/// What key extraction may look at. `json` is the body when it is JSON.
pub struct RequestParts<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub json: Option<JsonBody<'a>>,
}

/// A JSON request body, for `json:` sources: parsed (body mode builds the
/// document anyway, to rewrite it) or its checked text, whose members are
/// looked up in place (`pointer.rs`).
#[derive(Clone, Copy)]
pub enum JsonBody<'a> {
    Parsed(&'a Value),
    Text(&'a str),
}

/// First present source wins; an ambiguous or unusable source met on the way
/// is an error.
pub fn first_present<'a>(
    sources: &[KeySource],
    req: &RequestParts<'a>,
) -> Result<Option<Cow<'a, str>>, KeyError> {
    for source in sources {
        if let Some(id) = source.extract(req)? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
