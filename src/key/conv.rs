//! Conversation keys (`<namespace>:<id>`), the names they are built
//! from, and their masked form for logs.

use std::fmt;

use super::MAX_ID_BYTES;

/// A namespace as a route's may be: non-empty, name characters only.
pub fn is_namespace(ns: &str) -> bool {
    !ns.is_empty() && ns.chars().all(is_name_char)
}

/// An id as the key extractor accepts one: non-empty, at most
/// [`MAX_ID_BYTES`], no control character.
pub fn is_usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

/// A character of a namespace or key prefix: ASCII letters and digits,
/// `_`, `-`, `.` (so `:` splits a key, and Redis key names stay plain).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
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
