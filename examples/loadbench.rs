//! End-to-end load benchmark: statehold against a direct connection and
//! nginx, in one invocation on one machine. Run it with `scripts/bench.sh`
//! (which builds in release mode and installs nginx and redis-server when
//! missing), or `cargo run --release --example loadbench -- [--quick]`.
//!
//! It starts a fast bot (a minimal hyper server answering with a ~500-byte
//! snapshot), a real `redis-server`, nginx as a plain reverse proxy, and
//! statehold in three configurations: an unmatched path (pure passthrough),
//! the embedded store, and Redis with dedupe and turn-taking. The load
//! generator is open-loop: request `i` is due at `start + i / rate`, and its
//! latency is measured from that due time, so a stall shows up in every
//! request it delays (no coordinated omission). Bodies are ~1 KB Telegram
//! updates spread over 10,000 conversations, each with a fresh update id.
//!
//! Printed: added latency over direct at a fixed rate (p50, p90, p99,
//! p99.9), saturation throughput relative to nginx, CPU seconds per 1000
//! requests, and peak RSS; then p99 with 1,000 and 1,000,000 stored
//! conversations.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TELEGRAM: &str = r#"{"update_id":UPDATE,"message":{"date":1441645532,"chat":{"id":CHAT,"type":"private","first_name":"Test","last_name":"Testov","username":"Test"},"message_id":1365,"from":{"id":CHAT,"is_bot":false,"first_name":"Test","last_name":"Testov","username":"Test","language_code":"en"},"text":"I would like to book a table for four people tomorrow evening at eight, preferably by the window, and please note that one of us is vegetarian and another has a nut allergy, so the kitchen should be told in advance. Also, could you confirm whether there is parking nearby and if the restaurant is wheelchair accessible? Thank you very much for your help with this booking, it is for a birthday party.","entities":[{"offset":0,"length":1,"type":"bold"}]}}"#;

fn snapshot() -> String {
    let state = serde_json::json!({
        "step": "payment", "name": "Sheena Nelson", "email": "sheena@example.com",
        "items": [{"sku": "A-1001", "qty": 2, "price": 1999}, {"sku": "B-2002", "qty": 1, "price": 4999}],
        "address": {"street": "1 Infinite Loop", "city": "Cupertino", "zip": "95014", "country": "US"},
        "notes": "Leave at the front desk. Call on arrival. Fragile items inside, handle with care.",
        "applied": [10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008, 10009, 10010, 10011]
    });
    state.to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bot") {
        let listen: SocketAddr = args
            .get(2)
            .and_then(|a| a.parse().ok())
            .expect("bot --listen ADDR");
        // `--defer-to ADMIN`: answer first, report the snapshot late.
        let defer_to: Option<SocketAddr> = args.get(4).and_then(|a| a.parse().ok());
        run_bot(listen, defer_to);
        return;
    }
    // `drive URL SECS [RATE]`: only the load on one URL, at saturation or
    // at RATE requests/s (to profile a process under it, e.g. `perf record
    // -p PID`).
    if args.first().map(String::as_str) == Some("drive") {
        // Update ids from the clock: a second `drive` against the same
        // statehold must not be answered from the first one's dedupe records.
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        UPDATE_ID.store(micros, Ordering::Relaxed);
        let url = args.get(1).expect("drive URL SECS");
        let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
        if let Some(rate) = args.get(3).and_then(|s| s.parse::<u64>().ok()) {
            fixed_rate(url, rate, secs, 10_000);
            println!("{rate} rps");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        println!("{:.0} rps", saturation(&rt, url, 64, secs));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let result = if args.iter().any(|a| a == "--redis-ceiling") {
        redis_ceiling_only(quick)
    } else {
        orchestrate(quick)
    };
    if let Err(e) = result {
        eprintln!("loadbench: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ the bot

/// The fast bot; with `defer_to` (statehold's admin listener) it answers
/// `X-Statehold-Deferred: 1` at once and posts the snapshot as the late
/// report (`POST /v1/turns/<token>`) right after, as a bot that answers
/// first and works afterwards does.
fn run_bot(listen: SocketAddr, defer_to: Option<SocketAddr>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        let header = http::HeaderValue::from_str(&snapshot()).expect("header");
        let report = Bytes::from(format!("{{\"state\":{}}}", snapshot()));
        let reporter: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let reply = Bytes::from_static(br#"{"method":"sendMessage","chat_id":1,"text":"ok"}"#);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (header, reply) = (header.clone(), reply.clone());
            let (report, reporter) = (report.clone(), reporter.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (header, reply) = (header.clone(), reply.clone());
                        let (report, reporter) = (report.clone(), reporter.clone());
                        async move {
                            let token = req.headers().get("x-statehold-turn").cloned();
                            let _ = req.into_body().collect().await;
                            let mut resp = http::Response::new(Full::new(reply));
                            if let (Some(admin), Some(token)) = (defer_to, token) {
                                resp.headers_mut().insert(
                                    "x-statehold-deferred",
                                    http::HeaderValue::from_static("1"),
                                );
                                let uri = format!(
                                    "http://{admin}/v1/turns/{}",
                                    token.to_str().unwrap_or_default()
                                );
                                tokio::spawn(async move {
                                    let late = http::Request::post(uri)
                                        .header("content-type", "application/json")
                                        .body(Full::new(report))
                                        .expect("report");
                                    if let Ok(r) = reporter.request(late).await {
                                        let _ = r.into_body().collect().await;
                                    }
                                });
                                return Ok::<_, std::convert::Infallible>(resp);
                            }
                            resp.headers_mut().insert("x-statehold-state", header);
                            resp.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

// ------------------------------------------------------------------ processes

struct Proc {
    child: Child,
}

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers), SIGKILL after 2 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn wait_for_port(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not start listening on {port}"))
}

fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Proc, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    Ok(Proc { child })
}

/// utime + stime of a process and its children threads, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after "(comm)": state is [0]; utime is field 14 overall = [11], stime [12].
    (get(11) + get(12)) / ticks
}

/// Context switches (voluntary and not) of every thread of a process so
/// far: each is a thread parked and woken, the cost the scheduler adds to
/// a request on top of its CPU.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// CPU seconds and context switches of a target's processes so far.
fn work(pids: &[u32]) -> (f64, u64) {
    (
        pids.iter().map(|&p| cpu_seconds(p)).sum(),
        pids.iter().map(|&p| context_switches(p)).sum(),
    )
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A process and its direct children (nginx's workers).
fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let after = stat.rsplit(')').next().unwrap_or("");
            if after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                == Some(pid)
            {
                pids.push(child);
            }
        }
    }
    pids
}

// ------------------------------------------------------------------ load

struct Latencies {
    micros: Vec<u64>,
    errors: u64,
}

impl Latencies {
    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 * p).ceil() as usize).clamp(1, self.micros.len()) - 1;
        self.micros[i] as f64 / 1000.0
    }
}

static UPDATE_ID: AtomicU64 = AtomicU64::new(1);

fn body(conversations: u64) -> Bytes {
    let id = UPDATE_ID.fetch_add(1, Ordering::Relaxed);
    // Spread over the conversations with a multiplicative hash.
    let chat = (id.wrapping_mul(2_654_435_761) % conversations) + 1;
    Bytes::from(
        TELEGRAM
            .replace("UPDATE", &id.to_string())
            .replace("CHAT", &chat.to_string()),
    )
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

async fn send(client: &HttpClient, url: &str, body: Bytes) -> bool {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("request");
    match client.request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Open loop: `rate` requests per second for `secs`, latency from due time.
/// A dedicated OS thread paces the sends (sleeping to each due time has
/// ~0.1 ms resolution; tokio's timer wheel has 1 ms) and hands each one to a
/// single-threaded runtime on another thread, which does all the I/O.
fn fixed_rate(url: &str, rate: u64, secs: u64, conversations: u64) -> Latencies {
    let n = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    // The first 5% warm connections and caches up; they are sent but not counted.
    let warm = n / 20;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant, Bytes)>();
    let url = url.to_string();
    let io = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = client();
            for _ in 0..20 {
                send(&client, &url, body(conversations)).await;
            }
            let errors = Arc::new(AtomicU64::new(0));
            let results = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n as usize)));
            let mut tasks = Vec::with_capacity(n as usize);
            while let Some((i, due, b)) = rx.recv().await {
                let (client, url, results, errors) =
                    (client.clone(), url.clone(), results.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    let ok = send(&client, &url, b).await;
                    let took = due.elapsed().as_micros() as u64;
                    if i < warm {
                        return;
                    }
                    if ok {
                        results.lock().expect("results").push(took);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let micros = std::mem::take(&mut *results.lock().expect("results"));
            (micros, errors.load(Ordering::Relaxed))
        })
    });
    // Give the I/O thread time to warm its connections.
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    for i in 0..n {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let _ = tx.send((i, due, body(conversations)));
    }
    let paced = start.elapsed();
    drop(tx);
    let (mut micros, errors) = io.join().expect("io thread");
    eprintln!(
        "    paced {n} requests in {:.2} s (due span {:.2} s)",
        paced.as_secs_f64(),
        (interval * n as u32).as_secs_f64()
    );
    micros.sort_unstable();
    Latencies { micros, errors }
}

/// Closed loop with `concurrency` connections: completed requests per second.
fn saturation(rt: &tokio::runtime::Runtime, url: &str, concurrency: usize, secs: u64) -> f64 {
    rt.block_on(async {
        let client = client();
        let done = Arc::new(AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, done) = (client.clone(), url.to_string(), done.clone());
                tokio::spawn(async move {
                    while tokio::time::Instant::now() < deadline {
                        if send(&client, &url, body(10_000)).await {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    })
}

// ------------------------------------------------------------------ setup

struct Target {
    name: String,
    url: String,
    /// Processes whose CPU and memory count for this target.
    pids: Vec<u32>,
    /// The redis-server this target uses (pid, port): its own CPU per
    /// request is measured apart (it is the fleet's shared ceiling).
    redis: Option<(u32, u16)>,
}

/// Redis's work so far: its process CPU seconds, and from `INFO
/// commandstats` the scripts run (`EVALSHA`/`EVAL`) and the microseconds
/// spent in them (which include the commands they call; those are also
/// listed on their own, so only the scripts are summed).
fn redis_work(pid: u32, port: u16) -> (f64, u64, u64) {
    let stats = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .and_then(|c| c.get_connection())
        .and_then(|mut con| {
            redis::cmd("INFO")
                .arg("commandstats")
                .query::<String>(&mut con)
        })
        .unwrap_or_default();
    let (mut calls, mut usec) = (0u64, 0u64);
    for line in stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
    {
        for field in line.split([':', ',']) {
            if let Some(n) = field.strip_prefix("calls=") {
                calls += n.parse::<u64>().unwrap_or(0);
            } else if let Some(n) = field.strip_prefix("usec=") {
                usec += n.parse::<u64>().unwrap_or(0);
            }
        }
    }
    (cpu_seconds(pid), calls, usec)
}

/// A fixed key for the benchmark's private target (32 bytes, base64).
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn statehold_config(dir: &Path, name: &str, bot: u16, store: &str) -> (PathBuf, u16, u16) {
    let (listen, admin) = (free_port(), free_port());
    // LOADBENCH_SERVER: extra `[server]` lines (e.g. `worker_threads = 2`).
    let server = std::env::var("LOADBENCH_SERVER").unwrap_or_default();
    let text = format!(
        r#"[server]
listen = "127.0.0.1:{listen}"
{server}
[upstream]
url = "http://127.0.0.1:{bot}"
[store]
{store}
[[route]]
path = "/telegram"
namespace = "tg"
preset = "telegram"
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "warn"
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("config");
    (path, listen, admin)
}

fn orchestrate(quick: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = dir.path();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // STATEHOLD_BIN: measure another build (e.g. an older commit) with the
    // same generator.
    let statehold = std::env::var_os("STATEHOLD_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            exe.parent()
                .and_then(Path::parent)
                .map(|p| p.join("statehold"))
        })
        .filter(|p| p.exists())
        .ok_or("build the statehold binary first (cargo build --release)")?;
    let (rate, rounds, round_secs, sat_secs) = if quick {
        (1000, 2, 2, 3)
    } else {
        (1000, 5, 3, 6)
    };

    let bot_port = free_port();
    let bot = spawn(
        "bot",
        Command::new(&exe).args(["bot", "--listen", &format!("127.0.0.1:{bot_port}")]),
        &dir.join("bot.log"),
    )?;
    wait_for_port(bot_port, "bot")?;

    let (redis, redis_port) = start_redis(dir)?;

    let nginx_port = free_port();
    std::fs::create_dir_all(dir.join("nginx/logs")).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("nginx/nginx.conf"),
        format!(
            r#"worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path /tmp;
  upstream bot {{ server 127.0.0.1:{bot_port}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{nginx_port};
    location / {{
      proxy_pass http://bot;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#
        ),
    )
    .map_err(|e| e.to_string())?;
    let nginx = spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(dir.join("nginx"))
            .args(["-c", "nginx.conf", "-g", "daemon off;"]),
        &dir.join("nginx.log"),
    )?;
    wait_for_port(nginx_port, "nginx")?;
    let nginx_pid = nginx.child.id();

    let redis_pid = redis.child.id();
    let mut procs = vec![bot, redis, nginx];
    let mut start_build = |bin: &Path, name: &str, store: String, bot: u16| {
        let (config, port, admin) = statehold_config(dir, name, bot, &store);
        let p = spawn(
            name,
            Command::new(bin).arg("serve").arg("--config").arg(&config),
            &dir.join(format!("{name}.log")),
        )?;
        wait_for_port(port, name)?;
        let pid = p.child.id();
        procs.push(p);
        Ok::<_, String>((port, pid, admin))
    };
    let (pass_port, pass_pid, _) = start_build(
        &statehold,
        "sh-passthrough",
        format!("path = \"{}\"", dir.join("p.db").display()),
        bot_port,
    )?;
    let (emb_port, emb_pid, _) = start_build(
        &statehold,
        "sh-embedded",
        format!("path = \"{}\"", dir.join("e.db").display()),
        bot_port,
    )?;
    let (red_port, red_pid, _) = start_build(
        &statehold,
        "sh-redis",
        format!("backend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nkey_prefix = \"bench\""),
        bot_port,
    )?;

    // The same, private at rest: hashed key names, sealed values.
    let (priv_port, priv_pid, _) = start_build(
        &statehold,
        "sh-redis-private",
        format!(
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nkey_prefix = \"benchp\"\n\
             key_secret = \"{KEY}\"\nencryption = {{ keys = [{{ id = \"k1\", secret = \"{KEY}\" }}] }}"
        ),
        bot_port,
    )?;

    // The same, with 10 kept versions and the audit trail (issue 13).
    let (kept_port, kept_pid, _) = start_build(
        &statehold,
        "sh-redis-history-audit",
        format!(
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nkey_prefix = \"benchh\"\n\
             history = 10\n[audit]\nmax_events = 100000"
        ),
        bot_port,
    )?;

    // Redis, with a bot that answers first and reports late (issue 19):
    // the turn, `defer.lua`, the answer, then the late report's commit.
    let deferring_bot = free_port();
    let (def_port, def_pid, def_admin) = start_build(
        &statehold,
        "sh-redis-deferred",
        format!("backend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nkey_prefix = \"benchd\""),
        deferring_bot,
    )?;
    let bot = spawn(
        "deferring bot",
        Command::new(&exe).args([
            "bot",
            "--listen",
            &format!("127.0.0.1:{deferring_bot}"),
            "--defer-to",
            &format!("127.0.0.1:{def_admin}"),
        ]),
        &dir.join("deferring-bot.log"),
    )?;
    wait_for_port(deferring_bot, "deferring bot")?;
    let _deferring_bot = bot;

    // The protocol's floor (examples/floor.rs): a bare hyper proxy, and the
    // same with the commit's Redis round trip alone and with both round trips
    // a stateful request makes.
    let floor_bin = exe.with_file_name("floor");
    let (mut floors, mut floor_procs) = (Vec::new(), Vec::new());
    for (trips, name) in [
        ("0", "floor, bare hyper proxy"),
        ("1", "floor, bare proxy + 1 Redis round trip"),
        ("2", "floor, bare proxy + 2 Redis round trips"),
    ] {
        let port = free_port();
        let p = spawn(
            &format!("floor-{trips}"),
            Command::new(&floor_bin).args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                &format!("http://127.0.0.1:{bot_port}"),
                "--redis",
                &format!("127.0.0.1:{redis_port}"),
                "--redis-trips",
                trips,
            ]),
            &dir.join(format!("floor-{trips}.log")),
        )?;
        wait_for_port(port, "floor")?;
        floors.push(Target {
            name: name.to_string(),
            url: format!("http://127.0.0.1:{port}/telegram"),
            pids: vec![p.child.id()],
            redis: None,
        });
        floor_procs.push(p);
    }

    let mut targets = vec![
        Target {
            name: "direct (no proxy)".to_string(),
            url: format!("http://127.0.0.1:{bot_port}/telegram"),
            pids: vec![],
            redis: None,
        },
        Target {
            name: "nginx passthrough".to_string(),
            url: format!("http://127.0.0.1:{nginx_port}/telegram"),
            pids: family(nginx_pid),
            redis: None,
        },
        Target {
            name: "statehold, unmatched path".to_string(),
            url: format!("http://127.0.0.1:{pass_port}/other"),
            pids: vec![pass_pid],
            redis: None,
        },
        Target {
            name: "statehold, embedded store".to_string(),
            url: format!("http://127.0.0.1:{emb_port}/telegram"),
            pids: vec![emb_pid],
            redis: None,
        },
        Target {
            name: "statehold, redis + dedupe + turns".to_string(),
            url: format!("http://127.0.0.1:{red_port}/telegram"),
            pids: vec![red_pid],
            redis: Some((redis_pid, redis_port)),
        },
        Target {
            name: "statehold, redis + privacy at rest".to_string(),
            url: format!("http://127.0.0.1:{priv_port}/telegram"),
            pids: vec![priv_pid],
            redis: Some((redis_pid, redis_port)),
        },
        Target {
            name: "statehold, redis + history 10 + audit".to_string(),
            url: format!("http://127.0.0.1:{kept_port}/telegram"),
            pids: vec![kept_pid],
            redis: Some((redis_pid, redis_port)),
        },
        Target {
            name: "statehold, redis, deferred turn + late report".to_string(),
            url: format!("http://127.0.0.1:{def_port}/telegram"),
            pids: vec![def_pid],
            redis: Some((redis_pid, redis_port)),
        },
    ];
    // The floors run after nginx, before statehold (the table's order).
    targets.splice(2..2, floors);

    // STATEHOLD_BASELINE_BIN: another build (the one before a change) run
    // beside this one in the same rounds, on the three main targets.
    let baseline = std::env::var_os("STATEHOLD_BASELINE_BIN").map(PathBuf::from);
    if let Some(bin) = &baseline {
        let label = std::env::var("STATEHOLD_BASELINE_LABEL").unwrap_or_else(|_| "before".into());
        let redis_store = format!(
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nkey_prefix = \"benchb\""
        );
        let main_three = [
            (
                "passthrough",
                "statehold, unmatched path",
                "/other",
                format!("path = \"{}\"", dir.join("bp.db").display()),
                None,
            ),
            (
                "embedded",
                "statehold, embedded store",
                "/telegram",
                format!("path = \"{}\"", dir.join("be.db").display()),
                None,
            ),
            (
                "redis",
                "statehold, redis + dedupe + turns",
                "/telegram",
                redis_store,
                Some((redis_pid, redis_port)),
            ),
        ];
        for (short, name, path, store, redis) in main_three {
            let (port, pid, _) = start_build(bin, &format!("before-{short}"), store, bot_port)?;
            targets.push(Target {
                name: format!("{label}: {name}"),
                url: format!("http://127.0.0.1:{port}{path}"),
                pids: vec![pid],
                redis,
            });
        }
    }

    // The load generator gets its own thread; the machine's cores are shared
    // by generator, proxy and bot alike, the same for every target.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!("# statehold load benchmark ({rate} rps open loop, ~1 KB Telegram updates, 10,000 conversations)\n");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    println!(
        "machine: {cores} cores ({cpu}), {mem} GiB; generator, bot, proxies and redis share them\n"
    );
    // Rounds interleave the targets, and each percentile is the median over
    // rounds: a hiccup of this shared 2-core VM then spoils one round of one
    // target instead of a whole column.
    const PCTS: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
    let mut per_round: Vec<Vec<[f64; 4]>> = vec![Vec::new(); targets.len()];
    let mut cpu = vec![0.0f64; targets.len()];
    let mut switches = vec![0u64; targets.len()];
    let mut served = vec![0usize; targets.len()];
    let mut errors = vec![0u64; targets.len()];
    // Redis's CPU seconds, commands and command microseconds, per target.
    let mut redis_spent = vec![(0.0f64, 0u64, 0u64); targets.len()];
    for _ in 0..rounds {
        for (i, t) in targets.iter().enumerate() {
            let before = work(&t.pids);
            let redis_before = t.redis.map(|(pid, port)| redis_work(pid, port));
            let lat = fixed_rate(&t.url, rate, round_secs, 10_000);
            let after = work(&t.pids);
            cpu[i] += after.0 - before.0;
            switches[i] += after.1 - before.1;
            if let (Some(before), Some((pid, port))) = (redis_before, t.redis) {
                let after = redis_work(pid, port);
                let spent = &mut redis_spent[i];
                spent.0 += after.0 - before.0;
                spent.1 += after.1 - before.1;
                spent.2 += after.2 - before.2;
            }
            served[i] += lat.micros.len();
            errors[i] += lat.errors;
            per_round[i].push(PCTS.map(|p| lat.pct(p)));
        }
    }
    let median = |i: usize, k: usize| -> f64 {
        let mut v: Vec<f64> = per_round[i].iter().map(|r| r[k]).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Peak RSS after the fixed-rate rounds (10,000 active conversations),
    // before the saturation runs pile up connections and buffers.
    let rss: Vec<f64> = targets
        .iter()
        .map(|t| t.pids.iter().map(|&p| peak_rss_mb(p)).sum())
        .collect();
    for (i, t) in targets.iter().enumerate() {
        eprintln!("  {}: {} ok, {} errors", t.name, served[i], errors[i]);
    }
    let mut sat = Vec::new();
    // CPU microseconds and context switches per request at saturation.
    let mut sat_work = Vec::new();
    for t in &targets {
        let before = work(&t.pids);
        let rps = saturation(&rt, &t.url, 64, sat_secs);
        let after = work(&t.pids);
        let n = (rps * sat_secs as f64).max(1.0);
        eprintln!("  {}: saturation {:.0} rps", t.name, rps);
        sat.push(rps);
        sat_work.push((
            (after.0 - before.0) * 1e6 / n,
            (after.1 - before.1) as f64 / n,
        ));
    }
    let nginx_rps = sat[1];
    println!("| target | p99 | added p50 | added p90 | added p99 | added p99.9 | saturation | vs nginx | CPU s / 1000 req | switches / req | at saturation: CPU µs, switches / req | peak RSS |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, t) in targets.iter().enumerate() {
        let cell = |k: usize| {
            if i == 0 {
                format!("{:.3} ms", median(0, k))
            } else {
                format!("{:+.3} ms", median(i, k) - median(0, k))
            }
        };
        let per_1000 = cpu[i] / (served[i].max(1) as f64 / 1000.0);
        let per_request = switches[i] as f64 / served[i].max(1) as f64;
        let rss = rss[i];
        let measured = |text: String| {
            if t.pids.is_empty() {
                "-".to_string()
            } else {
                text
            }
        };
        println!(
            "| {} | {:.3} ms | {} | {} | {} | {} | {:.0} rps | {:.2}x | {} | {} | {} | {} |",
            t.name,
            median(i, 2),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            sat[i],
            sat[i] / nginx_rps,
            measured(format!("{per_1000:.3}")),
            measured(format!("{per_request:.2}")),
            measured(format!("{:.1}, {:.2}", sat_work[i].0, sat_work[i].1)),
            if t.pids.is_empty() {
                "-".to_string()
            } else {
                format!("{rss:.1} MB")
            },
        );
    }
    println!("\n(medians over {rounds} interleaved rounds of {round_secs} s; row 1's \"added\" cells show direct latency itself)\n");
    for (i, t) in targets.iter().enumerate() {
        let (cpu_s, calls, usec) = redis_spent[i];
        if t.redis.is_some() && served[i] > 0 {
            let n = served[i] as f64;
            println!(
                "Redis per request ({}): {:.1} µs CPU (process), {:.1} µs in scripts, {:.2} scripts",
                t.name,
                cpu_s * 1e6 / n,
                usec as f64 / n,
                calls as f64 / n
            );
        }
    }
    // Target 4 is Redis's cost per request when it is busy: at 1000 rps its
    // CPU per request is mostly its own wake-ups (one per script).
    let redis_busy_us = redis_at_saturation(
        &rt,
        redis_pid,
        redis_port,
        if quick { 20_000 } else { 100_000 },
    )?;
    println!();
    // Issue 22's targets, as ratios within this run; with a baseline build,
    // its figures from the same rounds beside them.
    let per_req = |i: usize, v: f64| v / served[i].max(1) as f64;
    let cpu_us = |i: usize| per_req(i, cpu[i] * 1e6);
    let sw = |i: usize| per_req(i, switches[i] as f64);
    let added = |i: usize, k: usize| median(i, k) - median(0, k);
    let redis_us = |i: usize| per_req(i, redis_spent[i].0 * 1e6);
    let at = |suffix: &str, before: bool| {
        targets
            .iter()
            .position(|t| t.name.contains(": ") == before && t.name.ends_with(suffix))
    };
    let figures = |before: bool| -> Option<Vec<String>> {
        let pass = at("statehold, unmatched path", before)?;
        let emb = at("statehold, embedded store", before)?;
        let red = at("statehold, redis + dedupe + turns", before)?;
        // The floor is the same processes for both builds.
        let bare = at("floor, bare hyper proxy", false)?;
        let one = at("floor, bare proxy + 1 Redis round trip", false)?;
        let two = at("floor, bare proxy + 2 Redis round trips", false)?;
        let floor = |with: usize| {
            format!(
                "{:.2}x / {:.2}x / {:.2}x ({:.0} / {:.0} µs; {:.1} / {:.1} µs; {:.2} / {:.2})",
                cpu_us(with) / cpu_us(bare),
                sat_work[with].0 / sat_work[bare].0,
                sw(with) / sw(bare),
                cpu_us(with),
                cpu_us(bare),
                sat_work[with].0,
                sat_work[bare].0,
                sw(with),
                sw(bare)
            )
        };
        Some(vec![
            floor(one),
            floor(two),
            format!(
                "{:.2}x ({:.0} / {:.0} µs)",
                cpu_us(red) / cpu_us(pass),
                cpu_us(red),
                cpu_us(pass)
            ),
            format!(
                "{:.2}x ({:.1} / {:.1} µs)",
                sat_work[red].0 / sat_work[pass].0,
                sat_work[red].0,
                sat_work[pass].0
            ),
            format!(
                "{:.2}x / {:.2}x ({:.2}, {:.2} / {:.2})",
                sw(red) / sw(pass),
                sw(emb) / sw(pass),
                sw(red),
                sw(emb),
                sw(pass)
            ),
            format!("{:.2}x", sat[pass] / nginx_rps),
            format!(
                "{:.2}x / {:.2}x",
                cpu_us(pass) / cpu_us(1),
                sat_work[pass].0 / sat_work[1].0
            ),
            format!("{:+.3} ms", added(red, 2)),
            format!("{:+.3} ms (p99.9 {:+.3} ms)", added(emb, 2), added(emb, 3)),
            format!(
                "{redis_busy_us:.1} µs (at 1000 rps: {:.1} µs)",
                redis_us(red)
            ),
            format!("{:.1} / {:.1} MB", rss[emb], rss[red]),
        ])
    };
    let goals = [
        "floor: bare proxy + the commit's Redis round trip / bare proxy: CPU at 1000 rps / at saturation / switches at 1000 rps (no target: what any design that acknowledges only stored snapshots pays)",
        "floor: bare proxy + 2 Redis round trips (turn, commit) / bare proxy, the same figures (no target: what statehold's protocol pays)",
        "stateful (Redis) CPU per request / passthrough's, at 1000 rps: at most 1.5x",
        "the same at saturation: at most 1.5x",
        "context switches per request, Redis / embedded vs passthrough, at 1000 rps: at most 1.5x",
        "passthrough saturation vs nginx: at least 0.9x",
        "passthrough CPU per request vs nginx's, at 1000 rps / at saturation: at most 1.5x",
        "Redis pipeline's added p99 at 1000 rps: at most 0.4 ms",
        "embedded store's added p99 at 1000 rps: at most 1 ms",
        "redis-server CPU per stateful request, at saturation (the backend driven directly): at most 25 µs",
        "peak RSS at 10,000 active conversations, embedded / Redis: at most 30 MB",
    ];
    if let Some(now) = figures(false) {
        let before = figures(true);
        println!(
            "\n| target (issue 22) | this build | {} |",
            if before.is_some() {
                "baseline build, same rounds"
            } else {
                "-"
            }
        );
        println!("| --- | --- | --- |");
        for (k, goal) in goals.iter().enumerate() {
            let was = before.as_ref().map_or("-", |b| b[k].as_str());
            println!("| {goal} | {} | {was} |", now[k]);
        }
        println!();
    }

    // Cost growth: the same fixed-rate run with 1,000 and 1,000,000 stored conversations.
    let sizes: [u64; 2] = if quick {
        [1_000, 100_000]
    } else {
        [1_000, 1_000_000]
    };
    println!("| store | stored conversations | p50 | p99 | p99 change |");
    println!("| --- | --- | --- | --- | --- |");
    for backend in ["embedded", "redis"] {
        let mut urls = Vec::new();
        for &n in &sizes {
            let store = if backend == "embedded" {
                let path = dir.join(format!("grow-{n}.db"));
                prefill_embedded(&rt, &path, n)?;
                format!("path = \"{}\"", path.display())
            } else {
                let prefix = format!("grow{n}");
                prefill_redis(redis_port, &prefix, n)?;
                format!("backend = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nkey_prefix = \"{prefix}\"")
            };
            let (port, _, _) =
                start_build(&statehold, &format!("grow-{backend}-{n}"), store, bot_port)?;
            urls.push((n, format!("http://127.0.0.1:{port}/telegram")));
        }
        let mut p50s = vec![Vec::new(); urls.len()];
        let mut p99s = vec![Vec::new(); urls.len()];
        for _ in 0..rounds {
            for (j, (n, url)) in urls.iter().enumerate() {
                let lat = fixed_rate(url, rate, round_secs, *n);
                p50s[j].push(lat.pct(0.5));
                p99s[j].push(lat.pct(0.99));
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let small = med(&mut p99s[0].clone());
        for (j, (n, _)) in urls.iter().enumerate() {
            let p99 = med(&mut p99s[j]);
            let change = if j == 0 {
                "-".to_string()
            } else {
                format!("{:+.1}%", (p99 / small - 1.0) * 100.0)
            };
            println!(
                "| {backend} | {n} | {:.3} ms | {p99:.3} ms | {change} |",
                med(&mut p50s[j])
            );
        }
    }
    Ok(())
}

/// A redis-server without persistence on a free port, answering.
fn start_redis(dir: &Path) -> Result<(Proc, u16), String> {
    let port = free_port();
    let redis = spawn(
        "redis-server",
        Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
        &dir.join("redis.log"),
    )?;
    wait_for_port(port, "redis-server")?;
    Ok((redis, port))
}

/// `--redis-ceiling`: only [`redis_at_saturation`], on a redis-server of
/// its own, three times (this VM's noise shows in the spread).
fn redis_ceiling_only(quick: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (redis, port) = start_redis(dir.path())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    for _ in 0..3 {
        redis_at_saturation(
            &rt,
            redis.child.id(),
            port,
            if quick { 20_000 } else { 100_000 },
        )?;
    }
    Ok(())
}

/// Redis's cost per request where it is the bottleneck: the Redis backend
/// driven directly (acquire with load and dedupe lookup, then commit with
/// snapshot, dedupe record and release: the pipeline's two scripts) by 64
/// concurrent conversations, so Redis never idles between scripts. Its
/// commandstats microseconds and process CPU per request are the fleet's
/// ceiling: one Redis core serves about 10^6 / µs requests per second.
fn redis_at_saturation(
    rt: &tokio::runtime::Runtime,
    pid: u32,
    port: u16,
    requests: u64,
) -> Result<f64, String> {
    use statehold::backend::redis::{Access, RedisBackend, RedisConn, Timings, Topology};
    use statehold::backend::{Commit, Held, RecordedResponse, StateChange, Turns};
    use statehold::key::ConvKey;
    let url = format!("redis://127.0.0.1:{port}/0");
    let second = Duration::from_secs(1);
    let conn = RedisConn::open(
        Topology::Single { url: &url },
        Access::default(),
        second * 5,
        "ceiling",
        (1000, second),
    )
    .map_err(|e| e.to_string())?;
    let day = Duration::from_secs(86_400);
    let timings = Timings {
        ttl: day,
        dedupe_window: day,
        lease: second * 5,
        max_wait: second * 10,
        min_replica_acks: 0,
    };
    let backend = Arc::new(rt.block_on(async { RedisBackend::new(conn, timings) }));
    let state = Bytes::from(snapshot());
    let answer = RecordedResponse {
        status: http::StatusCode::OK,
        headers: vec![],
        body: Bytes::from_static(br#"{"method":"sendMessage","chat_id":1,"text":"Your email?"}"#),
        request_digest: Some([7; 32]),
    };
    let one = move |i: u64| {
        let (backend, state, answer) = (backend.clone(), state.clone(), answer.clone());
        async move {
            let key = ConvKey::new("tg", &(i % 2000).to_string());
            let id = i.to_string();
            let (held, _) = backend.begin(&key, second * 10, Some(&id)).await.ok()?;
            let commit = Commit {
                expected_version: None,
                change: StateChange::Put(state),
                dedupe: Some((id, answer)),
                origin: Default::default(),
                audit: None,
                link: None,
            };
            held.finish(commit).await.ok()
        }
    };
    rt.block_on(one(0));
    let before = redis_work(pid, port);
    let done = rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let (next, one) = (next.clone(), one.clone());
                tokio::spawn(async move {
                    let mut ok = 0u64;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i > requests {
                            return ok;
                        }
                        ok += one(i).await.is_some() as u64;
                    }
                })
            })
            .collect();
        let mut ok = 0;
        for w in workers {
            ok += w.await.unwrap_or(0);
        }
        ok
    });
    let after = redis_work(pid, port);
    let n = done.max(1) as f64;
    let usec = (after.2 - before.2) as f64 / n;
    let cpu_us = (after.0 - before.0) * 1e6 / n;
    println!(
        "Redis at saturation (backend driven directly, 64 conversations in flight, {done} requests): \
         {:.1} µs CPU (process), {usec:.1} µs in scripts, {:.2} scripts per request; \
         one Redis core: about {:.0} requests/s",
        cpu_us,
        (after.1 - before.1) as f64 / n,
        1e6 / cpu_us
    );
    Ok(cpu_us)
}

/// Stores `n` conversations through the embedded store's own API.
fn prefill_embedded(rt: &tokio::runtime::Runtime, path: &Path, n: u64) -> Result<(), String> {
    use statehold::backend::{Commit, Held, StateChange, Turns};
    use statehold::key::ConvKey;
    let day = Duration::from_secs(86_400);
    let store = Arc::new(
        statehold::backend::embedded::EmbeddedBackend::open(path, day, day, 32 << 20)
            .map_err(|e| e.to_string())?,
    );
    let state = Bytes::from(snapshot());
    rt.block_on(async {
        let mut next = 1u64;
        while next <= n {
            let batch: Vec<_> = (next..(next + 2048).min(n + 1))
                .map(|i| {
                    let (store, state) = (store.clone(), state.clone());
                    tokio::spawn(async move {
                        let key = ConvKey::new("tg", &i.to_string());
                        let commit = Commit {
                            expected_version: None,
                            change: StateChange::Put(state),
                            dedupe: None,
                            origin: Default::default(),
                            audit: None,
                            link: None,
                        };
                        let wait = Duration::from_secs(5);
                        match store.begin(&key, wait, None).await {
                            Ok((held, _)) => held.finish(commit).await.is_ok(),
                            Err(_) => false,
                        }
                    })
                })
                .collect();
            next += batch.len() as u64;
            for t in batch {
                let _ = t.await;
            }
        }
    });
    match Arc::try_unwrap(store) {
        Ok(store) => store.close(),
        Err(_) => return Err("prefill store still shared".into()),
    }
    Ok(())
}

/// Stores `n` conversations directly in Redis, in statehold's key layout.
fn prefill_redis(port: u16, prefix: &str, n: u64) -> Result<(), String> {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}/0")).map_err(|e| e.to_string())?;
    let mut con = client.get_connection().map_err(|e| e.to_string())?;
    let state = snapshot();
    let mut next = 1u64;
    while next <= n {
        let mut pipe = redis::pipe();
        for i in next..(next + 10_000).min(n + 1) {
            let key = format!("{{{prefix}:tg:{i}}}:s");
            pipe.cmd("HSET")
                .arg(&key)
                .arg("v")
                .arg(1)
                .arg("d")
                .arg(&state)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(86_400_000u64).ignore();
        }
        pipe.query::<()>(&mut con).map_err(|e| e.to_string())?;
        next += 10_000;
    }
    Ok(())
}
