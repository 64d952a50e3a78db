//! Where the Redis backend's data lives and how to reach it: one server
//! (`store.url`), the primary that Sentinel names (`store.sentinels`), or
//! a Redis Cluster (`store.cluster`). Owns building the clients, making a
//! connection, and the node the hand-over notices are heard on.
//!
//! With Sentinel, the primary is asked of every Sentinel (`sentinel.rs`)
//! on each connect, and the connection made there never reconnects to it
//! by itself: a dropped connection is forgotten (`conn.rs`) and the
//! Sentinels are asked again.
//!
//! A Cluster connection (redis-rs `cluster-async`) routes each script by
//! its first key's slot (every key of a conversation shares one hash tag,
//! so one slot) and follows `MOVED`/`ASK` during a reshard. Hand-over
//! notices use plain `PUBLISH`, which a Cluster forwards to every node, so
//! a subscription on any one node hears them all; statehold subscribes on
//! one seed at a time and moves to the next when it fails. (Sharded pub/sub
//! would need one subscription per conversation's slot; the notices are
//! sent only when a request waits, so the broadcast costs little.)

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisFuture, TlsCertificates, Value,
};

use super::error::{ConnError, OpError};

/// Which Redis deployment holds the data.
#[derive(Clone, Copy, Debug)]
pub enum Topology<'a> {
    /// One server (or an endpoint that always reaches the primary).
    Single { url: &'a str },
    /// The primary the Sentinels at `host:port` name for `master`.
    Sentinel {
        sentinels: &'a [String],
        master: &'a str,
    },
    /// A Redis Cluster reached through these seed node URLs.
    Cluster { nodes: &'a [String] },
}

/// How to authenticate and encrypt, for every topology.
#[derive(Clone, Copy, Debug, Default)]
pub struct Access<'a> {
    /// PEM CA file for `rediss://` (default: the system's roots).
    pub tls_ca: Option<&'a Path>,
    /// The data nodes' password (Sentinel's primary, Cluster's nodes);
    /// overrides one in a URL.
    pub password: Option<&'a str>,
    /// The Sentinels' own password (`requirepass` in sentinel.conf).
    pub sentinel_password: Option<&'a str>,
}

pub(super) enum Endpoint {
    Single(Client),
    /// Asked on every (re)connect, so a failover is followed on the first
    /// error it causes (a dropped connection, `READONLY`), or earlier when
    /// a Sentinel announces it (`failover.rs`).
    Sentinel {
        /// One client per Sentinel: asked where the primary is, and
        /// listened on for `+switch-master`.
        sentinels: Vec<Client>,
        master: String,
        /// The data nodes' password.
        password: Option<String>,
    },
    Cluster {
        /// Boxed: far larger than the other variants.
        client: Box<ClusterClient>,
        /// One client per seed, for the hand-over subscription.
        seeds: Vec<Client>,
        next_seed: AtomicUsize,
    },
}

/// A live connection: multiplexed, cheap to clone.
#[derive(Clone)]
pub(super) enum Connection {
    /// Reconnects to the one server by itself.
    Single(ConnectionManager),
    /// To the primary the Sentinels named; never reconnects by itself.
    Primary(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Primary(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Primary(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Primary(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl Endpoint {
    pub fn open(topology: Topology<'_>, access: Access<'_>) -> Result<Endpoint, ConnError> {
        let certs = certificates(access.tls_ca)?;
        match topology {
            Topology::Single { url } => {
                let info = with_password(url.into_connection_info(), access.password)
                    .map_err(ConnError::Url)?;
                single_client(info, certs).map(Endpoint::Single)
            }
            Topology::Sentinel { sentinels, master } => Self::sentinel(sentinels, master, access),
            Topology::Cluster { nodes } => Self::cluster(nodes, access, certs),
        }
    }

    fn sentinel(
        sentinels: &[String],
        master: &str,
        access: Access<'_>,
    ) -> Result<Endpoint, ConnError> {
        let mut clients = Vec::with_capacity(sentinels.len());
        for addr in sentinels {
            let info = format!("redis://{addr}").into_connection_info();
            let info = with_password(info, access.sentinel_password).map_err(ConnError::Url)?;
            clients.push(single_client(info, None)?);
        }
        Ok(Endpoint::Sentinel {
            sentinels: clients,
            master: master.to_string(),
            password: access.password.map(str::to_string),
        })
    }

    fn cluster(
        nodes: &[String],
        access: Access<'_>,
        certs: Option<TlsCertificates>,
    ) -> Result<Endpoint, ConnError> {
        let mut infos = Vec::with_capacity(nodes.len());
        for url in nodes {
            infos.push(
                with_password(url.as_str().into_connection_info(), access.password)
                    .map_err(ConnError::Url)?,
            );
        }
        let seeds = infos
            .iter()
            .map(|info| single_client(info.clone(), certs.clone()))
            .collect::<Result<_, _>>()?;
        // Short waits between the client's own retries: a slot in the
        // middle of a move answers TRYAGAIN for milliseconds, and the
        // default first wait (1.28 s) is longer than any operation's
        // deadline. The deadline bounds the retries.
        let mut builder = ClusterClient::builder(infos)
            .retries(30)
            .min_retry_wait(2)
            .max_retry_wait(100)
            .retry_wait_formula(5, 2);
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(ConnError::Url)?;
        Ok(Endpoint::Cluster {
            client: Box::new(client),
            seeds,
            next_seed: AtomicUsize::new(0),
        })
    }

    /// Connects. No timeouts of its own: the caller's one deadline covers
    /// the connect and every command.
    pub async fn connect(&self, op_timeout: Duration) -> Result<Connection, OpError> {
        let unavailable = |e: redis::RedisError| OpError::Unavailable(e.into());
        match self {
            Endpoint::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map(Connection::Cluster)
                .map_err(unavailable),
            Endpoint::Sentinel { .. } => {
                let config = AsyncConnectionConfig::new().set_response_timeout(None);
                let primary = self.node_client(op_timeout).await?;
                let mut conn = primary
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(unavailable)?;
                super::sentinel::confirm_primary(&mut conn).await?;
                Ok(Connection::Primary(conn))
            }
            Endpoint::Single(_) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                self.node_client(op_timeout)
                    .await?
                    .get_connection_manager_with_config(config)
                    .await
                    .map(Connection::Single)
                    .map_err(unavailable)
            }
        }
    }

    /// A client for one node: the server, the current primary (asked of
    /// Sentinel), or the next Cluster seed in turn (each call moves on, so
    /// a caller that failed on one seed tries the next).
    pub async fn node_client(&self, op_timeout: Duration) -> Result<Client, OpError> {
        match self {
            Endpoint::Single(client) => Ok(client.clone()),
            // Bounded: the hand-over listener asks outside any operation's
            // deadline.
            Endpoint::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let ask = super::sentinel::newest_primary(sentinels, master, op_timeout);
                let (host, port) = tokio::time::timeout(op_timeout, ask)
                    .await
                    .map_err(|_| OpError::Timeout)??;
                let info = ConnectionAddr::Tcp(host, port).into_connection_info();
                with_password(info, password.as_deref())
                    .and_then(Client::open)
                    .map_err(|e| OpError::Unavailable(e.into()))
            }
            Endpoint::Cluster {
                seeds, next_seed, ..
            } => {
                let at = next_seed.fetch_add(1, Ordering::Relaxed);
                seeds
                    .get(at % seeds.len().max(1))
                    .cloned()
                    .ok_or_else(|| OpError::Unavailable("store.cluster lists no node".into()))
            }
        }
    }
}

impl Endpoint {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Endpoint::Cluster { .. })
    }

    /// The Sentinels to hear failovers announced on, and the primary's name.
    pub fn sentinels(&self) -> Option<(&[Client], &str)> {
        match self {
            Endpoint::Sentinel {
                sentinels, master, ..
            } => Some((sentinels, master)),
            _ => None,
        }
    }
}

fn certificates(tls_ca: Option<&Path>) -> Result<Option<TlsCertificates>, ConnError> {
    let Some(path) = tls_ca else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|source| ConnError::Ca {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

fn single_client(
    info: ConnectionInfo,
    certs: Option<TlsCertificates>,
) -> Result<Client, ConnError> {
    match certs {
        Some(certs) => Client::build_with_tls(info, certs),
        None => Client::open(info),
    }
    .map_err(ConnError::Url)
}

/// `info` with `password` in place of the URL's, when one is configured.
fn with_password(
    info: redis::RedisResult<ConnectionInfo>,
    password: Option<&str>,
) -> redis::RedisResult<ConnectionInfo> {
    let info = info?;
    Ok(match password {
        Some(password) => {
            let settings = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}
