//! Typed `config.toml`: parsing, defaults, validation and the masked printout
//! of `check-config`. Durations are humantime strings (`"250ms"`, `"30s"`,
//! `"24h"`, `"7d"`, `"1h 30m"`), through `humantime-serde`.
//!
//! The key names of the contract (`CONTRACT.md` §4) are fixed; everything else
//! here is statehold's own and documented in the shipped `config.toml`. Unknown
//! keys are rejected (`deny_unknown_fields`) and every error names the dotted
//! path of the offending key, so a typo never silently disables a feature.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key::KeySource;
use crate::presets::Preset;
pub use crate::secret::Secret;
pub use crate::verify::VerifyKind;

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending key, e.g. `route[0].key`.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
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
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Webhook ingress address.
    pub listen: SocketAddr,
    /// Larger request bodies on matched routes: 413, bot not called.
    pub max_body_bytes: NonZeroU64,
    /// Optional HTTPS termination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Open connections beyond this are closed at once (load shedding).
    pub max_connections: NonZeroUsize,
    /// A client must send its complete request head within this.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A client must send its complete body (matched routes) within this.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// After SIGTERM, in-flight requests get this long to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Requests on paths no route matches: `forward` them untouched, or
    /// `reject` them with 404 (they never reach the bot).
    pub unmatched: Unmatched,
    /// Peers (addresses or CIDR blocks) whose `X-Forwarded-For`,
    /// `Forwarded` and `X-Real-IP` are passed on; from anyone else they are
    /// replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Request bodies buffered across all requests at once, at most;
    /// past it, 503 (bounds what unauthenticated clients make us hold).
    pub max_buffered_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: nonzero::MAX_BODY_BYTES,
            tls: Default::default(),
            max_connections: nonzero::MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            unmatched: Unmatched::Forward,
            trusted_proxies: Default::default(),
            max_buffered_bytes: 32 * 1_048_576,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    Forward,
    Reject,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The bot, `http://host:port[/base-path]`.
    pub url: String,
    /// Bot slower than this (until its full response): 504.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this; keep it below the bot's
    /// own keep-alive timeout so statehold never reuses a connection the bot
    /// is closing.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// A bot response on a matched route larger than this: 502.
    pub max_response_bytes: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: String::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(4),
            max_response_bytes: 4 * 1_048_576,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Embedded,
    Redis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    Reject,
    Passthrough,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Embedded only: the database file.
    pub path: PathBuf,
    /// Redis only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    pub key_prefix: String,
    /// Sliding: refreshed on every request of the conversation.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    pub max_state_bytes: NonZeroU64,
    pub on_unavailable: OnUnavailable,
    /// Exit at startup when the store cannot be reached.
    pub require_at_startup: bool,
    /// How long a delivery's recorded response answers its redeliveries.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Longest wait for a conversation's turn before answering 503.
    #[serde(with = "humantime_serde")]
    pub lock_wait: Duration,
    /// How often expired snapshots and dedupe records are purged.
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    /// Embedded only: memory for the database's page cache.
    pub cache_bytes: u64,
    /// Redis only: a turn's lease; a crashed holder's turn passes on after it.
    #[serde(with = "humantime_serde")]
    pub lock_lease: Duration,
    /// Redis only: every store operation's timeout.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Redis only: consecutive failed operations that open the circuit
    /// breaker (then operations fail at once for `breaker_cooldown`).
    pub breaker_failures: NonZeroU32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// With `on_unavailable = "passthrough"` and Redis: where snapshots
    /// reported during an outage wait to be written back.
    pub spool_path: PathBuf,
    /// Most conversations the spool holds; later ones are dropped (logged).
    pub spool_max: u64,
    /// Redis only: PEM file of the CA that signed the server's certificate
    /// (`rediss://`); default: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Embedded,
            path: PathBuf::from("./data/statehold.db"),
            url: Default::default(),
            url_env: Default::default(),
            key_prefix: "statehold".into(),
            ttl: Duration::from_secs(24 * 3600),
            max_state_bytes: nonzero::MAX_STATE_BYTES,
            on_unavailable: OnUnavailable::Reject,
            require_at_startup: Default::default(),
            dedupe_window: Duration::from_secs(24 * 3600),
            lock_wait: Duration::from_secs(10),
            purge_interval: Duration::from_secs(60),
            cache_bytes: 8 * 1_048_576,
            lock_lease: Duration::from_secs(5),
            op_timeout: Duration::from_secs(1),
            breaker_failures: nonzero::BREAKER_FAILURES,
            breaker_cooldown: Duration::from_secs(1),
            spool_path: PathBuf::from("./data/spool.db"),
            spool_max: 10_000,
            tls_ca: Default::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContractMode {
    Header,
    Body,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContractConfig {
    pub mode: ContractMode,
    /// RFC 6901 pointer of the body-mode member.
    pub body_field: String,
}

impl Default for ContractConfig {
    fn default() -> Self {
        ContractConfig {
            mode: ContractMode::Header,
            body_field: "/_statehold".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissingKey {
    #[default]
    Passthrough,
    Reject,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix; the longest matching prefix wins.
    pub path: String,
    pub namespace: String,
    /// Key sources, first present wins.
    #[serde(default)]
    pub key: Vec<KeySource>,
    /// Dedupe id sources (one string or a list), first present wins.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dedupe: Vec<KeySource>,
    #[serde(default)]
    pub on_missing_key: OnMissingKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// A `[route.verify]` table, or `"none"` to accept unverified
    /// requests on a listener that is not loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<RouteVerify>,
}

impl UpstreamConfig {
    /// The client's settings, for [`crate::upstream::Upstream::new`].
    pub fn options(&self) -> crate::upstream::UpstreamOptions {
        crate::upstream::UpstreamOptions {
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            pool_idle_timeout: self.pool_idle_timeout,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

impl RouteConfig {
    /// Fills the route's unset fields with this platform's defaults.
    fn apply_preset(&mut self, preset: Preset) {
        let route = self;
        // Preset sources are constants, each parsed by a unit test.
        let parse = |sources: &[&str]| -> Vec<KeySource> {
            sources
                .iter()
                .filter_map(|s| KeySource::parse(s).ok())
                .collect()
        };
        if route.key.is_empty() {
            route.key = parse(preset.key_sources());
        }
        if route.dedupe.is_empty() {
            route.dedupe = parse(preset.dedupe_sources());
        }
        if let Some(RouteVerify::Check(verify)) = route.verify.as_mut() {
            if verify.kind.is_none() {
                verify.kind = Some(preset.verify_kind());
            }
        }
    }
}

/// `route.verify`: checked, or explicitly none.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteVerify {
    None,
    Check(VerifyConfig),
}

impl RouteVerify {
    pub fn check(&self) -> Option<&VerifyConfig> {
        match self {
            RouteVerify::Check(v) => Some(v),
            RouteVerify::None => None,
        }
    }
}

impl<'de> Deserialize<'de> for RouteVerify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RouteVerify;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [route.verify] table or \"none\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RouteVerify, E> {
                match v {
                    "none" => Ok(RouteVerify::None),
                    _ => Err(E::custom(format!(
                        "`{v}`: expected a [route.verify] table or \"none\""
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RouteVerify, A::Error> {
                VerifyConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RouteVerify::Check)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for RouteVerify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RouteVerify::None => s.serialize_str("none"),
            RouteVerify::Check(v) => v.serialize(s),
        }
    }
}

/// One key source or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<KeySource>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let texts = match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => vec![s],
        Ok(OneOrMany::Many(v)) => v,
        Err(_) => {
            return Err(serde::de::Error::custom(
                "expected a key source or a list of key sources",
            ))
        }
    };
    texts
        .iter()
        .map(|t| KeySource::parse(t).map_err(serde::de::Error::custom))
        .collect()
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Defaults to the route's preset platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VerifyKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Twilio: the public URL the platform calls for this route's path
    /// (e.g. `https://bot.example.com/twilio`); deeper paths and the query
    /// are appended as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Discord: the application's Ed25519 public key (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Meta: the handshake's `hub.verify_token` (checked when set; else the
    /// bot checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token_env: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token of `/v1/state`; without one the state API answers 404.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: Default::default(),
            token_env: Default::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Log conversation ids in full instead of `***4567`.
    #[serde(default)]
    pub reveal_ids: bool,
    /// `tracing` filter, e.g. "info" or "statehold=debug"; `RUST_LOG` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// Where environment lookups for `*_env` keys go; tests pass a map instead of
/// touching the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
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

    /// Parses and validates config text; `*_env` keys are resolved through `env`.
    pub fn parse(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
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
        config.resolve_env(env)?;
        config.validate()?;
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
        pick(&mut self.store.url, &self.store.url_env, "store.url", env)?;
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

    fn validate(&mut self) -> Result<(), ConfigError> {
        let positive = |key: &str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(key, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        positive("server.header_timeout", self.server.header_timeout)?;
        positive("server.body_timeout", self.server.body_timeout)?;
        positive("upstream.timeout", self.upstream.timeout)?;
        positive("upstream.connect_timeout", self.upstream.connect_timeout)?;
        positive(
            "upstream.pool_idle_timeout",
            self.upstream.pool_idle_timeout,
        )?;
        positive("store.ttl", self.store.ttl)?;
        positive("store.dedupe_window", self.store.dedupe_window)?;
        positive("store.lock_wait", self.store.lock_wait)?;
        positive("store.purge_interval", self.store.purge_interval)?;
        positive("store.lock_lease", self.store.lock_lease)?;
        positive("store.op_timeout", self.store.op_timeout)?;
        positive("store.breaker_cooldown", self.store.breaker_cooldown)?;
        if let Some(ca) = &self.store.tls_ca {
            if !ca.is_file() {
                return Err(ConfigError::new(
                    "store.tls_ca",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        if let Some(tls) = &self.server.tls {
            for (key, path) in [("server.tls.cert", &tls.cert), ("server.tls.key", &tls.key)] {
                if !path.is_file() {
                    return Err(ConfigError::new(
                        key,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }

        if self.upstream.url.is_empty() {
            return Err(ConfigError::new(
                "upstream.url",
                "required: the bot, e.g. \"http://127.0.0.1:3000\"",
            ));
        }
        crate::upstream::UpstreamTarget::parse(&self.upstream.url)
            .map_err(|e| ConfigError::new("upstream.url", e))?;

        if self.store.key_prefix.is_empty() || !self.store.key_prefix.chars().all(is_name_char) {
            return Err(ConfigError::new(
                "store.key_prefix",
                "must be non-empty and use only A-Z a-z 0-9 _ - .",
            ));
        }
        match self.store.backend {
            Backend::Embedded => {
                check_store_path(&self.store.path)
                    .map_err(|e| ConfigError::new("store.path", e))?;
            }
            Backend::Redis => {
                let url = self.store.url.as_ref().ok_or_else(|| {
                    ConfigError::new("store.url", "required with store.backend = \"redis\"")
                })?;
                if !(url.0.starts_with("redis://") || url.0.starts_with("rediss://")) {
                    return Err(ConfigError::new(
                        "store.url",
                        "must start with redis:// or rediss://",
                    ));
                }
            }
        }

        if !self.contract.body_field.starts_with('/') || self.contract.body_field.len() < 2 {
            return Err(ConfigError::new(
                "contract.body_field",
                "must be a JSON pointer naming a member, e.g. \"/_statehold\"",
            ));
        }

        let mut seen = std::collections::HashSet::new();
        for (i, route) in self.routes.iter_mut().enumerate() {
            let at = |field: &str| format!("route[{i}].{field}");
            if !route.path.starts_with('/') {
                return Err(ConfigError::new(at("path"), "must start with `/`"));
            }
            if !seen.insert(route.path.clone()) {
                return Err(ConfigError::new(
                    at("path"),
                    format!("`{}` is configured twice", route.path),
                ));
            }
            if route.namespace.is_empty() || !route.namespace.chars().all(is_name_char) {
                return Err(ConfigError::new(
                    at("namespace"),
                    "must be non-empty and use only A-Z a-z 0-9 _ - .",
                ));
            }
            if let Some(preset) = route.preset {
                route.apply_preset(preset);
            }
            if route.key.is_empty() {
                return Err(ConfigError::new(
                    at("key"),
                    "needs at least one source (or a preset)",
                ));
            }
            match &route.verify {
                Some(RouteVerify::Check(verify)) => validate_verify(verify, &at)?,
                Some(RouteVerify::None) => {}
                None if !self.server.listen.ip().is_loopback() => {
                    return Err(ConfigError::new(
                        at("verify"),
                        format!(
                            "server.listen = {} is not loopback, so anyone who can reach it can forge this route's webhooks: configure [route.verify], or say verify = \"none\" to accept that",
                            self.server.listen
                        ),
                    ));
                }
                None => {}
            }
        }
        for (key, secret) in [
            ("store.url", self.store.url.as_ref()),
            ("admin.token", self.admin.token.as_ref()),
        ] {
            if secret.is_some_and(|s| s.0.trim().is_empty()) {
                return Err(ConfigError::new(key, "must not be blank"));
            }
        }
        if self.server.max_buffered_bytes < self.server.max_body_bytes.get() {
            return Err(ConfigError::new(
                "server.max_buffered_bytes",
                "must be at least server.max_body_bytes",
            ));
        }
        if self.server.max_body_bytes.get() > MAX_BODY_LIMIT {
            return Err(ConfigError::new(
                "server.max_body_bytes",
                format!("must be at most {MAX_BODY_LIMIT}"),
            ));
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

    /// The Redis URL with its password replaced, for logs.
    pub fn redacted_store_url(&self) -> Option<String> {
        self.store.url.as_ref().map(|u| redact_url(u.expose()))
    }
}

/// Non-zero defaults, checked when the crate compiles.
mod nonzero {
    use super::*;
    pub const MAX_BODY_BYTES: NonZeroU64 = NonZeroU64::new(1_048_576).unwrap();
    pub const MAX_CONNECTIONS: NonZeroUsize = NonZeroUsize::new(4096).unwrap();
    pub const MAX_STATE_BYTES: NonZeroU64 = NonZeroU64::new(65_536).unwrap();
    pub const BREAKER_FAILURES: NonZeroU32 = NonZeroU32::new(3).unwrap();
}

/// Largest `server.max_body_bytes` (the buffer budget counts in u32 steps).
const MAX_BODY_LIMIT: u64 = 1 << 30;

/// A `[route.verify]` table is complete for its kind.
fn validate_verify(verify: &VerifyConfig, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let Some(kind) = verify.kind else {
        return Err(ConfigError::new(
            at("verify.kind"),
            "required unless the route has a preset",
        ));
    };
    let blank = |s: &Option<Secret>| s.as_ref().is_none_or(|s| s.0.trim().is_empty());
    if kind == VerifyKind::Discord {
        let key = verify.public_key.as_deref().unwrap_or_default();
        crate::verify::Verifier::discord(key)
            .map_err(|e| ConfigError::new(at("verify.public_key"), e))?;
    } else if blank(&verify.secret) {
        return Err(ConfigError::new(
            at("verify.secret"),
            "required and not blank (or verify.secret_env)",
        ));
    }
    if kind == VerifyKind::Twilio {
        let url = verify.public_url.as_deref().unwrap_or_default();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new(
                at("verify.public_url"),
                "required with kind = \"twilio\": the URL Twilio calls, e.g. \"https://bot.example.com/twilio\"",
            ));
        }
    }
    if verify.verify_token.is_some() && blank(&verify.verify_token) {
        return Err(ConfigError::new(
            at("verify.verify_token"),
            "must not be blank",
        ));
    }
    Ok(())
}

/// Catches store paths that can never work without touching the disk: the
/// nearest existing ancestor must be a directory. (What only opening can
/// tell, such as a read-only file system, fails at startup with the same key.)
fn check_store_path(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".into());
    }
    if path.is_dir() {
        return Err(format!(
            "{} is a directory; name the database file",
            path.display()
        ));
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if dir.exists() {
            if !dir.is_dir() {
                return Err(format!(
                    "{}: {} is not a directory",
                    path.display(),
                    dir.display()
                ));
            }
            return Ok(());
        }
        ancestor = dir.parent();
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:3000"
[[route]]
path = "/telegram"
namespace = "tg"
key = ["json:/message/from/id"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &HashMap::new())
    }

    #[test]
    fn durations_are_humantime() {
        let with = |value: &str| {
            parse(&MINIMAL.replace(
                "[upstream]",
                &format!("[store]\nttl = \"{value}\"\n[upstream]"),
            ))
        };
        assert_eq!(
            with("1h30m").expect("valid").store.ttl,
            Duration::from_secs(5400)
        );
        assert_eq!(
            with("250ms").expect("valid").store.ttl,
            Duration::from_millis(250)
        );
        assert_eq!(
            with("7d").expect("valid").store.ttl,
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["10", "1x", "s", ""] {
            assert_eq!(with(bad).expect_err(bad).key, "store.ttl", "{bad}");
        }
        assert_eq!(with("0s").expect_err("zero").key, "store.ttl");
        // What check-config prints parses again to the same config.
        let c = with("1h30m").unwrap();
        let again = parse(&c.to_masked_toml()).expect("printed config parses");
        assert_eq!(again.store.ttl, c.store.ttl);
    }

    #[test]
    fn zero_where_zero_cannot_work_is_named() {
        for (table, key) in [
            ("server", "max_body_bytes"),
            ("server", "max_connections"),
            ("store", "max_state_bytes"),
            ("store", "breaker_failures"),
        ] {
            let text = format!("[{table}]\n{key} = 0\n[upstream]\nurl = \"http://127.0.0.1:1\"\n");
            let err = parse(&text).expect_err(key);
            assert_eq!(err.key, format!("{table}.{key}"));
            assert!(err.message.contains("nonzero"), "{err}");
        }
    }

    #[test]
    fn only_the_upstream_is_required() {
        let err = parse("").expect_err("no upstream");
        assert_eq!(err.key, "upstream.url");
        let c = parse("[upstream]\nurl = \"http://127.0.0.1:3000\"\n").expect("valid");
        assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.store.ttl, Duration::from_secs(86_400));
        assert_eq!(c.admin.listen, SocketAddr::from(([127, 0, 0, 1], 9090)));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.store.backend, Backend::Embedded);
        assert_eq!(c.store.ttl, Duration::from_secs(86_400));
        assert_eq!(c.contract.body_field, "/_statehold");
        assert_eq!(c.routes[0].on_missing_key, OnMissingKey::Passthrough);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("listen =", "lsten = \"x\"\nlisten =");
        let err = parse(&text).expect_err("unknown key");
        assert_eq!(err.key, "server.lsten");
        assert!(err.message.contains("unknown field"), "{err}");
        let text = format!("{MINIMAL}ttl_typo = 1\n");
        let err = parse(&text).expect_err("unknown key in route");
        assert!(err.key.starts_with("route"), "{err}");
    }

    #[test]
    fn empty_key_name_still_names_a_key() {
        // Found by the config_parse fuzz target.
        let err = parse(r#"''='''=''''"#).expect_err("invalid");
        assert_eq!(err.key, "config");
    }

    #[test]
    fn wrong_type_is_named() {
        let text = MINIMAL.replace("[upstream]", "[store]\nttl = 5\n[upstream]");
        let err = parse(&text).expect_err("wrong type");
        assert_eq!(err.key, "store.ttl");
    }

    #[test]
    fn bad_key_source_is_named() {
        let text = MINIMAL.replace("json:/message/from/id", "jsn:/x");
        let err = parse(&text).expect_err("bad source");
        assert_eq!(err.key, "route[0].key[0]");
    }

    #[test]
    fn secrets_come_from_env_and_never_print() {
        let text = format!("{MINIMAL}\n[admin]\ntoken_env = \"ADMIN_TOKEN\"\n");
        assert_eq!(parse(&text).expect_err("unset env").key, "admin.token_env");
        let env = HashMap::from([("ADMIN_TOKEN".to_string(), "s3cr3t-token".to_string())]);
        let c = Config::parse(&text, &env).expect("valid");
        assert_eq!(
            c.admin.token.as_ref().map(Secret::expose),
            Some("s3cr3t-token")
        );
        let printed = c.to_masked_toml();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(format!("{c:?}").find("s3cr3t").is_none());
    }

    #[test]
    fn redis_url_password_is_redacted() {
        assert_eq!(
            redact_url("redis://:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn preset_fills_keys() {
        let text = MINIMAL.replace("key = [\"json:/message/from/id\"]", "preset = \"telegram\"");
        let c = parse(&text).expect("valid");
        assert!(!c.routes[0].key.is_empty());
        assert_eq!(c.routes[0].dedupe[0].to_string(), "json:/update_id");
    }

    #[test]
    fn public_listener_needs_verification_or_an_explicit_none() {
        let public = MINIMAL.replace("127.0.0.1:8080", "0.0.0.0:8080");
        let err = parse(&public).expect_err("unverified on a public listener");
        assert_eq!(err.key, "route[0].verify");
        let explicit = format!("{public}verify = \"none\"\n");
        let c = parse(&explicit).expect("explicit none");
        assert_eq!(c.warnings().len(), 1);
        assert!(parse(&format!("{public}verify = \"nope\"\n")).is_err());
        let verified = format!("{public}[route.verify]\nkind = \"telegram\"\nsecret = \"tok\"\n");
        assert!(parse(&verified).expect("verified").warnings().is_empty());
        // Blank secrets are refused, inline or from the environment.
        let blank = format!("{public}[route.verify]\nkind = \"telegram\"\nsecret = \"   \"\n");
        assert_eq!(
            parse(&blank).expect_err("blank").key,
            "route[0].verify.secret"
        );
        let env_text = format!("{public}[route.verify]\nkind = \"telegram\"\nsecret_env = \"T\"\n");
        let env = HashMap::from([("T".to_string(), " \t".to_string())]);
        assert_eq!(
            Config::parse(&env_text, &env).expect_err("blank env").key,
            "route[0].verify.secret_env"
        );
    }

    #[test]
    fn twilio_and_discord_need_their_settings() {
        let twilio = format!("{MINIMAL}[route.verify]\nkind = \"twilio\"\nsecret = \"tok\"\n");
        assert_eq!(
            parse(&twilio).expect_err("no url").key,
            "route[0].verify.public_url"
        );
        let discord = format!("{MINIMAL}[route.verify]\nkind = \"discord\"\npublic_key = \"ab\"\n");
        assert_eq!(
            parse(&discord).expect_err("bad key").key,
            "route[0].verify.public_key"
        );
    }
}
