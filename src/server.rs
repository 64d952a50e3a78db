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
        // bound. The shedding itself is capped too; past that, plain close.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            pipeline.metrics().request(
                pipeline.metrics().unmatched(),
                Outcome::Overloaded,
                503,
                Duration::ZERO,
            );
            match (
                settings.tls.is_none(),
                Arc::clone(&shedders).try_acquire_owned(),
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

/// hyper's per-connection read buffer, at most.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

/// Connections being answered 503 at once, at most.
const MAX_SHEDDING: usize = 256;

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 65\r\n\r\n{\"error\":\"overloaded\",\"message\":\"server.max_connections reached\"}";

/// Answers 503 without reading the request, then lets the client finish
/// sending (so closing does not reset the connection under its answer).
async fn shed(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
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
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        // hyper's default read buffer grows to ~400 KB per connection; 64 KB
        // bounds what a slow upload holds inside hyper (heads included,
        // the same bound the framing scanner follows).
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    let result = match &settings.tls {
        None => {
            let stream = HeadScanner::new(stream);
            let service = make_service(stream.verdict());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn).await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    let stream = HeadScanner::new(tls_stream);
                    let service = make_service(stream.verdict());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Builds the TLS acceptor from PEM files (rustls with the ring provider).
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("server.tls.cert {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls.cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert {}: no certificate found",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("server.tls.key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: {e}"))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
