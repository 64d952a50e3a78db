//! `check-config --explain`: the effective config with every key's
//! documentation above it. The text is the `///` line of the key's field in
//! `tables.rs`, `route.rs`, `privacy.rs` and `rules/mod.rs`, read from the sources compiled into the
//! binary, so the code and the explanation cannot drift apart.

use super::Config;

const SOURCES: [&str; 4] = [
    include_str!("tables.rs"),
    include_str!("route.rs"),
    include_str!("privacy.rs"),
    include_str!("../rules/mod.rs"),
];

/// The TOML table each config struct is.
const TABLES: [(&str, &str); 13] = [
    ("ServerConfig", "server"),
    ("TlsConfig", "server.tls"),
    ("UpstreamConfig", "upstream"),
    ("StoreConfig", "store"),
    ("ContractConfig", "contract"),
    ("AdminConfig", "admin"),
    ("LogConfig", "log"),
    ("RouteConfig", "route"),
    ("VerifyConfig", "route.verify"),
    ("EncryptionConfig", "store.encryption"),
    ("EncryptionKey", "store.encryption.keys"),
    ("TransitionsConfig", "route.transitions"),
    ("AuditConfig", "audit"),
];

/// One documented key: its table (`store`, `route.verify`), its name, and
/// its documentation.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyDoc {
    pub table: &'static str,
    pub key: String,
    pub doc: String,
}

/// Every config key with its `///` documentation.
pub fn keys() -> Vec<KeyDoc> {
    let mut out = Vec::new();
    for source in SOURCES {
        let mut table = None;
        let mut doc: Vec<&str> = Vec::new();
        // Inside a multi-line attribute (between a doc and its field).
        let mut in_attr = false;
        for line in source.lines() {
            let text = line.trim();
            if in_attr {
                in_attr = !text.ends_with(")]");
            } else if text.starts_with("#[") {
                in_attr = !text.ends_with(']');
            } else if let Some(name) = text.strip_prefix("pub struct ") {
                let name = name.trim_end_matches(" {");
                table = TABLES.iter().find(|(s, _)| *s == name).map(|(_, t)| *t);
                doc.clear();
            } else if text == "}" {
                table = None;
            } else if let Some(line) = text.strip_prefix("///") {
                doc.push(line.trim());
            } else if let (Some(table), Some(field)) = (table, text.strip_prefix("pub ")) {
                if let Some((key, _)) = field.split_once(':') {
                    out.push(KeyDoc {
                        table,
                        key: key.to_string(),
                        doc: doc.join(" "),
                    });
                }
                doc.clear();
            } else {
                doc.clear();
            }
        }
    }
    out
}

impl Config {
    /// The effective config as TOML (secrets masked), each key preceded by
    /// its documentation as a comment.
    pub fn explain(&self) -> String {
        let docs = keys();
        let mut table = String::new();
        let mut out = String::new();
        for line in self.to_masked_toml().lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                table = trimmed.trim_matches(['[', ']']).to_string();
            } else if let Some((key, _)) = trimmed.split_once(" = ") {
                let found = docs.iter().find(|d| d.table == table && d.key == key);
                if let Some(doc) = found.filter(|d| !d.doc.is_empty()) {
                    for part in wrap(&doc.doc, 76) {
                        out.push_str("# ");
                        out.push_str(&part);
                        out.push('\n');
                    }
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Splits text into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let Some(last) = lines.last_mut() else {
            break;
        };
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}
