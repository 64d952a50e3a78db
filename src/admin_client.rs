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
    call_with(addr, (method, path), token, b"")
}

/// One request with a body; (status, body).
fn call_with(
    addr: SocketAddr,
    (method, path): (&str, &str),
    token: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the admin API at {addr} (is statehold serving?)"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
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

/// The first line of an export: the format, and whether keys are hashed
/// and values sealed (an import into a store configured otherwise could
/// not find or open them, so it is refused).
fn export_header(config: &Config) -> serde_json::Value {
    let store = &config.store;
    let hashed = store.key_secret.is_some()
        || store.key_secret_env.is_some()
        || store.key_secret_file.is_some();
    serde_json::json!({"statehold_export": 1, "hashed_keys": hashed, "sealed": store.encryption.is_some()})
}

/// Conversations per page, both ways.
const PAGE: usize = 1000;

/// `statehold export`: the header line, then one line per conversation.
pub fn export(config: &Config, out: &mut impl Write) -> anyhow::Result<String> {
    let (addr, token) = admin(config)?;
    writeln!(out, "{}", export_header(config))?;
    let (mut cursor, mut count) = (String::new(), 0u64);
    loop {
        let cursor_arg: String =
            percent_encoding::utf8_percent_encode(&cursor, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let path = format!("/v1/export?limit={PAGE}&cursor={cursor_arg}");
        let (status, body) = call(addr, "GET", &path, &token)?;
        if status != 200 {
            bail!("admin API answered {status}: {body}");
        }
        let page: serde_json::Value = serde_json::from_str(&body)?;
        for c in page["conversations"]
            .as_array()
            .context("malformed export page")?
        {
            writeln!(out, "{c}")?;
            count += 1;
        }
        match page["next"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    out.flush()?;
    Ok(format!("exported {count} conversations"))
}

/// `statehold import`: checks the header, then writes pages of lines.
pub fn import(config: &Config, input: impl std::io::BufRead) -> anyhow::Result<String> {
    let (addr, token) = admin(config)?;
    let mut lines = input.lines();
    let header: serde_json::Value = serde_json::from_str(&lines.next().context("empty input")??)
        .context("the first line is not an export header")?;
    let ours = export_header(config);
    if header["statehold_export"] != 1 {
        bail!("the first line is not a statehold export header");
    }
    for what in ["hashed_keys", "sealed"] {
        if header[what] != ours[what] {
            bail!("the export has {what} = {}, this store {}: configure store.key_secret and store.encryption as where it came from", header[what], ours[what]);
        }
    }
    let (mut imported, mut skipped, mut errors) = (0u64, 0u64, 0u64);
    let mut page: Vec<serde_json::Value> = Vec::with_capacity(PAGE);
    let mut send = |page: &mut Vec<serde_json::Value>| -> anyhow::Result<()> {
        let body = serde_json::json!({ "conversations": page }).to_string();
        let (status, answer) = call_with(addr, ("POST", "/v1/import"), &token, body.as_bytes())?;
        if status != 200 {
            bail!("admin API answered {status}: {answer}");
        }
        let done: serde_json::Value = serde_json::from_str(&answer)?;
        imported += done["imported"].as_u64().unwrap_or(0);
        skipped += done["skipped"].as_u64().unwrap_or(0);
        errors += done["errors"].as_u64().unwrap_or(0);
        if let Some(reasons) = done["reasons"].as_array().filter(|r| !r.is_empty()) {
            eprintln!(
                "statehold: import: refused lines: {}",
                serde_json::Value::Array(reasons.clone())
            );
        }
        page.clear();
        Ok(())
    };
    for line in lines {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        page.push(serde_json::from_str(&line).context("a line is not JSON")?);
        if page.len() == PAGE {
            send(&mut page)?;
        }
    }
    if !page.is_empty() {
        send(&mut page)?;
    }
    if errors > 0 {
        bail!("imported {imported}, already there {skipped}, refused {errors}");
    }
    Ok(format!(
        "imported {imported} conversations, {skipped} already at that version or newer"
    ))
}
