//! The CLI's side of the admin API (`statehold rekey`): plain HTTP/1.1 to
//! the configured `admin.listen` on this host, with the admin token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use statehold::config::Config;

/// Starts a rekey run (or joins the one running) and prints its progress
/// every second until it ends.
pub fn rekey(config: &Config, rate: u32) -> anyhow::Result<()> {
    let token = config.admin.token.as_ref().context(
        "admin.token (or admin.token_env) must be set: rekey runs through the admin API",
    )?;
    let mut addr = config.admin.listen;
    if addr.ip().is_unspecified() {
        addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    }
    let (status, body) = call(
        addr,
        "POST",
        &format!("/v1/rekey?rate={rate}"),
        token.expose(),
    )?;
    match status {
        202 => eprintln!("statehold: rekey started at {rate} conversations/s"),
        409 => eprintln!("statehold: a rekey is already running; following it"),
        other => bail!("admin API answered {other}: {body}"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let (status, body) = call(addr, "GET", "/v1/rekey", token.expose())?;
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
