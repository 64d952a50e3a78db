//! Typed `config.toml`: parsing, defaults, validation and the masked printout
//! of `check-config`. Durations are humantime strings (`"250ms"`, `"30s"`,
//! `"24h"`, `"7d"`, `"1h 30m"`), through `humantime-serde`.
//!
//! The key names of the contract (docs/contract.md §4) are fixed; everything else
//! here is statehold's own and documented in the shipped `config.toml`. Unknown
//! keys are rejected (`deny_unknown_fields`) and every error names the dotted
//! path of the offending key, so a typo never silently disables a feature.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::secret::Secret;
pub use crate::verify::VerifyKind;
pub use route::{RouteConfig, RouteVerify, VerifyConfig};
pub use tables::*;

pub mod explain;
pub mod overrides;
pub mod privacy;
mod route;
mod tables;
#[cfg(test)]
mod tests;
mod validate;

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending key, e.g. `route[0].key`.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// `Config::default()` is the config of an empty file; a config built in
/// code (in-process tests, benches) goes through [`Config::checked`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub contract: ContractConfig,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Set by the environment over the file (not a config key).
    #[serde(skip)]
    overrides: Vec<overrides::Override>,
}

/// Where environment lookups for `*_env` keys go; tests pass a map instead of
/// touching the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable whose name starts with `prefix` (for the overrides).
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Config::parse(&text, env)
    }

    /// Parses and validates config text; `*_env` keys are resolved through
    /// `env`, and `STATEHOLD_<SECTION>__<KEY>` variables override the file
    /// ([`overrides`]).
    pub fn parse(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("config", e.message().trim()))?;
        let applied = overrides::apply(&mut table, env)?;
        let mut config = if applied.is_empty() {
            Config::from_text(text)?
        } else {
            // Errors then name the key, not a line (the text is not the file's).
            Config::from_text(
                &toml::to_string(&table).map_err(|e| ConfigError::new("config", e.to_string()))?,
            )?
        };
        config.overrides = applied;
        config.resolve_env(env)?;
        config.validate()?;
        Ok(config)
    }

    /// A config built in code, checked as a file's is: `*_env` keys
    /// resolved through `env`, then every cross-field rule.
    pub fn checked(mut self, env: &dyn Env) -> Result<Config, ConfigError> {
        self.resolve_env(env)?;
        self.validate()?;
        Ok(self)
    }

    /// The keys the environment set (`STATEHOLD_<SECTION>__<KEY>`), for
    /// `check-config` and the startup log.
    pub fn overrides(&self) -> &[overrides::Override] {
        &self.overrides
    }

    fn from_text(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // toml's message carries the line and a caret; keep only its last
            // line, which is the reason, and name the key ourselves.
            let inner = e.into_inner();
            let reason = inner.message().trim().to_string();
            let line = inner
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let key = if path.is_empty() || path == "." {
                "config".into()
            } else {
                path
            };
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            ConfigError::new(key, format!("{reason}{at}"))
        })?;
        Ok(config)
    }

    fn resolve_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        fn pick(
            inline: &mut Option<Secret>,
            from_env: &Option<String>,
            key: &str,
            env: &dyn Env,
        ) -> Result<(), ConfigError> {
            if let Some(name) = from_env {
                if inline.is_some() {
                    return Err(ConfigError::new(
                        format!("{key}_env"),
                        format!("set either `{key}` or `{key}_env`, not both"),
                    ));
                }
                let value = env
                    .var(name)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| {
                        ConfigError::new(
                            format!("{key}_env"),
                            format!("environment variable `{name}` is not set (or blank)"),
                        )
                    })?;
                *inline = Some(Secret(value));
            }
            Ok(())
        }
        let store = &mut self.store;
        pick(&mut store.url, &store.url_env, "store.url", env)?;
        pick(
            &mut store.password,
            &store.password_env,
            "store.password",
            env,
        )?;
        pick(
            &mut store.sentinel_password,
            &store.sentinel_password_env,
            "store.sentinel_password",
            env,
        )?;
        pick(
            &mut store.key_secret,
            &store.key_secret_env,
            "store.key_secret",
            env,
        )?;
        if let Some(encryption) = store.encryption.as_mut() {
            for (i, key) in encryption.keys.iter_mut().enumerate() {
                let name = format!("store.encryption.keys[{i}].secret");
                pick(&mut key.secret, &key.secret_env, &name, env)?;
            }
        }
        pick(
            &mut self.admin.token,
            &self.admin.token_env,
            "admin.token",
            env,
        )?;
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Some(RouteVerify::Check(v)) = route.verify.as_mut() {
                pick(
                    &mut v.secret,
                    &v.secret_env,
                    &format!("route[{i}].verify.secret"),
                    env,
                )?;
                pick(
                    &mut v.verify_token,
                    &v.verify_token_env,
                    &format!("route[{i}].verify.verify_token"),
                    env,
                )?;
            }
        }
        Ok(())
    }

    /// What an operator should know about a valid config: routes that
    /// accept unverified requests. Printed by `check-config`, logged by `serve`.
    pub fn warnings(&self) -> Vec<String> {
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.verify == Some(RouteVerify::None))
            .map(|(i, r)| {
                format!(
                    "route[{i}] ({}): verify = \"none\": webhooks on this route are not verified; anyone who reaches {} can send them",
                    r.path, self.server.listen
                )
            })
            .collect()
    }

    /// The effective config as TOML, secrets masked (for `check-config`).
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// Each conversation's record lifetime: `store.ttl`, or its route's
    /// `route.ttl` (by namespace; validation made the routes of a
    /// namespace agree).
    pub fn lifetimes(&self) -> crate::backend::Lifetimes {
        let by_namespace = self
            .routes
            .iter()
            .filter_map(|r| Some((r.namespace.clone(), r.ttl?)))
            .collect();
        crate::backend::Lifetimes::new(self.store.ttl, by_namespace)
    }

    /// What the backend keeps of each conversation: its lifetime and
    /// `store.history` versions.
    pub fn retention(&self) -> crate::backend::Retention {
        crate::backend::Retention {
            lifetimes: self.lifetimes(),
            history: self.store.history,
            audit: self.audit.max_events,
        }
    }

    /// Privacy at rest from `store.key_secret` and `[store.encryption]`;
    /// key files that do not exist yet are created (at startup).
    pub fn privacy(&self) -> Result<crate::privacy::Privacy, ConfigError> {
        self.privacy_with(privacy::Missing::Create)
    }

    pub(crate) fn privacy_with(
        &self,
        missing: privacy::Missing,
    ) -> Result<crate::privacy::Privacy, ConfigError> {
        let store = &self.store;
        let key_secret = match (&store.key_secret, &store.key_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "store.key_secret_file",
                    "set one of key_secret, key_secret_env, key_secret_file",
                ))
            }
            (Some(secret), None) => Some(privacy::Source::Inline(secret)),
            (None, Some(file)) => Some(privacy::Source::File(file)),
            (None, None) => None,
        };
        let built = privacy::build(key_secret, store.encryption.as_ref(), missing)?;
        if store.plaintext_fallback && !built.hashes_keys() {
            return Err(ConfigError::new(
                "store.plaintext_fallback",
                "needs store.key_secret (there are no hashed keys to fall back from)",
            ));
        }
        Ok(built.with_plaintext_fallback(store.plaintext_fallback))
    }

    /// The Redis URL with its password replaced, for logs.
    pub fn redacted_store_url(&self) -> Option<String> {
        if let Some(master) = &self.store.sentinel_master {
            return Some(format!(
                "sentinel {master} via {}",
                self.store.sentinels.join(",")
            ));
        }
        if !self.store.cluster.is_empty() {
            return Some(format!("cluster via {}", self.store.cluster.join(",")));
        }
        self.store.url.as_ref().map(|u| redact_url(u.expose()))
    }
}

/// Replaces a URL's `user:password@` part with `***@`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
