//! The route table: which configured route a (normalized) request path
//! belongs to, and each route's compiled settings (key sources, dedupe
//! sources, verifier).
//!
//! Matching ignores ASCII case: Express and several other frameworks route
//! `/TELEGRAM` to a `/telegram` handler, so a request spelled that way must
//! meet the route's checks too. Matching more never skips a check.

use crate::config::{Config, OnMissingKey, RouteVerify, VerifyKind};
use crate::key::KeySource;
use crate::rules::{Rules, RulesError};
use crate::verify::Verifier;

pub struct Route {
    /// Index into the metrics' route labels.
    pub index: usize,
    pub path: String,
    pub namespace: String,
    pub key: Vec<KeySource>,
    /// Dedupe id sources, first present wins.
    pub dedupe: Vec<KeySource>,
    pub on_missing_key: OnMissingKey,
    pub verifier: Option<Verifier>,
    /// Some key or dedupe source reads the JSON body.
    pub needs_json: bool,
    /// What a reported snapshot must meet, and what a clear keeps.
    pub rules: std::sync::Arc<Rules>,
    /// How long a deferred turn waits for its late report.
    pub report_timeout: std::time::Duration,
}

pub struct Routes {
    /// Longest path first, so the first match is the longest.
    by_length: Vec<Route>,
}

impl Route {
    /// The part of a matched path below the route's prefix (Twilio signs it).
    pub fn suffix<'p>(&self, path: &'p str) -> &'p str {
        path.get(self.path.trim_end_matches('/').len()..)
            .unwrap_or("")
    }
}

/// A route the config let through but that cannot be compiled (config
/// validation rules it out; this guards the library's other callers).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route[{index}].verify.public_key: {source}")]
    PublicKey {
        index: usize,
        source: crate::verify::BadPublicKey,
    },
    #[error("route[{index}].verify is incomplete")]
    Incomplete { index: usize },
    #[error("route[{index}].{}: {source}", source.config_key())]
    Rules { index: usize, source: RulesError },
}

impl Routes {
    /// Compiles the validated config's routes.
    pub fn from_config(config: &Config) -> Result<Routes, RouteError> {
        let mut by_length = Vec::with_capacity(config.routes.len());
        for (index, r) in config.routes.iter().enumerate() {
            let (key, dedupe) = (r.key.clone(), r.dedupe.clone());
            let needs_json =
                key.iter().any(KeySource::needs_json) || dedupe.iter().any(KeySource::needs_json);
            let verifier = match r.verify.as_ref().and_then(RouteVerify::check) {
                Some(v) => Some(match (v.kind, &v.secret, &v.public_key) {
                    (Some(VerifyKind::Discord), _, Some(key)) => Verifier::discord(key)
                        .map_err(|source| RouteError::PublicKey { index, source })?,
                    (Some(kind), Some(secret), _) if kind != VerifyKind::Discord => {
                        Verifier::new(kind, secret.clone())
                            .with_public_url(v.public_url.clone())
                            .with_verify_token(v.verify_token.clone())
                    }
                    _ => return Err(RouteError::Incomplete { index }),
                }),
                None => None,
            };
            let rules = r
                .rules()
                .map_err(|source| RouteError::Rules { index, source })?;
            by_length.push(Route {
                index,
                path: r.path.clone(),
                namespace: r.namespace.clone(),
                key,
                dedupe,
                on_missing_key: r.on_missing_key,
                verifier,
                needs_json,
                rules: std::sync::Arc::new(rules),
                report_timeout: r.report_timeout(config.store.lock_lease),
            });
        }
        by_length.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        Ok(Routes { by_length })
    }

    /// The route whose path is the longest prefix of the normalized
    /// `path`, on segment boundaries and ignoring ASCII case: `/telegram`
    /// matches `/telegram`, `/Telegram` and `/telegram/x`, not `/telegramx`.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.by_length.iter().find(|r| {
            let (p, prefix) = (path.as_bytes(), r.path.as_bytes());
            p.len() >= prefix.len()
                && p[..prefix.len()].eq_ignore_ascii_case(prefix)
                && (p.len() == prefix.len() || p[prefix.len()] == b'/' || r.path.ends_with('/'))
        })
    }

    /// The route configured as number `index` (a turn token names it).
    pub fn by_index(&self, index: usize) -> Option<&Route> {
        self.by_length.iter().find(|r| r.index == index)
    }

    /// Route labels in config order, for metrics.
    pub fn labels(config: &Config) -> Vec<String> {
        config.routes.iter().map(|r| r.namespace.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn longest_prefix_on_segments() {
        let text = r#"
[server]
listen = "127.0.0.1:1"
[upstream]
url = "http://127.0.0.1:2"
[[route]]
path = "/hooks"
namespace = "a"
key = ["header:x-id"]
[[route]]
path = "/hooks/telegram"
namespace = "b"
key = ["header:x-id"]
[[route]]
path = "/"
namespace = "c"
key = ["header:x-id"]
"#;
        let config = Config::parse(text, &HashMap::<String, String>::new()).unwrap();
        let routes = Routes::from_config(&config).unwrap();
        assert_eq!(routes.find("/hooks/telegram/x").unwrap().namespace, "b");
        assert_eq!(routes.find("/hooks/telegram").unwrap().namespace, "b");
        assert_eq!(routes.find("/hooks/telegramx").unwrap().namespace, "a");
        assert_eq!(routes.find("/hooks").unwrap().namespace, "a");
        assert_eq!(routes.find("/other").unwrap().namespace, "c");
        assert_eq!(routes.find("/HOOKS/Telegram").unwrap().namespace, "b");
    }
}
