//! Test harness: real processes on loopback. Starts the `statehold` binary
//! and the demo bot on port 0 (each reports the address it bound), and
//! `redis-server` on a free port, waits for each to answer (readiness
//! checks, never fixed sleeps), and kills them on drop.
//! Includes a tiny raw HTTP/1.1 client so tests can also send what a
//! well-behaved client library never would.

#![allow(dead_code)]

pub mod checks;
pub mod conformance;
pub mod deferral_conformance;
pub mod faulty;
pub mod import_conformance;
pub mod in_process;
pub mod link_conformance;
pub mod notices;
pub mod recorder;
pub mod redis_cluster;
pub mod sentinel;
pub mod store;
pub mod traffic;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs the multi-process tests of one module (`group`: its
/// `module_path!()`) one at a time: each starts several statehold replicas,
/// a bot and Redis, and on a 2-core machine their timing-sensitive
/// assertions (arrival order 10 ms apart) should not race against four
/// other such tests.
pub fn serial(group: &'static str) -> std::sync::MutexGuard<'static, ()> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<&'static str, &'static Mutex<()>>>> = OnceLock::new();
    let lock: &'static Mutex<()> = {
        let mut locks = LOCKS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        locks
            .entry(group)
            .or_insert_with(|| Box::leak(Box::new(Mutex::new(()))))
    };
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long any process gets to become ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A port nobody listens on right now: for what must not answer, and for
/// `redis-server`, which cannot bind port 0 and report it.
///
/// Taken below the kernel's ephemeral range (32768 and up), so that no
/// outgoing connection of any test can hold it by the time a server binds
/// it, or binds it again after a restart. Each test process starts at its
/// own offset (its pid) and walks on, and holds every port it took for
/// its whole life ([`reserve_port`]): no other test process, running side
/// by side, gets it, even while the server on it is down (a killed
/// primary a Sentinel still watches would otherwise be another test's new
/// server, which that Sentinel then turns into its replica).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id() % 97) * (SPAN / 97);
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve_port(port) {
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// Holds `port` for this test process until it exits: a lock on a file
/// named after it in the system's temp directory (released by the kernel
/// when the process ends, however it ends). False if another process
/// holds it.
pub fn reserve_port(port: u16) -> bool {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("statehold-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()));
    match file {
        Ok(file) if file.try_lock().is_ok() => {
            HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
            true
        }
        _ => false,
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
}

impl Proc {
    /// Takes ownership of a child started elsewhere.
    pub fn from_child(name: &str, child: Child) -> Proc {
        Proc {
            child: Some(child),
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, as a crash would: no cleanup runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("process running");
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        c.wait().expect("wait")
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("process running");
        c.wait().expect("wait")
    }

    /// Whether the process already exited (and how).
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(name: &str, cmd: &mut Command, log: Option<&Path>) -> Proc {
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    match log {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("log file");
            cmd.stderr(f);
        }
        None => {
            cmd.stderr(Stdio::null());
        }
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc {
        child: Some(child),
        name: name.to_string(),
    }
}

/// Polls `check` until it holds or READY_WITHIN passes.
pub fn wait_until(what: &str, check: impl FnMut() -> bool) {
    wait_until_within(what, READY_WITHIN, check)
}

/// Polls `check` until it holds or `within` passes: for events whose time
/// is another program's (a Sentinel's failover, with its own timeouts).
pub fn wait_until_within(what: &str, within: Duration, check: impl FnMut() -> bool) {
    wait_until_within_or(what, within, check, String::new)
}

/// [`wait_until_within`], and if it times out, the panic says what
/// `explain` finds (the programs' own view of why).
pub fn wait_until_within_or(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}\n{}", explain());
}

// ---------------------------------------------------------------- the bot

pub struct Bot {
    pub proc: Proc,
    pub port: u16,
    body_mode: bool,
}

impl Bot {
    pub fn start(port: u16) -> Bot {
        Bot::start_with(port, false)
    }

    /// Starts the bot on `port` (0: any free port, read back from the bot's
    /// first line) and waits until it answers.
    pub fn start_with(port: u16, body_mode: bool) -> Bot {
        let mut cmd = Command::new(demo_bot_bin());
        cmd.args(["--listen", &addr(port).to_string()]);
        if body_mode {
            cmd.arg("--body-mode");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start demo-bot");
        let port = bound_port(&mut child);
        let proc = Proc::from_child("demo-bot", child);
        wait_until("demo bot", || {
            get(addr(port), "/_health").is_ok_and(|r| r.status == 200)
        });
        Bot {
            proc,
            port,
            body_mode,
        }
    }

    /// kill -9 and start a fresh process (empty dict) on the same port.
    pub fn crash_and_restart(&mut self) {
        self.proc.kill9();
        *self = Bot::start_with(self.port, self.body_mode);
    }

    /// Everything this bot process handled, in order.
    pub fn handled(&self) -> Vec<Value> {
        let r = get(addr(self.port), "/_handled").expect("bot /_handled");
        match r.json() {
            Value::Array(v) => v,
            other => panic!("unexpected /_handled: {other}"),
        }
    }

    /// The late reports this bot process posted (deferring bots), in order:
    /// `{key, update_id, status, version}`.
    pub fn reports(&self) -> Vec<Value> {
        let r = get(addr(self.port), "/_reports").expect("bot /_reports");
        match r.json() {
            Value::Array(v) => v,
            other => panic!("unexpected /_reports: {other}"),
        }
    }

    /// Requests inside the bot right now.
    pub fn in_flight(&self) -> u64 {
        let r = get(addr(self.port), "/_stats").expect("bot /_stats");
        r.json()["in_flight"].as_u64().expect("in_flight")
    }

    pub fn overlaps(&self) -> u64 {
        let r = get(addr(self.port), "/_stats").expect("bot /_stats");
        r.json()["overlaps"].as_u64().expect("overlaps")
    }
}

/// The demo bot (its own package, `demo-bot/`), built next to `statehold`
/// by `cargo test` (both are default members of the workspace).
fn demo_bot_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_statehold")).with_file_name("statehold-demo-bot");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p statehold-demo-bot` (plain `cargo test` builds it)",
        bin.display()
    );
    bin
}

/// Reads the demo bot's `demo bot listening on <addr>` line, then keeps its
/// stderr drained so the bot never blocks writing to it.
fn bound_port(child: &mut Child) -> u16 {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let port = first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("demo bot did not report its address: {first:?}"));
    std::thread::spawn(move || lines.for_each(drop));
    port
}

/// The binary under test: this build's, or `STATEHOLD_BIN` (to run the
/// same tests against another build, e.g. to show a test fails on old code).
pub fn statehold_bin() -> std::ffi::OsString {
    std::env::var_os("STATEHOLD_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_statehold").into())
}

/// Runs the statehold binary to completion (`check-config`, a failing
/// `serve`) with only the given environment additions.
pub fn run_statehold(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(statehold_bin());
    cmd.args(args).env_remove("STATEHOLD_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run statehold")
}

/// Asserts a finished run exited with `code`, showing stderr otherwise.
pub fn assert_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- statehold

/// Config for one statehold process. `render` produces the TOML.
#[derive(Clone)]
pub struct Config {
    /// 0 until started: statehold binds port 0 and reports the port; then
    /// pinned, so a restart comes back on the same address.
    pub listen: u16,
    pub admin: u16,
    /// Names this replica's files (config, log, spool) in `data_dir`.
    pub id: usize,
    pub upstream: u16,
    pub data_dir: PathBuf,
    pub store_extra: String,
    pub server_extra: String,
    pub upstream_extra: String,
    pub upstream_timeout: &'static str,
    pub route_extra: String,
    pub extra: String,
    pub mode: &'static str,
    pub key: &'static str,
    pub dedupe: bool,
    /// `Some(port)`: the Redis backend on that redis-server.
    pub redis: Option<u16>,
    /// Non-empty: the Redis backend on this Redis Cluster (seed ports).
    pub redis_cluster: Vec<u16>,
    /// With `redis`: connect with TLS (`rediss://`), trusting this CA file.
    pub redis_tls_ca: Option<PathBuf>,
    /// Replaces the default `/telegram` route with these `[[route]]` tables.
    pub routes: Option<String>,
    /// Replaces the `[store]` backend lines (`backend`, `path`/`url`, ...).
    pub backend: Option<String>,
    /// Environment variables for the process (the `*_env` secrets).
    pub env: Vec<(String, String)>,
    /// A command the process is started through (e.g. `prlimit
    /// --nofile=400:400`), which then execs statehold.
    pub wrapper: Vec<String>,
}

impl Config {
    pub fn new(upstream: u16, data_dir: &Path) -> Config {
        Config {
            listen: 0,
            admin: 0,
            id: next_id(),
            upstream,
            data_dir: data_dir.to_path_buf(),
            store_extra: String::new(),
            server_extra: String::new(),
            upstream_extra: String::new(),
            upstream_timeout: "10s",
            route_extra: String::new(),
            extra: String::new(),
            mode: "header",
            key: r#"["json:/message/chat/id", "json:/callback_query/from/id"]"#,
            dedupe: true,
            redis: None,
            redis_cluster: Vec::new(),
            redis_tls_ca: None,
            routes: None,
            backend: None,
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Privacy at rest: hashed keys and sealed values, secrets from the
    /// environment (`SH_KEY_SECRET`, `SH_KEY_K1`).
    pub fn private_at_rest(&mut self) {
        self.store_extra.push_str(
            "key_secret_env = \"SH_KEY_SECRET\"\n\
             encryption = { keys = [{ id = \"k1\", secret_env = \"SH_KEY_K1\" }] }\n",
        );
        self.env.extend([
            (
                "SH_KEY_SECRET".into(),
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into(),
            ),
            (
                "SH_KEY_K1".into(),
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
            ),
        ]);
    }

    /// A replica of the same deployment: same settings and store, own ports.
    pub fn replica(&self) -> Config {
        let mut c = self.clone();
        c.listen = 0;
        c.admin = 0;
        c.id = next_id();
        c
    }

    /// The rendered file as statehold reads it (`Config::parse`, with this
    /// config's environment): panics naming the key a test got wrong.
    pub fn typed(&self) -> statehold::config::Config {
        let env: std::collections::HashMap<String, String> = self.env.iter().cloned().collect();
        statehold::config::Config::parse(&self.render(), &env)
            .unwrap_or_else(|e| panic!("the test's config is refused: {}: {}", e.key, e.message))
    }

    pub fn render(&self) -> String {
        let dedupe = if self.dedupe {
            "dedupe = \"json:/update_id\"\n"
        } else {
            ""
        };
        format!(
            r#"[server]
listen = "127.0.0.1:{listen}"
{server_extra}
[upstream]
url = "http://127.0.0.1:{upstream}"
timeout = "{upstream_timeout}"
{upstream_extra}
[store]
{backend}
{store_extra}
[contract]
mode = "{mode}"

{routes}
[admin]
listen = "127.0.0.1:{admin}"
token = "test-admin-token"
{extra}"#,
            listen = self.listen,
            admin = self.admin,
            upstream = self.upstream,
            backend = self.store_lines(),
            server_extra = self.server_extra,
            upstream_extra = self.upstream_extra,
            upstream_timeout = self.upstream_timeout,
            store_extra = self.store_extra,
            mode = self.mode,
            routes = self.routes.clone().unwrap_or_else(|| format!(
                "[[route]]\npath = \"/telegram\"\nnamespace = \"tg\"\nkey = {}\n{dedupe}{}",
                self.key, self.route_extra
            )),
            extra = self.extra,
        )
    }
}

impl Config {
    /// The Redis key prefix of this test's deployment (its replicas share it).
    pub fn key_prefix(&self) -> String {
        let dir = self
            .data_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x");
        format!(
            "sh{}",
            dir.replace(|c: char| !c.is_ascii_alphanumeric(), "")
        )
    }

    /// The `[store]` backend lines.
    fn store_lines(&self) -> String {
        if let Some(lines) = &self.backend {
            return lines.clone();
        }
        let spool = self.data_dir.join(format!("spool-{}.db", self.id));
        let redis = format!(
            "backend = \"redis\"\nkey_prefix = \"{}\"\nspool_path = \"{}\"\n",
            self.key_prefix(),
            spool.display()
        );
        if !self.redis_cluster.is_empty() {
            let nodes: Vec<String> = self
                .redis_cluster
                .iter()
                .map(|p| format!("\"redis://127.0.0.1:{p}\""))
                .collect();
            return format!("{redis}cluster = [{}]\n", nodes.join(", "));
        }
        match self.redis {
            Some(port) => {
                let scheme = if self.redis_tls_ca.is_some() {
                    "rediss"
                } else {
                    "redis"
                };
                let ca = self
                    .redis_tls_ca
                    .as_ref()
                    .map(|p| format!("tls_ca = \"{}\"\n", p.display()));
                format!(
                    "{redis}url = \"{scheme}://127.0.0.1:{port}/0\"\n{}",
                    ca.unwrap_or_default()
                )
            }
            None => format!(
                "backend = \"embedded\"\npath = \"{}\"",
                self.data_dir.join("statehold.db").display()
            ),
        }
    }
}

/// A process-wide counter naming each replica's files.
fn next_id() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Waits for statehold's `statehold serving` log line (written after byte
/// `from` of the log, so an earlier run's line does not count) and returns
/// the addresses it reports having bound (the proxy's, the admin's). `Err`
/// with the log when the process exited or never said it.
pub fn wait_serving(
    log: &Path,
    from: usize,
    mut exited: impl FnMut() -> Option<std::process::ExitStatus>,
) -> Result<(SocketAddr, SocketAddr), String> {
    let field = |line: &str, name: &str| -> Option<SocketAddr> {
        if line.starts_with('{') {
            // log.format = "json"
            let v: Value = serde_json::from_str(line).ok()?;
            return v[name].as_str()?.parse().ok();
        }
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..].split_whitespace().next()?.parse().ok()
    };
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let fresh = text.get(from..).unwrap_or("");
        let serving = fresh.lines().find(|l| l.contains("statehold serving"));
        if let Some(addrs) = serving.and_then(|l| Some((field(l, "listen")?, field(l, "admin")?))) {
            return Ok(addrs);
        }
        if let Some(status) = exited() {
            return Err(format!("exited at startup ({status}):\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "not serving:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

pub struct Statehold {
    pub proc: Proc,
    pub config: Config,
    pub log: PathBuf,
    config_path: PathBuf,
    /// Where the running process's part of the (appended) log starts.
    log_from: usize,
}

impl Statehold {
    /// Starts statehold and waits until it answers. The first start binds
    /// port 0; the ports it reports are then written into the config, so
    /// restarts come back on the same addresses.
    pub fn start(config: Config) -> Statehold {
        // Checked as the typed config first: a test's spliced TOML that
        // statehold would refuse fails here, naming the key.
        config.typed();
        let (proc, config_path, log) = Self::launch(&config);
        let mut s = Statehold {
            proc,
            config,
            log,
            config_path,
            log_from: 0,
        };
        s.wait_ready();
        s
    }

    /// Starts statehold expecting it to stop at startup: its exit code
    /// and log. Panics if it serves instead.
    pub fn start_refused(config: Config) -> (Option<i32>, String) {
        let (mut proc, _, log) = Self::launch(&config);
        let mut status = None;
        let served = wait_serving(&log, 0, || {
            status = proc.try_exit();
            status
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(served.is_err(), "statehold served:\n{text}");
        (status.and_then(|s| s.code()), text)
    }

    /// Writes this replica's config file and starts the process; its
    /// config path and log.
    fn launch(config: &Config) -> (Proc, PathBuf, PathBuf) {
        let config_path = config
            .data_dir
            .join(format!("statehold-{}.toml", config.id));
        let log = config.data_dir.join(format!("statehold-{}.log", config.id));
        std::fs::write(&config_path, config.render()).expect("write config");
        let proc = Self::spawn(config, &config_path, &log);
        (proc, config_path, log)
    }

    fn spawn(config: &Config, config_path: &Path, log: &Path) -> Proc {
        let mut cmd = match config.wrapper.split_first() {
            Some((wrapper, args)) => {
                let mut cmd = Command::new(wrapper);
                cmd.args(args).arg(statehold_bin());
                cmd
            }
            None => Command::new(statehold_bin()),
        };
        cmd.args(["serve", "--config"]).arg(config_path);
        cmd.env("RUST_LOG", "statehold=debug,info");
        cmd.envs(config.env.iter().map(|(k, v)| (k, v)));
        spawn("statehold", &mut cmd, Some(log))
    }

    /// Waits for the startup line (pinning the bound ports), then until
    /// `/healthz` answers.
    fn wait_ready(&mut self) {
        let proc = &mut self.proc;
        let (listen, admin) = match wait_serving(&self.log, self.log_from, || proc.try_exit()) {
            Ok(addrs) => addrs,
            Err(logs) => panic!("statehold did not start:\n{logs}"),
        };
        if (self.config.listen, self.config.admin) != (listen.port(), admin.port()) {
            self.config.listen = listen.port();
            self.config.admin = admin.port();
            std::fs::write(&self.config_path, self.config.render()).expect("pin ports");
        }
        wait_until("statehold /healthz", || {
            get(admin, "/healthz").is_ok_and(|r| r.status == 200)
        });
    }

    /// SIGTERM; returns the exit status once the process is gone.
    pub fn stop_gracefully(&mut self) -> std::process::ExitStatus {
        self.proc.terminate()
    }

    /// Starts again (after a stop) with the same config and data.
    pub fn start_again(&mut self) {
        self.log_from = self.logs().len();
        self.proc = Self::spawn(&self.config, &self.config_path, &self.log);
        self.wait_ready();
    }

    /// Stops (SIGTERM), changes the config, starts again on the same
    /// addresses and data: a rolling config change.
    pub fn restart_with(&mut self, edit: impl FnOnce(&mut Config)) {
        self.stop_gracefully();
        edit(&mut self.config);
        std::fs::write(&self.config_path, self.config.render()).expect("write config");
        self.start_again();
    }

    /// The config file this process runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// kill -9 and start again with the same config and data.
    pub fn crash_and_restart(&mut self) {
        self.proc.kill9();
        self.log_from = self.logs().len();
        self.proc = Self::spawn(&self.config, &self.config_path, &self.log);
        self.wait_ready();
    }

    pub fn addr(&self) -> SocketAddr {
        addr(self.config.listen)
    }

    pub fn admin(&self) -> SocketAddr {
        addr(self.config.admin)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a Telegram update to `/telegram`.
    pub fn update(&self, update_id: u64, chat: i64, text: &str) -> Response {
        self.update_with(update_id, chat, text, &[])
    }

    pub fn update_with(
        &self,
        update_id: u64,
        chat: i64,
        text: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        post_json(
            self.addr(),
            "/telegram",
            &tg_update(update_id, chat, text),
            headers,
        )
        .expect("statehold answers")
    }

    /// The stored snapshot through the admin API (`None`: 404).
    pub fn stored(&self, namespace: &str, id: &str) -> Option<Value> {
        stored_at(self.admin(), namespace, id)
    }

    /// Like [`Statehold::stored`], for a checker that runs right after a
    /// store fault: a 503 (this replica's breaker still open, or its
    /// recovery settle running) is waited out, bounded by READY_WITHIN.
    pub fn stored_once_reachable(&self, namespace: &str, id: &str) -> Option<Value> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let r = self.stored_response(namespace, id);
            match r.status {
                503 if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                200 => return Some(r.json()),
                404 => return None,
                other => panic!(
                    "admin state API for {namespace}:{id}: {other} {}\nlog tail: {}",
                    r.text(),
                    self.logs()
                        .lines()
                        .rev()
                        .take(8)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    fn stored_response(&self, namespace: &str, id: &str) -> Response {
        self.admin_request("GET", &format!("/v1/state/{namespace}/{id}"), "")
    }

    /// One admin API call with the test token: status and JSON body
    /// (`null` when the body is not JSON).
    pub fn admin_call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let r = self.admin_request(method, path, body);
        let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, json)
    }

    fn admin_request(&self, method: &str, path: &str, body: &str) -> Response {
        admin_request(self.admin(), method, path, body)
    }

    pub fn metrics(&self) -> String {
        get(self.admin(), "/metrics").expect("metrics").text()
    }

    /// The value of one metric line, e.g. `statehold_dedupe_hits_total`.
    /// Like [`Statehold::metric`], 0 for a series not rendered yet.
    pub fn metric_or_zero(&self, series: &str) -> f64 {
        series_value(&self.metrics(), series).unwrap_or(0.0)
    }

    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        series_value(&text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }
}

/// The admin API token every test config sets.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// One admin API call on `admin` with the test token.
pub fn admin_request(admin: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [("authorization", auth.as_str())];
    request(admin, method, path, &headers, body.as_bytes()).expect("admin answers")
}

/// A conversation's record through the admin state API on `admin` (`None`:
/// 404).
pub fn stored_at(admin: SocketAddr, namespace: &str, id: &str) -> Option<Value> {
    let r = admin_request(admin, "GET", &format!("/v1/state/{namespace}/{id}"), "");
    match r.status {
        200 => Some(r.json()),
        404 => None,
        other => panic!("admin state API: {other} {}", r.text()),
    }
}

/// The value of one series in a Prometheus text exposition.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// The first header named `name` (any case) in a list of header lines.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------- redis

/// A real `redis-server` on a free port with its own directory.
pub struct RedisServer {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
    /// The primary this server replicates, if it is a replica.
    replica_of: Option<u16>,
    /// A Redis Cluster node (see `redis_cluster.rs`).
    cluster: bool,
}

impl RedisServer {
    /// `aof`: append-only file with `appendfsync always`; else no persistence.
    pub fn start(dir: &Path, aof: bool) -> RedisServer {
        Self::start_with(dir, aof, None)
    }

    /// A replica of the server on `primary`, ready once it is in sync.
    pub fn start_replica(dir: &Path, primary: u16) -> RedisServer {
        let r = Self::start_with(dir, false, Some(primary));
        r.wait_in_sync();
        r
    }

    /// Waits until this replica's link to its primary is up (in sync). A
    /// full sync is Redis's own time (a fork, the transfer, the load, a
    /// retry each second if the primary is not ready), so it gets as long
    /// as a failover; if it never comes, both servers' replication state
    /// and log tails say why.
    fn wait_in_sync(&self) {
        let port = self.port;
        let in_sync = || {
            redis_cmd(port, "INFO replication").is_ok_and(|i| i.contains("master_link_status:up"))
        };
        let about = |port: u16, dir: &Path| {
            let info = redis_cmd(port, "INFO replication").unwrap_or_else(|e| e.to_string());
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(25)..].join("\n");
            format!("--- redis-server on {port}:\n{info}\n--- its log:\n{tail}")
        };
        let explain = || {
            let primary = self.replica_of.map(|p| {
                let dir = self.dir.with_file_name(format!("redis-{p}"));
                about(p, &dir)
            });
            format!(
                "{}\n{}",
                about(port, &self.dir),
                primary.unwrap_or_default()
            )
        };
        wait_until_within_or("replica in sync", Duration::from_secs(60), in_sync, explain);
    }

    /// A Redis Cluster node, not yet part of a cluster; AOF on, so a
    /// restarted node comes back with its data and its `nodes.conf`.
    pub fn start_cluster_node(dir: &Path) -> RedisServer {
        Self::start_on(redis_cluster::free_node_port(), dir, true, None, true)
    }

    fn start_with(dir: &Path, aof: bool, replica_of: Option<u16>) -> RedisServer {
        // Another test process may bind the port between our check and
        // redis-server's own bind: then it exits at once, and we try
        // another port rather than fail the test.
        for _ in 0..4 {
            if let Some(r) = Self::try_start_on(free_port(), dir, aof, replica_of, false) {
                return r;
            }
        }
        panic!("redis-server exited at startup on four ports in a row")
    }

    fn start_on(
        port: u16,
        dir: &Path,
        aof: bool,
        replica_of: Option<u16>,
        cluster: bool,
    ) -> RedisServer {
        Self::try_start_on(port, dir, aof, replica_of, cluster)
            .unwrap_or_else(|| panic!("redis-server exited at startup on port {port}"))
    }

    /// None when redis-server exits before it answers (its log says why;
    /// a port taken in the meantime is the usual reason).
    fn try_start_on(
        port: u16,
        dir: &Path,
        aof: bool,
        replica_of: Option<u16>,
        cluster: bool,
    ) -> Option<RedisServer> {
        let dir = dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = RedisServer {
            proc: Self::spawn(port, &dir, aof, replica_of, cluster),
            port,
            dir,
            aof,
            replica_of,
            cluster,
        };
        r.became_ready().then_some(r)
    }

    fn spawn(port: u16, dir: &Path, aof: bool, replica_of: Option<u16>, cluster: bool) -> Proc {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--appendonly", if aof { "yes" } else { "no" }])
        .args(["--appendfsync", "always", "--protected-mode", "no"])
        // A full sync starts at once rather than after Redis's default 5 s
        // wait for more replicas to share it.
        .args(["--repl-diskless-sync-delay", "0"]);
        if let Some(primary) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if cluster {
            // A dead node is noticed, and its replica promoted, within ~2 s.
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .args(["--cluster-config-file", "nodes.conf"]);
        }
        spawn("redis-server", &mut cmd, Some(&dir.join("redis.log")))
    }

    /// Waits until it answers PING; false if it exited first, with the
    /// tail of its log on stderr.
    fn became_ready(&mut self) -> bool {
        let port = self.port;
        let proc = &mut self.proc;
        let mut exited = false;
        wait_until("redis-server", || {
            exited = proc.try_exit().is_some();
            exited || redis_cmd(port, "PING").is_ok_and(|r| r.starts_with("+PONG"))
        });
        if exited {
            let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            eprintln!("redis-server on {port} exited at startup: {tail:?}");
        }
        !exited
    }

    fn wait_ready(&mut self) {
        let port = self.port;
        assert!(
            self.became_ready(),
            "redis-server on {port} exited at startup"
        );
    }

    /// kill -9 and start again on the same port and directory.
    pub fn crash_and_restart(&mut self) {
        self.proc.kill9();
        self.restart();
    }

    /// Starts again after `proc.kill9()` as a replica of `primary` (as an
    /// operator brings back a failed primary after a failover), ready once
    /// it is in sync.
    pub fn restart_as_replica_of(&mut self, primary: u16) {
        self.replica_of = Some(primary);
        self.restart();
        self.wait_in_sync();
    }

    /// Starts again after `proc.kill9()`.
    pub fn restart(&mut self) {
        self.proc = Self::spawn(
            self.port,
            &self.dir,
            self.aof,
            self.replica_of,
            self.cluster,
        );
        self.wait_ready();
    }
}

/// Runs one command (words split on spaces); a status or bulk reply as text.
/// Successful script runs on one redis-server so far (a first EVALSHA
/// answered NOSCRIPT and sent again as EVAL counts once).
pub fn redis_script_runs(port: u16) -> u64 {
    let info = redis_cmd(port, "INFO commandstats").unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .map(|l| {
            let field = |name: &str| -> u64 {
                l.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            field("calls=") - field("failed_calls=")
        })
        .sum()
}

/// One numeric field of a server's `INFO` (`None`: not answering).
pub fn redis_info_field(port: u16, field: &str) -> Option<u64> {
    let info = redis_cmd(port, "INFO").ok()?;
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

pub fn redis_cmd(port: u16, cmd: &str) -> Result<String, redis::RedisError> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut words = cmd.split_whitespace();
    let mut c = redis::cmd(words.next().unwrap_or("PING"));
    for w in words {
        c.arg(w);
    }
    let v: redis::Value = c.query(&mut con)?;
    Ok(match v {
        redis::Value::SimpleString(s) => format!("+{s}"),
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    })
}

/// SIGSTOP / SIGCONT a process (a frozen replica).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

// ---------------------------------------------------------------- payloads

/// A Telegram update as the platform sends it (~same shape as the docs' sample).
pub fn tg_update(update_id: u64, chat: i64, text: &str) -> String {
    serde_json::json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_441_645_532,
            "chat": {"id": chat, "type": "private", "first_name": "Test"},
            "from": {"id": chat, "first_name": "Test"},
            "text": text
        }
    })
    .to_string()
}

/// The bot's reply text from a Telegram inline reply body.
pub fn reply_text(r: &Response) -> String {
    r.json()["text"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------- raw HTTP

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn reserved_headers(&self) -> Vec<&(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-statehold-"))
            .collect()
    }
}

pub fn get(to: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(to, "GET", path, &[], b"")
}

pub fn post_json(
    to: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(to, "POST", path, &all, body.as_bytes())
}

pub fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {to}\r\nconnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_request(to, &raw)
}

/// Sends raw bytes, reads the whole answer (the connection is closed by
/// either side) and parses it.
pub fn raw_request(to: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A fresh temporary directory for one test's data and logs.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("statehold-test-")
        .disable_cleanup(std::env::var_os("STATEHOLD_KEEP_TMP").is_some())
        .tempdir()
        .expect("temp dir")
}
