//! The CLI's side of the admin API (`statehold rekey`, `statehold
//! migrate`, `check-config --store`): plain HTTP/1.1 to
//! the configured `admin.listen` on this host, with the admin token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use statehold::config::Config;

/// Why `check-config --store` refuses or cannot tell.
pub enum KeysProblem {
    /// Stored values are sealed under keys the config does not list.
    Missing(String),
    /// The counts could not be obtained.
    Unknown(anyhow::Error),
}

/// Every key that seals a stored snapshot is listed in `config`.
pub fn keys_in_use(config: &Config) -> Result<(), KeysProblem> {
    let (addr, token) = admin(config).map_err(KeysProblem::Unknown)?;
    let (status, body) = call(addr, "GET", "/v1/keys", &token).map_err(KeysProblem::Unknown)?;
    if status != 200 {
        return Err(KeysProblem::Unknown(anyhow::anyhow!(
            "admin API answered {status}: {body}"
        )));
    }
    let counts: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| KeysProblem::Unknown(e.into()))?;
    eprintln!("statehold: stored snapshots by sealing key: {counts}");
    let listed: Vec<&str> = config
        .store
        .encryption
        .iter()
        .flat_map(|e| e.keys.iter().map(|k| k.id.as_str()))
        .collect();
    let mut missing = Vec::new();
    if let Some(sealed) = counts["sealed"].as_object() {
        for (id, n) in sealed {
            if !listed.contains(&id.as_str()) && n.as_u64().unwrap_or(0) > 0 {
                missing.push(format!(
                    "{n} stored snapshots are sealed under key id {id:?}"
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(KeysProblem::Missing(format!(
        "store.encryption.keys: {}, which the config no longer lists: keep it until `statehold rekey` moved them",
        missing.join(", ")
    )))
}

/// The admin address on this host and the admin token.
fn admin(config: &Config) -> anyhow::Result<(SocketAddr, String)> {
    let token =
        config.admin.token.as_ref().context(
            "admin.token (or admin.token_env) must be set: this runs through the admin API",
        )?;
    let mut addr = config.admin.listen;
    if addr.ip().is_unspecified() {
        addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    }
    Ok((addr, token.expose().to_string()))
}

/// A maintenance job of the running server (`rekey`, `migrate`).
pub struct Job<'a> {
    /// Its admin path, e.g. `/v1/rekey`.
    pub path: &'a str,
    /// Conversations per second at most.
    pub rate: u32,
    /// `migrate` only: count, change nothing.
    pub dry_run: bool,
}

impl Job<'_> {
    /// `rekey`, `migrate`: the command's name.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(self.path)
    }
}

/// Starts a run of `job` (or joins the one running) and prints its
/// progress every second until it ends.
pub fn run_job(config: &Config, job: &Job<'_>) -> anyhow::Result<()> {
    let (addr, token) = admin(config)?;
    let Job { path, rate, .. } = *job;
    let dry_run = if job.dry_run { "&dry_run=1" } else { "" };
    let (status, body) = call(
        addr,
        "POST",
        &format!("{path}?rate={rate}{dry_run}"),
        &token,
    )?;
    match status {
        202 => eprintln!(
            "statehold: {} started at {rate} conversations/s",
            job.name()
        ),
        409 => eprintln!(
            "statehold: a {} is already running; following it",
            job.name()
        ),
        other => bail!("admin API answered {other}: {body}"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let (status, body) = call(addr, "GET", path, &token)?;
        if status != 200 {
            bail!("admin API answered {status}: {body}");
        }
        let progress: serde_json::Value = serde_json::from_str(&body)?;
        println!("{progress}");
        if progress["running"] == false {
            if progress["done"] == true {
                return Ok(());
            }
            bail!("stopped before the end (see the server's log); run again to resume");
        }
    }
}

/// One request; (status, body).
fn call(addr: SocketAddr, method: &str, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the admin API at {addr} (is statehold serving?)"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed answer from the admin API")?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
