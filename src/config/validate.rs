//! Validation: the cross-field rules serde cannot express, each error
//! naming the key to fix.

use std::path::Path;
use std::time::Duration;

use super::*;

impl Config {
    /// Applies route presets, then checks every rule across fields.
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        self.check_durations()?;
        self.check_files()?;
        self.check_upstream()?;
        self.check_store()?;
        // Key material is checked here so a bad key fails `check-config`
        // (which creates no key file).
        self.privacy_with(super::privacy::Missing::Skip)?;
        self.check_routes()?;
        self.check_limits()
    }

    /// Zero durations that would make statehold refuse or spin.
    fn check_durations(&self) -> Result<(), ConfigError> {
        let (server, upstream, store) = (&self.server, &self.upstream, &self.store);
        for (key, d) in [
            ("server.header_timeout", server.header_timeout),
            ("server.body_timeout", server.body_timeout),
            ("upstream.timeout", upstream.timeout),
            ("upstream.connect_timeout", upstream.connect_timeout),
            ("upstream.pool_idle_timeout", upstream.pool_idle_timeout),
            ("store.ttl", store.ttl),
            ("store.dedupe_window", store.dedupe_window),
            ("store.lock_wait", store.lock_wait),
            ("store.purge_interval", store.purge_interval),
            ("store.lock_lease", store.lock_lease),
            ("store.op_timeout", store.op_timeout),
            ("store.breaker_cooldown", store.breaker_cooldown),
        ] {
            if d == Duration::ZERO {
                return Err(ConfigError::new(key, "must be greater than zero"));
            }
        }
        Ok(())
    }

    /// Files named by the config exist.
    fn check_files(&self) -> Result<(), ConfigError> {
        let tls = self.server.tls.as_ref();
        let files = [
            ("store.tls_ca", self.store.tls_ca.as_deref()),
            ("server.tls.cert", tls.map(|t| t.cert.as_path())),
            ("server.tls.key", tls.map(|t| t.key.as_path())),
        ];
        for (key, path) in files {
            if let Some(path) = path.filter(|p| !p.is_file()) {
                return Err(ConfigError::new(
                    key,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }

    fn check_upstream(&self) -> Result<(), ConfigError> {
        if self.upstream.url.is_empty() {
            return Err(ConfigError::new(
                "upstream.url",
                "required: the bot, e.g. \"http://127.0.0.1:3000\"",
            ));
        }
        crate::upstream::UpstreamTarget::parse(&self.upstream.url)
            .map(|_| ())
            .map_err(|e| ConfigError::new("upstream.url", e.to_string()))
    }

    fn check_store(&self) -> Result<(), ConfigError> {
        let store = &self.store;
        if !crate::key::is_namespace(&store.key_prefix) {
            return Err(ConfigError::new(
                "store.key_prefix",
                "must be non-empty and use only A-Z a-z 0-9 _ - .",
            ));
        }
        match store.backend {
            BackendKind::Embedded if store.min_replica_acks > 0 => {
                return Err(ConfigError::new(
                    "store.min_replica_acks",
                    "Redis only: the embedded store has no replicas",
                ))
            }
            BackendKind::Embedded => check_store_path(&store.path)?,
            BackendKind::Redis => check_redis_topology(store)?,
        }
        for (key, secret) in [
            ("store.url", store.url.as_ref()),
            ("store.password", store.password.as_ref()),
            ("store.sentinel_password", store.sentinel_password.as_ref()),
            ("store.key_secret", store.key_secret.as_ref()),
            ("admin.token", self.admin.token.as_ref()),
        ] {
            if secret.is_some_and(|s| s.0.trim().is_empty()) {
                return Err(ConfigError::new(key, "must not be blank"));
            }
        }
        Ok(())
    }

    fn check_routes(&mut self) -> Result<(), ConfigError> {
        if !self.contract.body_field.starts_with('/') || self.contract.body_field.len() < 2 {
            return Err(ConfigError::new(
                "contract.body_field",
                "must be a JSON pointer naming a member, e.g. \"/_statehold\"",
            ));
        }
        if !(1024..=65_536).contains(&self.contract.max_header_bytes) {
            return Err(ConfigError::new(
                "contract.max_header_bytes",
                "must be between 1024 and 65536 (bot servers refuse header lines of 8 to 16 KiB)",
            ));
        }
        let listen = self.server.listen;
        let mut seen = std::collections::HashSet::new();
        // A namespace's records have one lifetime: its routes must agree.
        let mut lifetimes = std::collections::HashMap::new();
        for (i, route) in self.routes.iter_mut().enumerate() {
            let at = |field: &str| format!("route[{i}].{field}");
            if !seen.insert(route.path.clone()) {
                return Err(ConfigError::new(
                    at("path"),
                    format!("`{}` is configured twice", route.path),
                ));
            }
            if let Some(preset) = route.preset {
                route.apply_preset(preset);
            }
            check_route(route, listen, &at)?;
            if let Some(timeout) = route.report_timeout {
                check_report_timeout(timeout, self.store.lock_lease, &at)?;
            }
            let ttl = route.ttl.unwrap_or(self.store.ttl);
            if *lifetimes.entry(route.namespace.clone()).or_insert(ttl) != ttl {
                return Err(ConfigError::new(
                    at("ttl"),
                    format!(
                        "routes sharing namespace {:?} must have the same ttl",
                        route.namespace
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
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
}

/// `route.report_timeout`: positive, at most 15 minutes, and at least
/// `store.lock_lease`: a deferred turn whose replica died stays held until
/// its lease runs out, so with a shorter timeout the conversation would
/// wait on a turn that no report can end any more.
fn check_report_timeout(
    timeout: std::time::Duration,
    lease: std::time::Duration,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    use super::route::MAX_REPORT_TIMEOUT;
    if timeout.is_zero() || timeout > MAX_REPORT_TIMEOUT {
        return Err(ConfigError::new(
            at("report_timeout"),
            "must be greater than zero and at most 15m",
        ));
    }
    if lease > timeout {
        return Err(ConfigError::new(
            at("report_timeout"),
            format!(
                "must be at least store.lock_lease ({lease:?}): a deferred turn whose replica died is held for a whole lease"
            ),
        ));
    }
    Ok(())
}

/// One route, its preset applied.
fn check_route(
    route: &RouteConfig,
    listen: std::net::SocketAddr,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if !route.path.starts_with('/') {
        return Err(ConfigError::new(at("path"), "must start with `/`"));
    }
    if !crate::key::is_namespace(&route.namespace) {
        return Err(ConfigError::new(
            at("namespace"),
            "must be non-empty and use only A-Z a-z 0-9 _ - .",
        ));
    }
    if route.key.is_empty() {
        return Err(ConfigError::new(
            at("key"),
            "needs at least one source (or a preset)",
        ));
    }
    route
        .rules()
        .map_err(|e| ConfigError::new(at(e.config_key()), e.to_string()))?;
    if route.ttl == Some(Duration::ZERO) {
        return Err(ConfigError::new(at("ttl"), "must be greater than zero"));
    }
    match &route.verify {
        Some(RouteVerify::Check(verify)) => validate_verify(verify, at),
        None if !listen.ip().is_loopback() => Err(ConfigError::new(
            at("verify"),
            format!(
                "server.listen = {listen} is not loopback, so anyone who can reach it can forge this route's webhooks: configure [route.verify], or say verify = \"none\" to accept that"
            ),
        )),
        Some(RouteVerify::None) | None => Ok(()),
    }
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
            .map_err(|e| ConfigError::new(at("verify.public_key"), e.to_string()))?;
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
fn check_store_path(path: &Path) -> Result<(), ConfigError> {
    let bad = |message: String| Err(ConfigError::new("store.path", message));
    if path.as_os_str().is_empty() {
        return bad("must not be empty".into());
    }
    if path.is_dir() {
        return bad(format!(
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
                return bad(format!(
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

/// Exactly one of `url`, `sentinels`, `cluster`, each well formed.
fn check_redis_topology(store: &StoreConfig) -> Result<(), ConfigError> {
    let chosen = [
        store.url.is_some(),
        !store.sentinels.is_empty(),
        !store.cluster.is_empty(),
    ];
    match chosen.iter().filter(|c| **c).count() {
        0 => {
            return Err(ConfigError::new(
                "store.url",
                "required with store.backend = \"redis\" (or store.sentinels, or store.cluster)",
            ))
        }
        1 => {}
        _ => {
            return Err(ConfigError::new(
                "store.url",
                "set one of store.url, store.sentinels, store.cluster",
            ))
        }
    }
    let redis_url = |url: &str| url.starts_with("redis://") || url.starts_with("rediss://");
    if let Some(url) = &store.url {
        if !redis_url(&url.0) {
            return Err(ConfigError::new(
                "store.url",
                "must start with redis:// or rediss://",
            ));
        }
    }
    if !store.sentinels.is_empty() && store.sentinel_master.as_deref().is_none_or(str::is_empty) {
        return Err(ConfigError::new(
            "store.sentinel_master",
            "required with store.sentinels: the primary's name in the Sentinels' config",
        ));
    }
    for (i, node) in store.cluster.iter().enumerate() {
        let key = format!("store.cluster[{i}]");
        if !redis_url(node) {
            return Err(ConfigError::new(
                key,
                "must start with redis:// or rediss://",
            ));
        }
        // A password here would be printed by check-config and the logs.
        if node.contains('@') {
            return Err(ConfigError::new(
                key,
                "no credentials in a node URL: set store.password_env",
            ));
        }
    }
    Ok(())
}
