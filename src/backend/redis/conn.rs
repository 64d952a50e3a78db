//! The Redis backend's connection: one multiplexed, auto-reconnecting
//! connection per process (redis-rs `ConnectionManager`), TLS through
//! rustls (`rediss://`, optional CA file), a timeout on every operation, the
//! circuit breaker, and the classification of Redis errors.
//!
//! The connection is made lazily: statehold starts while Redis is down and
//! connects on the first operation that finds it up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, Script, ScriptInvocation};

use super::breaker::Breaker;
use super::keys::ConvKeys;
use crate::backend::StoreError;
use crate::key::ConvKey;

#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

/// Where the primary is: one address, or asked of Sentinel.
enum Endpoint {
    Single(Client),
    /// Discovered on every (re)connect, so a failover is followed on the
    /// first error it causes (a dropped connection, `READONLY`).
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

struct Inner {
    endpoint: Endpoint,
    manager: Mutex<Option<ConnectionManager>>,
    /// Serialises (re)connect attempts so a dead Redis sees one at a time.
    connecting: tokio::sync::Mutex<()>,
    op_timeout: Duration,
    prefix: String,
    breaker: Breaker,
}

/// Why a Redis operation failed. The store and the turns map it to their
/// own errors; the circuit breaker counts all but [`OpError::Reply`].
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Unreachable, or answering that it cannot serve now.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis operation timed out")]
    Timeout,
    /// Redis answered with an error of ours (a script error).
    #[error("redis replied with an error: {0}")]
    Reply(String),
}

impl From<OpError> for StoreError {
    fn from(e: OpError) -> StoreError {
        match e {
            OpError::Unavailable(m) => StoreError::Unavailable(m),
            OpError::Timeout => StoreError::Timeout,
            OpError::Reply(m) => StoreError::Corrupt(m),
        }
    }
}

/// Why the Redis client could not be built (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("store.tls_ca {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("store.url: {0}")]
    Url(redis::RedisError),
}

/// Error replies that mean "not now, or not here" rather than a fault in
/// the request: a replica after a failover (`READONLY`), a server loading
/// its data (`LOADING`), a replica whose primary is gone (`MASTERDOWN`), a
/// cluster without quorum or in the middle of a move (`CLUSTERDOWN`,
/// `TRYAGAIN`). They count as the store being unavailable (breaker, retry
/// on a fresh connection), never as damaged data.
fn is_unavailable_reply(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some("READONLY" | "LOADING" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN")
    )
}

impl RedisConn {
    /// Builds the client; connects on first use.
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        op_timeout: Duration,
        prefix: &str,
        breaker: (u32, Duration),
    ) -> Result<RedisConn, ConnError> {
        let client = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ConnError::Ca {
                    path: path.display().to_string(),
                    source,
                })?;
                Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => Client::open(url),
        }
        .map_err(ConnError::Url)?;
        Ok(RedisConn::with_endpoint(
            Endpoint::Single(client),
            op_timeout,
            prefix,
            breaker,
        ))
    }

    /// A connection to the primary that the Sentinels at `sentinels`
    /// (`host:port`) name for `master`; connects on first use.
    pub fn sentinel(
        sentinels: &[String],
        master: &str,
        op_timeout: Duration,
        prefix: &str,
        breaker: (u32, Duration),
    ) -> Result<RedisConn, ConnError> {
        let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
        let client = redis::sentinel::SentinelClient::build(
            urls,
            master,
            None,
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(ConnError::Url)?;
        Ok(RedisConn::with_endpoint(
            Endpoint::Sentinel(tokio::sync::Mutex::new(client)),
            op_timeout,
            prefix,
            breaker,
        ))
    }

    fn with_endpoint(
        endpoint: Endpoint,
        op_timeout: Duration,
        prefix: &str,
        breaker: (u32, Duration),
    ) -> RedisConn {
        RedisConn {
            inner: Arc::new(Inner {
                endpoint,
                manager: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                op_timeout,
                prefix: prefix.to_string(),
                breaker: Breaker::new(breaker.0, breaker.1),
            }),
        }
    }

    /// The keys of one conversation.
    pub fn keys(&self, key: &ConvKey) -> ConvKeys {
        ConvKeys::new(&self.inner.prefix, key)
    }

    /// The pub/sub channel turn hand-overs are announced on.
    /// Every operation's deadline.
    pub fn op_timeout(&self) -> Duration {
        self.inner.op_timeout
    }

    pub fn turn_channel(&self) -> String {
        format!("{}:turns", self.inner.prefix)
    }

    /// A client for the current primary (asked of Sentinel when there).
    pub async fn client(&self) -> Result<Client, OpError> {
        match &self.inner.endpoint {
            Endpoint::Single(client) => Ok(client.clone()),
            // Bounded: the hand-over listener asks outside any operation's
            // deadline, and a hung Sentinel must not hold the lock.
            Endpoint::Sentinel(sentinel) => {
                let ask = async { sentinel.lock().await.async_get_client().await };
                tokio::time::timeout(self.inner.op_timeout, ask)
                    .await
                    .map_err(|_| OpError::Timeout)?
                    .map_err(|e| OpError::Unavailable(format!("sentinel: {e}")))
            }
        }
    }

    async fn manager(&self) -> Result<ConnectionManager, OpError> {
        match self.cached() {
            Some(m) => Ok(m),
            // Boxed: connecting (through Sentinel too) is the cold path, and
            // its future nests deep enough that, inlined into every
            // operation's, it overflows rustc's query depth on a clean build.
            None => Box::pin(self.connect()).await,
        }
    }

    async fn connect(&self) -> Result<ConnectionManager, OpError> {
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        // No timeouts of its own: `with_retry`'s one deadline covers the
        // connect and every command.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let client = self.client().await?;
        let manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| OpError::Unavailable(e.to_string()))?;
        if let Ok(mut slot) = self.inner.manager.lock() {
            *slot = Some(manager.clone());
        }
        Ok(manager)
    }

    fn cached(&self) -> Option<ConnectionManager> {
        self.inner.manager.lock().ok().and_then(|m| m.clone())
    }

    /// Forgets a connection that failed, so the next operation connects
    /// afresh instead of waiting out the manager's own reconnect backoff.
    fn invalidate(&self) {
        if let Ok(mut slot) = self.inner.manager.lock() {
            *slot = None;
        }
    }

    /// Runs a script within the operation timeout.
    pub async fn eval<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, OpError> {
        self.with_retry(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Runs a script and then `WAIT replicas wait_ms` in one round trip
    /// (a pipeline); returns the script's reply and how many replicas
    /// acknowledged its writes. Loads the script first when Redis lost it.
    pub async fn eval_and_wait<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        replicas: u32,
        wait_ms: u64,
    ) -> Result<(T, i64), OpError> {
        self.with_retry(|mut conn| async move {
            let mut pipe = redis::pipe();
            pipe.invoke_script(invocation)
                .cmd("WAIT")
                .arg(replicas)
                .arg(wait_ms);
            match pipe.query_async::<(T, i64)>(&mut conn).await {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    invocation.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs a command within the operation timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, OpError> {
        self.with_retry(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// One attempt, and one more on a fresh connection when the first failed
    /// at the connection level (e.g. the first command after a Redis
    /// restart). Every statehold script is safe to run twice: loads and
    /// releases are idempotent, and a replayed commit is refused by its
    /// version check.
    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, OpError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let breaker = &self.inner.breaker;
        if breaker.is_open() {
            return Err(OpError::Unavailable("circuit open (redis failing)".into()));
        }
        // One deadline for the whole operation: waiting for another
        // request's reconnect attempt, connecting, and the retry all count,
        // so concurrent requests on a dead Redis each wait `op_timeout` at
        // most instead of queueing behind one another's attempts.
        let result = tokio::time::timeout(self.inner.op_timeout, self.attempt_twice(op))
            .await
            .unwrap_or(Err(OpError::Timeout));
        match &result {
            Ok(_) => breaker.success(),
            // A script error is Redis answering: the store is up.
            Err(OpError::Reply(_)) => breaker.success(),
            Err(_) => breaker.failure(),
        }
        result
    }

    async fn attempt_twice<T, F, Fut>(&self, op: F) -> Result<T, OpError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // Bounded by the caller's deadline (`with_retry`), connect included.
        for attempt in 0..2 {
            let conn = self.manager().await?;
            match op(conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let connection_level = e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_unrecoverable_error();
                    if !connection_level && !is_unavailable_reply(&e) {
                        // Redis answered with an error (e.g. a script error).
                        return Err(OpError::Reply(e.to_string()));
                    }
                    self.invalidate();
                    if attempt == 1 {
                        return Err(OpError::Unavailable(e.to_string()));
                    }
                }
            }
        }
        Err(OpError::Unavailable("unreachable".into()))
    }
}

/// A script loaded once per process; redis-rs sends EVALSHA and falls back
/// to EVAL after a Redis restart emptied the script cache. Scripts that
/// share helpers are built with `concat!` of a `*_lib.lua` and their body
/// (Redis scripts cannot include one another).
pub fn script(source: &'static str) -> Script {
    Script::new(source)
}
