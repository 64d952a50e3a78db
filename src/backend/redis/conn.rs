//! The Redis backend's connection: one multiplexed connection per process
//! (to the endpoint `endpoint.rs` reaches: one server, Sentinel's primary,
//! or a Cluster), one deadline over every operation, the circuit breaker,
//! and the classification of Redis errors.
//!
//! The connection is made lazily: statehold starts while Redis is down and
//! connects on the first operation that finds it up.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::{Client, FromRedisValue, ScriptInvocation};

use super::audit_streams::AuditStreams;
use super::breaker::Breaker;
use super::endpoint::{Access, Connection, Endpoint, Topology};
use super::error::{ConnError, OpError};
use super::keys::ConvKeys;
use crate::key::ConvKey;

#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    connection: Mutex<Option<Connection>>,
    /// Serialises (re)connect attempts so a dead Redis sees one at a time.
    connecting: tokio::sync::Mutex<()>,
    op_timeout: Duration,
    prefix: String,
    breaker: Breaker,
    /// A probe is trying an unreachable Redis (`probe.rs`).
    probing: AtomicBool,
    /// The audit trail's stream names, worked out on first use.
    audit_streams: std::sync::OnceLock<AuditStreams>,
}

/// See [`RedisConn::downgrade`].
pub(super) struct WeakConn(Weak<Inner>);

impl WeakConn {
    pub(super) fn upgrade(&self) -> Option<RedisConn> {
        self.0.upgrade().map(|inner| RedisConn { inner })
    }
}

/// Error replies that mean "not now, or not here" rather than a fault in
/// the request: a replica after a failover (`READONLY`), a server loading
/// its data (`LOADING`), a replica whose primary is gone (`MASTERDOWN`), a
/// cluster without quorum or in the middle of a move (`CLUSTERDOWN`,
/// `TRYAGAIN`), a slot the client's map places wrongly after a failover
/// (`MOVED`, `ASK`, when the client's own redirects ran out), a script
/// still running (`BUSY`), a server refusing writes (`OOM`, `MISCONF`,
/// `NOREPLICAS`) or us (`NOAUTH`, `WRONGPASS`). They count as the store
/// being unavailable (breaker, retry on a fresh connection, which asks for
/// the slot map anew), never as damaged data or a refused operation.
fn is_unavailable_reply(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some(
            "READONLY"
                | "LOADING"
                | "MASTERDOWN"
                | "CLUSTERDOWN"
                | "TRYAGAIN"
                | "MOVED"
                | "ASK"
                | "BUSY"
                | "OOM"
                | "MISCONF"
                | "NOREPLICAS"
                | "NOAUTH"
                | "WRONGPASS"
        )
    )
}

impl RedisConn {
    /// Builds the clients; connects on first use.
    pub fn open(
        topology: Topology<'_>,
        access: Access<'_>,
        op_timeout: Duration,
        prefix: &str,
        breaker: (u32, Duration),
    ) -> Result<RedisConn, ConnError> {
        Ok(RedisConn {
            inner: Arc::new(Inner {
                endpoint: Endpoint::open(topology, access)?,
                connection: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                op_timeout,
                prefix: prefix.to_string(),
                breaker: Breaker::new(breaker.0, breaker.1),
                probing: AtomicBool::new(false),
                audit_streams: std::sync::OnceLock::new(),
            }),
        })
    }

    /// A handle that does not keep the connection alive (for background
    /// tasks that end with it).
    pub(super) fn downgrade(&self) -> WeakConn {
        WeakConn(Arc::downgrade(&self.inner))
    }

    /// Whether this is a Redis Cluster connection.
    pub(super) fn is_cluster(&self) -> bool {
        self.inner.endpoint.is_cluster()
    }

    /// The key prefix.
    pub(super) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Sentinels and the primary's name, with Sentinel.
    pub(super) fn sentinels(&self) -> Option<(&[Client], &str)> {
        self.inner.endpoint.sentinels()
    }

    /// The keys of one conversation.
    pub fn keys(&self, key: &ConvKey) -> ConvKeys {
        ConvKeys::new(&self.inner.prefix, key)
    }

    /// The audit trail's streams (one, or one per slot on a Cluster).
    pub(super) fn audit_streams(&self) -> &AuditStreams {
        self.inner
            .audit_streams
            .get_or_init(|| AuditStreams::new(&self.inner.prefix, self.is_cluster()))
    }

    /// The stream a conversation's audit events go to.
    pub(super) fn audit_stream(&self, keys: &ConvKeys) -> String {
        self.audit_streams().of(keys)
    }

    /// Every operation's deadline.
    pub fn op_timeout(&self) -> Duration {
        self.inner.op_timeout
    }

    /// The stem of the pub/sub channels turn hand-overs are announced on
    /// (one per replica: `shared::notice_channel`).
    pub fn turn_channel(&self) -> String {
        format!("{}:turns", self.inner.prefix)
    }

    /// A client for one node, to subscribe to hand-over notices on: the
    /// server, the current primary, or the next Cluster seed in turn.
    pub async fn node_client(&self) -> Result<Client, OpError> {
        self.inner.endpoint.node_client(self.inner.op_timeout).await
    }

    async fn connection(&self) -> Result<Connection, OpError> {
        match self.cached() {
            Some(c) => Ok(c),
            // Boxed: connecting (through Sentinel or a Cluster's slot map)
            // is the cold path, and its future nests deep enough that,
            // inlined into every operation's, it overflows rustc's query
            // depth on a clean build.
            None => Box::pin(self.connect()).await,
        }
    }

    async fn connect(&self) -> Result<Connection, OpError> {
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let connection = self.inner.endpoint.connect(self.inner.op_timeout).await?;
        *self.inner.connection.lock() = Some(connection.clone());
        Ok(connection)
    }

    fn cached(&self) -> Option<Connection> {
        self.inner.connection.lock().clone()
    }

    pub(super) fn probing(&self) -> &AtomicBool {
        &self.inner.probing
    }

    /// For the probe: a fresh connection that answers `PING` within the
    /// operation timeout replaces the cached one and closes the breaker.
    pub(super) async fn reconnect_and_ping(&self) -> Result<(), OpError> {
        let timeout = self.inner.op_timeout;
        let fresh = tokio::time::timeout(timeout, async {
            let _one_at_a_time = self.inner.connecting.lock().await;
            let mut conn = self.inner.endpoint.connect(timeout).await?;
            let pong: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| OpError::Unavailable(e.into()))?;
            if pong != "PONG" {
                return Err(OpError::Unavailable("PING answered otherwise".into()));
            }
            *self.inner.connection.lock() = Some(conn);
            Ok(())
        })
        .await
        .unwrap_or(Err(OpError::Timeout));
        if fresh.is_ok() {
            self.inner.breaker.success();
        }
        fresh
    }

    /// Forgets a connection that failed, so the next operation connects
    /// afresh (and asks Sentinel or the Cluster where the data is now)
    /// instead of waiting out the connection's own reconnect backoff.
    pub(super) fn invalidate(&self) {
        *self.inner.connection.lock() = None;
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

    /// Runs a command and then `WAIT replicas wait_ms` in one round trip,
    /// like [`RedisConn::eval_and_wait`] for a plain command (no script
    /// cache to miss, so one `WAIT` at most).
    pub async fn query_and_wait<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        replicas: u32,
        wait_ms: u64,
    ) -> Result<(T, i64), OpError> {
        self.with_retry(|mut conn| async move {
            let mut pipe = redis::pipe();
            pipe.add_command(cmd.clone())
                .cmd("WAIT")
                .arg(replicas)
                .arg(wait_ms);
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// Runs a command within the operation timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, OpError> {
        self.with_retry(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a command on the primary that serves `slot` (on one server or
    /// Sentinel's primary: that server). For maintenance (`scan`).
    pub async fn query_slot<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        slot: u16,
    ) -> Result<T, OpError> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        self.with_retry(|conn| async move {
            match conn {
                Connection::Cluster(mut cluster) => {
                    let route = Route::new(slot, SlotAddr::Master);
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    let value = cluster.route_command(cmd.clone(), routing).await?;
                    Ok(T::from_redis_value(value)?)
                }
                mut single => cmd.query_async(&mut single).await,
            }
        })
        .await
    }

    /// One attempt, and one more on a fresh connection when the first failed
    /// at the connection level (e.g. the first command after a Redis
    /// restart). Every statehold script is safe to run twice: loads and
    /// releases are idempotent, and a commit whose reply was lost is
    /// recognised when sent again (the record names the turn that last
    /// wrote it, `commit.lua`) and answered as the first run was.
    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, OpError>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let breaker = &self.inner.breaker;
        if breaker.is_open() {
            self.probe_until_back();
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
            Err(_) => {
                breaker.failure();
                self.probe_until_back();
            }
        }
        result
    }

    async fn attempt_twice<T, F, Fut>(&self, op: F) -> Result<T, OpError>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // Bounded by the caller's deadline (`with_retry`), connect included.
        for attempt in 0..2 {
            let conn = self.connection().await?;
            match op(conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let connection_level = e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_unrecoverable_error();
                    if !connection_level && !is_unavailable_reply(&e) {
                        // Redis answered with an error (e.g. a script error).
                        return Err(OpError::Reply(e));
                    }
                    self.invalidate();
                    if attempt == 1 {
                        return Err(OpError::Unavailable(e.into()));
                    }
                }
            }
        }
        Err(OpError::Unavailable("unreachable".into()))
    }
}
