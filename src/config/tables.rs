//! The config's tables, one struct each: `[server]`, `[upstream]`,
//! `[store]`, `[contract]`, `[admin]`, `[log]`. Every field's `///` line is
//! its documentation (`statehold check-config --explain` prints it); each
//! table has one `Default`, and `#[serde(default)]` fills what a file leaves
//! out.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the proxy listens on (the platform's webhooks arrive here).
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
    /// After SIGTERM, keep accepting requests this long while `/readyz`
    /// already answers 503, so load balancers stop routing here before the
    /// listener closes (Kubernetes endpoint propagation).
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
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
    /// Threads that serve requests: 1 runs everything on one thread (the
    /// least CPU and the fewest context switches per request; one core
    /// serves well over 10,000 stateful requests a second), N > 1 spreads
    /// connections over N threads, 0 uses one per CPU core.
    pub worker_threads: usize,
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
            drain_delay: Duration::ZERO,
            unmatched: Unmatched::Forward,
            trusted_proxies: Default::default(),
            max_buffered_bytes: 32 * 1_048_576,
            worker_threads: 1,
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
    /// PEM certificate chain served on `server.listen`.
    pub cert: PathBuf,
    /// PEM private key of `server.tls.cert`.
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
    /// How long connecting to the bot may take.
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
pub enum BackendKind {
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
    /// Where conversations live: "embedded" (a file, one node) or "redis" (shared by replicas).
    pub backend: BackendKind,
    /// Embedded only: the database file.
    pub path: PathBuf,
    /// Redis only: `redis://` or `rediss://` URL (prefer `url_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Environment variable holding `store.url` (keeps the password out of the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// Prefix of every Redis key and channel; replicas of one bot share it.
    pub key_prefix: String,
    /// Sliding: refreshed on every request of the conversation.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Largest snapshot the bot may report; a larger one is not stored (logged, counted).
    pub max_state_bytes: NonZeroU64,
    /// When the store is unreachable: "reject" (503 + Retry-After) or "passthrough" (serve without state, spool what the bot reports).
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
    /// The longest the circuit stays open (failing fast); a background probe closes it as soon as Redis answers again.
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
    /// Redis with Sentinel: the Sentinels' `host:port` addresses; the
    /// primary is asked of them (instead of `url`) and followed on failover.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<String>,
    /// Redis with Sentinel: the monitored primary's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    /// Redis with Sentinel: the Sentinels' own password (prefer `sentinel_password_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_password: Option<Secret>,
    /// Environment variable holding `store.sentinel_password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_password_env: Option<String>,
    /// Redis Cluster: seed node URLs (`redis://host:port`, no credentials);
    /// the rest of the cluster is learned from them. Instead of `url`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
    /// Redis: the data nodes' password (Sentinel's primary, every Cluster
    /// node, or the one server); overrides one in `url` (prefer `password_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Environment variable holding `store.password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// With `on_unavailable = "passthrough"` on Redis: after an outage ends,
    /// this replica waits this long before reading conversations again, so
    /// other replicas write back what they spooled first.
    #[serde(with = "humantime_serde")]
    pub recovery_settle: Duration,
    /// Hash the id in every stored key with this secret (HMAC-SHA256; base64, at least 32 bytes): no user id appears in a Redis key, the embedded file or the spool (prefer `key_secret_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<Secret>,
    /// Environment variable holding `store.key_secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_secret_env: Option<String>,
    /// File holding `store.key_secret` (a mounted secret); created with a new random secret (0600) when missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_secret_file: Option<PathBuf>,
    /// While moving existing conversations onto hashed keys (`statehold migrate`): a conversation with no record under its hashed key is looked up under its plaintext key too (one more round trip, only then) and moved there by its next write. Needs `key_secret`; turn it off once `migrate` is done.
    pub plaintext_fallback: bool,
    /// Seal snapshots, recorded answers and spool entries at rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::privacy::EncryptionConfig>,
    /// Versions of each conversation kept for the admin API's history and rollback (0: off); each expires with its conversation.
    pub history: u32,
    /// Redis only: replicas that must confirm each commit (`WAIT`, in the
    /// commit's round trip) before the answer is acknowledged; fewer in
    /// time: 503, and the platform redelivers. 0: no wait.
    pub min_replica_acks: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: BackendKind::Embedded,
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
            cache_bytes: 4 * 1_048_576,
            lock_lease: Duration::from_secs(5),
            op_timeout: Duration::from_secs(1),
            breaker_failures: nonzero::BREAKER_FAILURES,
            breaker_cooldown: Duration::from_secs(1),
            spool_path: PathBuf::from("./data/spool.db"),
            spool_max: 10_000,
            tls_ca: Default::default(),
            sentinels: Default::default(),
            sentinel_master: Default::default(),
            sentinel_password: Default::default(),
            sentinel_password_env: Default::default(),
            cluster: Default::default(),
            password: Default::default(),
            password_env: Default::default(),
            min_replica_acks: 0,
            history: 0,
            key_secret: Default::default(),
            key_secret_env: Default::default(),
            key_secret_file: Default::default(),
            plaintext_fallback: false,
            encryption: Default::default(),
            recovery_settle: Duration::from_secs(2),
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
    /// How the bot sees and reports state: "header" (X-Statehold-* headers) or "body" (a JSON member).
    pub mode: ContractMode,
    /// RFC 6901 pointer of the body-mode member.
    pub body_field: String,
    /// Header mode: the largest X-Statehold-State value sent to the bot; a larger snapshot travels in the JSON body member (X-Statehold-State-In: body), and one reported with a request that is not a JSON object is refused.
    pub max_header_bytes: usize,
}

impl Default for ContractConfig {
    fn default() -> Self {
        ContractConfig {
            mode: ContractMode::Header,
            body_field: "/_statehold".into(),
            max_header_bytes: 6 * 1024,
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
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of /healthz, /readyz, /metrics and /v1/state (keep it private).
    pub listen: SocketAddr,
    /// Bearer token of `/v1/state`; without one the state API answers 404.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Environment variable holding `admin.token`.
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
    /// "text" (one `key=value` line per event) or "json" (one JSON object per line, the same fields at the top level).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit events kept (the oldest go first): one per state change, appended with the change, never with values; 0 turns the trail off.
    pub max_events: u64,
    /// Also write each event to the log, target `statehold::audit`.
    pub log: bool,
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

/// Non-zero defaults, checked when the crate compiles.
mod nonzero {
    use super::*;
    pub const MAX_BODY_BYTES: NonZeroU64 = NonZeroU64::new(1_048_576).unwrap();
    pub const MAX_CONNECTIONS: NonZeroUsize = NonZeroUsize::new(4096).unwrap();
    pub const MAX_STATE_BYTES: NonZeroU64 = NonZeroU64::new(65_536).unwrap();
    pub const BREAKER_FAILURES: NonZeroU32 = NonZeroU32::new(3).unwrap();
}
