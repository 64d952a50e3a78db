//! The webhook listener: accept loop, optional TLS, connection cap, header
//! read deadline, and graceful shutdown: `run(listener, pipeline, shutdown)`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::backend::Backend;
use crate::framing::{Ambiguous, HeadScanner};
use crate::outcome::Outcome;
use crate::pipeline::{ConnInfo, Pipeline};

/// Listener settings from `[server]`.
#[derive(Clone)]
pub struct ServerSettings {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tls: Option<TlsAcceptor>,
}

/// Serves until `shutdown` resolves, then stops accepting and gives
/// in-flight requests `shutdown_grace` to finish. Returns whether they all
/// finished in time.
pub async fn run<B: Backend>(
    listener: TcpListener,
    pipeline: Arc<Pipeline<B>>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let shedders = Arc::new(Semaphore::new(MAX_SHEDDING));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over the cap: shed load with a quick 503 rather than queue without
        // bound.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            over_capacity(
                stream,
                peer,
                &pipeline.services().metrics,
                &settings,
                &shedders,
            );
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let pipeline = Arc::clone(&pipeline);
        let settings = settings.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            serve_connection(stream, peer, pipeline, &settings, watcher).await;
            drop(permit);
        });
    }
    drop(listener);
    info!("listener closed, draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => true,
        _ = tokio::time::sleep(settings.shutdown_grace) => {
            warn!(grace = ?settings.shutdown_grace, "requests still in flight after the grace period");
            false
        }
    }
}

/// A connection past `server.max_connections`: counted, answered 503 (the
/// shedding itself is capped too; past that, and on TLS, plain close).
fn over_capacity(
    stream: TcpStream,
    peer: SocketAddr,
    metrics: &crate::metrics::Metrics,
    settings: &ServerSettings,
    shedders: &Arc<Semaphore>,
) {
    metrics.request(
        metrics.unmatched(),
        Outcome::Overloaded,
        503,
        Duration::ZERO,
    );
    match (
        settings.tls.is_none(),
        Arc::clone(shedders).try_acquire_owned(),
    ) {
        (true, Ok(shedder)) => {
            tokio::spawn(async move {
                shed(stream).await;
                drop(shedder);
            });
        }
        _ => drop(stream),
    }
    debug!(%peer, "connection limit reached, shedding");
}

/// hyper's per-connection read buffer, at most.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

/// Connections being answered 503 at once, at most.
const MAX_SHEDDING: usize = 256;

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 65\r\n\r\n{\"error\":\"overloaded\",\"message\":\"server.max_connections reached\"}";

/// Answers 503 without reading the request, then lets the client finish
/// sending (so closing does not reset the connection under its answer).
async fn shed(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shed = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(OVERLOADED).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 65_536 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(shed, Ok(Ok(()))) {
        // The client left or stalled: the 503 was best effort.
        debug!("overload answer not fully delivered");
    }
}

async fn serve_connection<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    pipeline: Arc<Pipeline<B>>,
    settings: &ServerSettings,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tls = settings.tls.is_some();
    let info = ConnInfo { peer, tls };
    let make_service = |verdict: Ambiguous| {
        let service = tower::service_fn(move |req| {
            let pipeline = Arc::clone(&pipeline);
            let flaw = verdict.next_flaw();
            async move {
                if let Some(flaw) = flaw {
                    return Ok::<_, std::convert::Infallible>(
                        pipeline.reject_ambiguous_framing(flaw),
                    );
                }
                Ok(pipeline.handle(req, info).await)
            }
        });
        TowerToHyperService::new(service)
    };
    let builder = http1_builder(settings);
    let result = match &settings.tls {
        None => {
            let stream = HeadScanner::new(stream);
            let service = make_service(stream.verdict());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn).await
        }
        Some(acceptor) => {
            let Some(tls_stream) = handshake(acceptor, stream, peer, settings).await else {
                return;
            };
            let stream = HeadScanner::new(tls_stream);
            let service = make_service(stream.verdict());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn).await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn http1_builder(settings: &ServerSettings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        // hyper's default read buffer grows to ~400 KB per connection; 64 KB
        // bounds what a slow upload holds inside hyper (heads included,
        // the same bound the framing scanner follows).
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    builder
}

/// The TLS handshake, within `server.header_timeout`.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    settings: &ServerSettings,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(tls_stream),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Why the TLS files cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: {source}")]
    Pem {
        key: &'static str,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("server.tls.cert {0}: no certificate found")]
    NoCertificate(String),
    #[error("server.tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the TLS acceptor from PEM files (rustls with the ring provider).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |key: &'static str, path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| TlsError::Pem { key, path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem("server.tls.cert", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("server.tls.cert", cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem("server.tls.key", key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
