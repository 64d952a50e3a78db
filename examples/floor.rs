//! The floor under statehold's cost: a proxy that does nothing but the I/O a
//! request must do, so its CPU per request is what any implementation of the
//! same protocol pays before its own work. With `--redis-trips 0` it is a
//! bare hyper passthrough; with `2` it adds the two Redis round trips of a
//! stateful request (take the turn with the read, commit with the release),
//! as bare `GET` and `SET` on pooled connections, no client library, or
//! with `--redis-rs` through redis-rs's `ConnectionManager` (what statehold
//! uses), which isolates the client library's own cost. With `1` it makes
//! only the `SET` after the bot's answer: the one wait that no design which
//! acknowledges an answer only once its snapshot is stored can avoid.
//!
//!   floor --listen ADDR --upstream URL [--redis ADDR] [--redis-trips N] [--redis-rs]
//!
//! `scripts/bench.sh` runs all three beside statehold, in the same rounds, and
//! prints their ratios as the first line of its targets table.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Upstream = Client<HttpConnector, Full<Bytes>>;

struct Floor {
    upstream: Upstream,
    base: String,
    redis: Option<SocketAddr>,
    trips: usize,
    idle: Mutex<Vec<TcpStream>>,
    client: Option<redis::aio::ConnectionManager>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen: SocketAddr = arg(&args, "--listen").ok_or("--listen")?.parse()?;
    let base = arg(&args, "--upstream").ok_or("--upstream")?;
    let redis = arg(&args, "--redis").map(|a| a.parse()).transpose()?;
    let trips = arg(&args, "--redis-trips").map_or(Ok(0), |n| n.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let library = args.iter().any(|a| a == "--redis-rs");
    runtime.block_on(async move {
        let client = match (library, redis) {
            (true, Some(addr)) => {
                let client = redis::Client::open(format!("redis://{addr}/0"))?;
                Some(redis::aio::ConnectionManager::new(client).await?)
            }
            _ => None,
        };
        let floor = Arc::new(Floor {
            upstream: Client::builder(TokioExecutor::new()).build_http(),
            base,
            redis,
            trips,
            idle: Mutex::new(Vec::new()),
            client,
        });
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let floor = floor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| serve(floor.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn serve(
    floor: Arc<Floor>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let uri = format!("{}{}", floor.base, req.uri().path());
    let body = req.into_body().collect().await?.to_bytes();
    if floor.trips >= 2 {
        floor.read().await?;
    }
    let forward = Request::post(uri).body(Full::new(body))?;
    let answer = floor.upstream.request(forward).await?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    if floor.trips >= 1 {
        floor.write().await?;
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

impl Floor {
    async fn read(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(client) = &self.client {
            let mut client = client.clone();
            let get = redis::cmd("GET").arg("floor").clone();
            get.query_async::<Option<String>>(&mut client).await?;
            return Ok(());
        }
        Ok(self
            .round_trip(b"*2\r\n$3\r\nGET\r\n$5\r\nfloor\r\n")
            .await?)
    }

    async fn write(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(client) = &self.client {
            let mut client = client.clone();
            let set = redis::cmd("SET").arg("floor").arg(1).clone();
            set.query_async::<()>(&mut client).await?;
            return Ok(());
        }
        Ok(self
            .round_trip(b"*3\r\n$3\r\nSET\r\n$5\r\nfloor\r\n$1\r\n1\r\n")
            .await?)
    }

    /// One command and its whole reply (`+OK`, `$-1` or a short bulk string).
    async fn round_trip(&self, command: &[u8]) -> std::io::Result<()> {
        let idle = self.idle.lock().map(|mut idle| idle.pop()).ok().flatten();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let addr = self.redis.ok_or(std::io::ErrorKind::NotConnected)?;
                let conn = TcpStream::connect(addr).await?;
                conn.set_nodelay(true)?;
                conn
            }
        };
        conn.write_all(command).await?;
        let (mut reply, mut len) = ([0u8; 64], 0);
        while !whole(&reply[..len]) {
            let n = conn.read(&mut reply[len..]).await?;
            if n == 0 || len + n == reply.len() {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            len += n;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Ok(())
    }
}

/// A reply ends with CRLF; a bulk string's (`$N`, N >= 0) with its second.
fn whole(reply: &[u8]) -> bool {
    let lines = reply.windows(2).filter(|w| w == b"\r\n").count();
    let bulk = reply.first() == Some(&b'$') && reply.get(1) != Some(&b'-');
    reply.ends_with(b"\r\n") && lines >= if bulk { 2 } else { 1 }
}
