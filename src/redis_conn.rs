//! The shared Redis connection of the Redis store and Redis turns: one
//! multiplexed, auto-reconnecting connection per process (redis-rs
//! `ConnectionManager`), TLS through rustls (`rediss://`, optional CA file),
//! a timeout on every operation, and the per-conversation key layout.
//!
//! The connection is made lazily: statehold starts while Redis is down and
//! connects on the first operation that finds it up.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, Script, ScriptInvocation};

use crate::key::ConvKey;

#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    manager: Mutex<Option<ConnectionManager>>,
    /// Serialises (re)connect attempts so a dead Redis sees one at a time.
    connecting: tokio::sync::Mutex<()>,
    op_timeout: Duration,
    prefix: String,
    breaker: Breaker,
}

/// A circuit breaker: after `threshold` consecutive failed operations Redis
/// is considered down for `cooldown`, and operations fail at once instead of
/// each waiting out `op_timeout`. After the cooldown the next operation goes
/// through as a probe; one success closes the circuit.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open.
    open_until_ms: AtomicU64,
    epoch: std::time::Instant,
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            let until = self.now_ms() + self.cooldown.as_millis() as u64;
            if self.open_until_ms.swap(until, Ordering::Relaxed) <= self.now_ms() {
                tracing::warn!(failures = n, cooldown = ?self.cooldown, "redis circuit open: failing fast");
            }
        }
    }
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

/// The keys of one conversation, all under one hash tag so every script
/// touches a single Redis Cluster slot.
///
/// Key names are an injective encoding of (prefix, namespace, id, dedupe
/// id): `%`, `{` and `}` in ids are percent-escaped, so an id cannot end
/// the hash tag early and two different (id, dedupe id) pairs never share a
/// key (`x}:d:evil` + `123` against `x` + `evil}:d:123`). The prefix and
/// namespace use name characters only, so `:` splits them unambiguously.
pub struct ConvKeys {
    /// `{prefix:ns:escaped id}`
    tag: String,
}

/// `%`, `{`, `}` as `%25`, `%7B`, `%7D`; everything else as is.
pub fn escape_key_part(part: &str) -> std::borrow::Cow<'_, str> {
    if !part.contains(['%', '{', '}']) {
        return std::borrow::Cow::Borrowed(part);
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

impl ConvKeys {
    pub fn snapshot(&self) -> String {
        format!("{}:s", self.tag)
    }
    pub fn dedupe(&self, id: &str) -> String {
        format!("{}:d:{}", self.tag, escape_key_part(id))
    }
    pub fn lease(&self) -> String {
        format!("{}:l", self.tag)
    }
    pub fn queue(&self) -> String {
        format!("{}:q", self.tag)
    }
}

impl RedisConn {
    /// Builds the client; connects on first use.
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        op_timeout: Duration,
        prefix: &str,
        breaker: (u32, Duration),
    ) -> Result<RedisConn, String> {
        let client = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("store.tls_ca {}: {e}", path.display()))?;
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
        .map_err(|e| format!("store.url: {e}"))?;
        Ok(RedisConn {
            inner: Arc::new(Inner {
                client,
                manager: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                op_timeout,
                prefix: prefix.to_string(),
                breaker: Breaker {
                    threshold: breaker.0.max(1),
                    cooldown: breaker.1,
                    failures: AtomicU32::new(0),
                    open_until_ms: AtomicU64::new(0),
                    epoch: std::time::Instant::now(),
                },
            }),
        })
    }

    pub fn keys(&self, key: &ConvKey) -> ConvKeys {
        ConvKeys {
            tag: format!(
                "{{{}:{}:{}}}",
                self.inner.prefix,
                key.namespace(),
                escape_key_part(key.id())
            ),
        }
    }

    /// The pub/sub channel turn hand-overs are announced on.
    pub fn turn_channel(&self) -> String {
        format!("{}:turns", self.inner.prefix)
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    async fn manager(&self) -> Result<ConnectionManager, OpError> {
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.inner.op_timeout))
            .set_connection_timeout(Some(self.inner.op_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connect = self.inner.client.get_connection_manager_with_config(config);
        let manager = tokio::time::timeout(self.inner.op_timeout * 2, connect)
            .await
            .map_err(|_| OpError::Timeout)?
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
        let result = self.attempt_twice(op).await;
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
        for attempt in 0..2 {
            let conn = self.manager().await?;
            match tokio::time::timeout(self.inner.op_timeout, op(conn)).await {
                Err(_) => return Err(OpError::Timeout),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_injective() {
        let conn = RedisConn::new(
            "redis://127.0.0.1:1/0",
            None,
            Duration::from_secs(1),
            "sh",
            (3, Duration::from_secs(1)),
        )
        .expect("client");
        let a = conn.keys(&ConvKey::new("tg", "x}:d:evil")).dedupe("123");
        let b = conn.keys(&ConvKey::new("tg", "x")).dedupe("evil}:d:123");
        assert_ne!(a, b);
        assert_eq!(a, "{sh:tg:x%7D:d:evil}:d:123");
        assert_eq!(b, "{sh:tg:x}:d:evil%7D:d:123");
        // An escape cannot be forged by sending it literally.
        let c = conn.keys(&ConvKey::new("tg", "x%7D")).snapshot();
        let d = conn.keys(&ConvKey::new("tg", "x}")).snapshot();
        assert_ne!(c, d);
        assert_eq!(
            conn.keys(&ConvKey::new("tg", "42")).snapshot(),
            "{sh:tg:42}:s"
        );
    }
}
