//! Wiring: builds the backend, upstream client and pipeline from a
//! validated config, serves on listeners bound by the caller ([`run`]) or
//! by [`serve`], runs the background purge and write-back, and shuts
//! everything down in order when asked.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::admin::Admin;
use crate::backend::audit_log::AuditLog;
use crate::backend::embedded::{EmbeddedBackend, OpenError};
use crate::backend::fallback::PlaintextFallback;
use crate::backend::private::Private;
use crate::backend::redis::{Access, RedisBackend, RedisConn, Timings, Topology};
use crate::backend::{Backend, Lifecycle};
use crate::config::{BackendKind, Config};
use crate::metrics::Metrics;
use crate::pipeline::route::Routes;
use crate::pipeline::Pipeline;
use crate::server::{self, ServerSettings};
use crate::services::{tasks, Services};
use crate::upstream::Upstream;

/// Why `serve` could not start. Each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A configured value that cannot work (exit status 2, like a bad config).
    #[error("{0}")]
    Config(crate::error::Cause),
    #[error("{0}")]
    Store(crate::error::Cause),
    // The cause is the error's source: printed once, by the chain.
    #[error("cannot listen on {addr} ({key})")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    #[error("upstream.url: {0}")]
    Upstream(#[from] crate::upstream::TargetError),
    #[error(transparent)]
    Route(#[from] crate::pipeline::route::RouteError),
}

/// The two sockets statehold serves on. Bound by [`Listeners::bind`] from
/// the config, or by the caller (tests bind port 0 and read the address).
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds `server.listen` and `admin.listen`.
    pub async fn bind(config: &Config) -> Result<Listeners, StartupError> {
        let bind = |key: &'static str, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartupError::Bind { key, addr, source })
        };
        Ok(Listeners {
            proxy: bind("server.listen", config.server.listen).await?,
            admin: bind("admin.listen", config.admin.listen).await?,
        })
    }
}

/// Binds the configured listeners and runs until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
    let listeners = Listeners::bind(&config).await?;
    run(listeners, config, shutdown).await
}

/// Runs statehold on `listeners` until `shutdown` resolves: the one entry
/// point of the binary and of in-process tests. Returns once in-flight
/// requests finished (or the grace period ran out).
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    // Every backend is wrapped: hashed keys and sealed values when
    // configured, a pass-through when not.
    let privacy = Arc::new(
        config
            .privacy()
            .map_err(|e| StartupError::Config(e.into()))?,
    );
    match config.store.backend {
        BackendKind::Embedded => {
            let store = AuditLog::new(open_embedded(&config)?, config.audit.log);
            let backend = Private::new(store, privacy);
            run_with(listeners, config, backend, shutdown).await
        }
        BackendKind::Redis => {
            let store = AuditLog::new(connect_redis(&config).await?, config.audit.log);
            let backend = Private::new(store, privacy);
            // Replicas of one store share their keys: exit 2 otherwise.
            backend
                .key_marks_at_start()
                .await
                .map_err(|e| StartupError::Config(e.into()))?;
            run_with(listeners, config, backend, shutdown).await
        }
    }
}

/// [`run`] over a backend the caller built: in-process tests wrap the
/// embedded store ([`open_embedded`]) to make it fail in chosen ways. The
/// config's privacy settings wrap it as they wrap every backend.
pub async fn run_over<B: Backend>(
    listeners: Listeners,
    config: Config,
    backend: B,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    let privacy = Arc::new(
        config
            .privacy()
            .map_err(|e| StartupError::Config(e.into()))?,
    );
    let backend = Private::new(AuditLog::new(backend, config.audit.log), privacy);
    run_with(listeners, config, backend, shutdown).await
}

/// The embedded store at `store.path`, as `store.*` configures it.
pub fn open_embedded(config: &Config) -> Result<EmbeddedBackend, StartupError> {
    EmbeddedBackend::open(
        &config.store.path,
        config.retention(),
        config.store.dedupe_window,
        config.store.cache_bytes as usize,
    )
    .map_err(|e| match e {
        // The file cannot be created or opened where configured.
        OpenError::Dir { .. } => StartupError::Config(e.into()),
        OpenError::Db { .. } => StartupError::Store(e.into()),
    })
}

async fn connect_redis(config: &Config) -> Result<RedisBackend, StartupError> {
    let store = &config.store;
    let topology = match (&store.url, store.sentinel_master.as_deref()) {
        _ if !store.cluster.is_empty() => Topology::Cluster {
            nodes: &store.cluster,
        },
        (_, Some(master)) if !store.sentinels.is_empty() => Topology::Sentinel {
            sentinels: &store.sentinels,
            master,
        },
        (url, _) => Topology::Single {
            url: url.as_ref().map(|u| u.expose()).unwrap_or_default(),
        },
    };
    let access = Access {
        tls_ca: store.tls_ca.as_deref(),
        password: store.password.as_ref().map(|p| p.expose()),
        sentinel_password: store.sentinel_password.as_ref().map(|p| p.expose()),
    };
    let breaker = (store.breaker_failures.get(), store.breaker_cooldown);
    let conn = RedisConn::open(
        topology,
        access,
        store.op_timeout,
        &store.key_prefix,
        breaker,
    )
    .map_err(|e| StartupError::Store(e.into()))?;
    let timings = Timings {
        ttl: store.ttl,
        dedupe_window: store.dedupe_window,
        lease: store.lock_lease,
        max_wait: store.lock_wait,
        min_replica_acks: store.min_replica_acks,
    };
    let backend = RedisBackend::with_retention(conn, timings, &config.retention());
    let shown = config.redacted_store_url().unwrap_or_default();
    match backend.ping().await {
        Ok(()) => info!(url = %shown, "redis reachable"),
        Err(e) if store.require_at_startup => {
            return Err(StartupError::Store(
                format!(
                "store.url {shown}: unreachable at startup and store.require_at_startup = true: {e}"
            )
                .into(),
            ))
        }
        Err(e) => {
            warn!(url = %shown, error = %e, "redis unreachable at startup; serving per store.on_unavailable until it is back")
        }
    }
    Ok(backend)
}

async fn run_with<B: Backend>(
    listeners: Listeners,
    config: Config,
    backend: Private<B>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    let backend = PlaintextFallback::new(backend);
    let tls = match &config.server.tls {
        Some(tls) => Some(server::tls_acceptor(&tls.cert, &tls.key)?),
        None => None,
    };
    let svc = Arc::new(build_services(&config, backend)?);
    let pipeline = Arc::new(Pipeline::new(&config, Arc::clone(&svc))?);
    let admin = Arc::new(
        Admin::new(
            Arc::clone(&pipeline),
            config.admin.token.clone(),
            config.store.max_state_bytes.get() as usize,
            config.store.lock_wait,
        )
        .with_lifetimes(config.lifetimes()),
    );
    announce(&config, &listeners);
    let background = Background::spawn(&svc, &admin, listeners.admin, &config);
    let settings = ServerSettings {
        max_connections: config.server.max_connections.get(),
        header_timeout: config.server.header_timeout,
        shutdown_grace: config.server.shutdown_grace,
        tls,
    };
    let proxy_shutdown = {
        let admin = Arc::clone(&admin);
        let drain_delay = config.server.drain_delay;
        async move {
            shutdown.await;
            // Not ready first, so load balancers stop sending before we stop accepting.
            admin.draining.store(true, Ordering::Relaxed);
            info!(?drain_delay, "shutdown requested");
            // Keep serving while endpoints learn we are leaving.
            tokio::time::sleep(drain_delay).await;
        }
    };
    let proxy = Arc::clone(&pipeline);
    let drained = server::run(listeners.proxy, proxy, settings, proxy_shutdown).await;
    // Deferred turns are in flight too: their reports still reach the
    // admin listener, within the same grace.
    let settled = pipeline.settle_deferred(config.server.shutdown_grace).await;
    // Hand released turns over before exiting, so other replicas do not
    // wait out our leases.
    svc.backend.quiesce(Duration::from_secs(2)).await;
    background.stop().await;
    tasks::last_write_back(&svc).await;
    if drained && settled {
        info!("stopped cleanly");
    }
    Ok(())
}

/// The upstream client, metrics and the spool over `backend`.
fn build_services<B: Backend>(
    config: &Config,
    backend: PlaintextFallback<B>,
) -> Result<Services<PlaintextFallback<B>>, StartupError> {
    let upstream = Upstream::new(&config.upstream.url, &config.upstream.options())?;
    let metrics = Arc::new(Metrics::new(Routes::labels(config)));
    Services::new(config, backend, upstream, metrics).map_err(|e| StartupError::Config(e.into()))
}

/// The startup log line, with the addresses actually bound (a config may
/// say port 0).
fn announce(config: &Config, listeners: &Listeners) {
    for warning in config.warnings() {
        warn!("{warning}");
    }
    for o in config.overrides() {
        info!(key = %o.key, var = %o.var, "config key set by the environment, over the file");
    }
    let bound = |l: &TcpListener, configured| l.local_addr().unwrap_or(configured);
    info!(
        listen = %bound(&listeners.proxy, config.server.listen),
        admin = %bound(&listeners.admin, config.admin.listen),
        upstream = %config.upstream.url,
        backend = ?config.store.backend,
        routes = config.routes.len(),
        tls = config.server.tls.is_some(),
        "statehold serving"
    );
}

/// The tasks beside the proxy listener: the admin listener, the spool's
/// write-back and the purge. Each returns once told to stop.
struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    fn spawn<B: Backend>(
        svc: &Arc<Services<PlaintextFallback<B>>>,
        admin: &Arc<Admin<B>>,
        admin_listener: TcpListener,
        config: &Config,
    ) -> Background {
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // An error means the sender is gone: stop then too.
            rx.wait_for(|s| *s).await.ok();
        };
        let admin_task = Arc::clone(admin).run(admin_listener, stopped(stop_rx.clone()));
        let spool_task = tasks::write_back_loop(Arc::clone(svc), stopped(stop_rx.clone()));
        let every = config.store.purge_interval;
        let purge_task = tasks::purge_loop(Arc::clone(svc), every, stopped(stop_rx));
        let tasks = vec![
            ("admin listener", tokio::spawn(admin_task)),
            ("spool write-back loop", tokio::spawn(spool_task)),
            ("purge loop", tokio::spawn(purge_task)),
        ];
        Background { stop, tasks }
    }

    /// Stops every task and waits for it; a panicked one is logged.
    async fn stop(self) {
        if self.stop.send(true).is_err() {
            // Every task holds a receiver until it returns: all are done.
            debug!("background tasks already stopped");
        }
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                error!(task = name, error = %e, "background task failed");
            }
        }
    }
}
