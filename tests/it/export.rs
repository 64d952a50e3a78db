//! Backups and moving house (`statehold export` / `import`), against real
//! processes: 10,000 conversations (500 of them finished: tombstones) on
//! the embedded store with hashed keys and sealed values move to Redis and
//! back. Versions and lifetimes are kept, values stay sealed (the dump
//! names no planted id or value), flows continue where they were, a second
//! import changes nothing, and a conversation that moved on in the target
//! is not undone. Figures (seconds, bytes) are printed for the closing
//! note and the docs.

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use support::recorder::reporting_bot;
use support::{Config, RedisServer, Statehold};

const CONVERSATIONS: i64 = 10_000;
const FINISHED_EVERY: i64 = 20;
const PLANTED: &str = "Planted-Name-Ximena";

fn cli(sh: &Statehold, command: &str, input: Option<&[u8]>) -> (Vec<u8>, String) {
    let mut cmd = Command::new(support::statehold_bin());
    cmd.args([command, "--config"])
        .arg(sh.config_path())
        .envs(sh.config.env.iter().map(|(k, v)| (k, v)))
        .env_remove("STATEHOLD_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("statehold");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "statehold {command}: {stderr}");
    (out.stdout, stderr)
}

/// `cli`, with the time it took and the bytes it moved printed (the
/// figures of docs/operations.md).
fn timed(label: &str, sh: &Statehold, command: &str, input: Option<&[u8]>) -> (Vec<u8>, String) {
    let started = Instant::now();
    let (out, said) = cli(sh, command, input);
    let bytes = input.map_or(out.len(), <[u8]>::len);
    eprintln!(
        "{label}: {bytes} bytes, {:.2} s; {}",
        started.elapsed().as_secs_f64(),
        said.trim()
    );
    (out, said)
}

/// key → (version, state) of a dump, and its lifetimes.
fn records(dump: &[u8]) -> (BTreeMap<String, (u64, Value)>, Vec<u64>) {
    let text = std::str::from_utf8(dump).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["statehold_export"], 1);
    assert_eq!(
        (header["hashed_keys"].clone(), header["sealed"].clone()),
        (true.into(), true.into())
    );
    let (mut out, mut ttls) = (BTreeMap::new(), Vec::new());
    for line in lines {
        let c: Value = serde_json::from_str(line).unwrap();
        ttls.push(c["ttl_ms"].as_u64().unwrap());
        out.insert(
            c["key"].as_str().unwrap().to_string(),
            (c["version"].as_u64().unwrap(), c["state"].clone()),
        );
    }
    (out, ttls)
}

fn populate(sh: &Statehold) {
    std::thread::scope(|s| {
        for lane in 0..8i64 {
            s.spawn(move || {
                let mut chat = lane;
                while chat < CONVERSATIONS {
                    let id = 1_000_000 + chat as u64 * 2;
                    let text = format!(r#"{{"name":"{PLANTED}","n":{chat}}}"#);
                    assert_eq!(sh.update(id, 100_000 + chat, &text).status, 200);
                    if chat % FINISHED_EVERY == 0 {
                        assert_eq!(sh.update(id + 1, 100_000 + chat, "CLEAR").status, 200);
                    }
                    chat += 8;
                }
            });
        }
    });
}

#[test]
fn ten_thousand_conversations_move_from_embedded_to_redis_and_back() {
    let dir = support::temp_dir();
    let bot = reporting_bot();
    let mut embedded = Config::new(bot.port, dir.path());
    embedded.extra = "[audit]\nmax_events = 100000\n".into();
    embedded.private_at_rest();
    let a = Statehold::start(embedded);
    let started = Instant::now();
    populate(&a);
    eprintln!(
        "populated {CONVERSATIONS} conversations in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (dump, _) = timed("export (embedded)", &a, "export", None);
    let (exported, ttls) = records(&dump);
    assert_eq!(exported.len() as i64, CONVERSATIONS);
    let tombstones = exported.values().filter(|(_, s)| s.is_null()).count() as i64;
    assert_eq!(tombstones, CONVERSATIONS / FINISHED_EVERY);
    assert!(
        ttls.iter()
            .all(|t| *t > 23 * 3_600_000 && *t <= 24 * 3_600_000),
        "the default 24 h, left"
    );
    let text = String::from_utf8_lossy(&dump);
    assert!(
        !text.contains(PLANTED) && !text.contains("100042"),
        "keys hashed, values sealed"
    );

    // Into Redis, configured with the same secrets.
    let redis = RedisServer::start(dir.path(), false);
    let mut shared = Config::new(bot.port, dir.path());
    shared.redis = Some(redis.port);
    shared.private_at_rest();
    let b = Statehold::start(shared);
    let (_, said) = timed("import (redis)", &b, "import", Some(&dump));
    assert!(
        said.contains(&format!(
            "imported {CONVERSATIONS} conversations, 0 already"
        )),
        "{said}"
    );
    let (_, again) = cli(&b, "import", Some(&dump));
    assert!(
        again.contains(&format!(
            "imported 0 conversations, {CONVERSATIONS} already"
        )),
        "{again}"
    );

    // Flows continue on Redis from the imported (sealed) snapshots.
    for chat in [1i64, 2, 4242, 9999] {
        let before = bot.count();
        assert_eq!(
            b.update(5_000_000 + chat as u64, 100_000 + chat, "KEEP")
                .status,
            200
        );
        let seen = &bot.requests()[before];
        assert_eq!(seen.header("x-statehold-version"), Some("1"), "chat {chat}");
        let state =
            statehold::contract::decode_b64(seen.header("x-statehold-state").unwrap().as_bytes())
                .unwrap();
        let state: Value = serde_json::from_slice(&state).unwrap();
        assert_eq!(state["n"], chat);
    }
    // The lifetime came along.
    let key = exported.keys().next().unwrap();
    let (ns, id) = key.split_once(':').unwrap();
    let prefix = b.config.key_prefix();
    let pttl = support::redis_cmd(redis.port, &format!("PTTL {{{prefix}:{ns}:{id}}}:s")).unwrap();
    let pttl: u64 = pttl
        .trim_start_matches("int(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(pttl > 23 * 3_600_000 && pttl <= 24 * 3_600_000, "{pttl}");

    // A conversation that moves on in Redis is not undone by importing
    // the old dump again.
    assert_eq!(
        b.update(6_000_001, 100_001, r#"{"n":"moved on"}"#).status,
        200
    );
    let (_, third) = cli(&b, "import", Some(&dump));
    assert!(
        third.contains(&format!("{CONVERSATIONS} already")),
        "{third}"
    );

    // And back, from Redis into a fresh embedded store.
    let (back, _) = timed("export (redis)", &b, "export", None);
    let (from_redis, _) = records(&back);
    assert_eq!(from_redis.len() as i64, CONVERSATIONS);
    let other = tempfile::tempdir().unwrap();
    let mut fresh = Config::new(bot.port, other.path());
    fresh.private_at_rest();
    let c = Statehold::start(fresh);
    let _ = timed("import (embedded)", &c, "import", Some(&back));
    let (round_trip, _) = records(&cli(&c, "export", None).0);
    assert_eq!(
        round_trip, from_redis,
        "keys, versions and sealed values as they were"
    );
    let moved: Vec<&String> = from_redis
        .keys()
        .filter(|k| from_redis[*k] != exported[*k])
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "only the conversation that moved on differs"
    );
    assert_eq!(from_redis[moved[0]].0, 2);
}
