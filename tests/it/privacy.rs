//! Privacy at rest, as an attacker with the disk would check it: plant
//! phone numbers, names and emails in conversation ids and snapshots, then
//! read every Redis key and value (`SCAN` + `HGETALL`/`GET`/`LRANGE`), the
//! AOF files, the embedded database file and the spool file byte by byte.
//! With `store.key_secret` and `store.encryption` on: 0 occurrences; off
//! (the control): some. And the sealed values still serve the flow, a
//! value copied onto another conversation does not open, and a removed key
//! shows as `undecryptable`.

use crate::support;

use std::path::Path;

use support::{reply_text, Bot, Config, RedisServer, Statehold};

/// What users type, and their ids (phone numbers).
const PHONES: [i64; 3] = [263774227441, 263773703796, 447700900123];
const NAMES: [&str; 3] = ["Tendai Moyo", "Rudo Chikwanha", "Olivia Harcourt"];

fn email(i: usize) -> String {
    format!("{}@example.com", NAMES[i].to_lowercase().replace(' ', "."))
}

/// Every planted string, as bytes.
fn needles() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(PHONES[i].to_string().into_bytes());
        out.push(NAMES[i].as_bytes().to_vec());
        out.push(email(i).into_bytes());
    }
    out
}

fn occurrences(haystack: &[u8]) -> usize {
    needles()
        .iter()
        .map(|n| haystack.windows(n.len()).filter(|w| w == n).count())
        .sum()
}

/// Three users type name and email; each flow continues from its stored
/// (sealed) snapshot, through whichever replica.
fn drive(replicas: &[&Statehold]) {
    for (i, phone) in PHONES.iter().enumerate() {
        let base = 1000 * (i as u64 + 1);
        let sh = |n: usize| replicas[n % replicas.len()];
        assert_eq!(
            reply_text(&sh(0).update(base, *phone, "/start")),
            "Welcome! What's your name?"
        );
        assert_eq!(
            reply_text(&sh(1).update(base + 1, *phone, NAMES[i])),
            format!("Nice to meet you, {}. Your email?", NAMES[i])
        );
        assert_eq!(
            reply_text(&sh(0).update(base + 2, *phone, &email(i))),
            "Which plan: basic or pro?"
        );
        // A redelivery is answered from the (sealed) recorded answer.
        let again = sh(1).update(base + 2, *phone, &email(i));
        assert_eq!(reply_text(&again), "Which plan: basic or pro?");
    }
}

/// Every key name and value in Redis, concatenated.
fn redis_dump(port: u16) -> Vec<u8> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(!keys.is_empty());
    let mut out = Vec::new();
    for key in keys {
        out.extend_from_slice(&key);
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&key).query(&mut con).unwrap(),
            "string" => vec![redis::cmd("GET").arg(&key).query(&mut con).unwrap()],
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut con)
                .unwrap(),
            other => panic!("unexpected key type {other}"),
        };
        values.iter().for_each(|v| out.extend_from_slice(v));
    }
    out
}

/// Every file under `dir`, concatenated.
fn files(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

/// (in Redis keys and values, in the AOF) after the flows.
fn redis_scan(privacy: bool) -> (usize, usize) {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), true);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    if privacy {
        base.private_at_rest();
    }
    let a = Statehold::start(base.replica());
    let b = Statehold::start(base.replica());
    drive(&[&a, &b]);
    // The admin API takes raw ids.
    let stored = a.stored("tg", &PHONES[0].to_string()).expect("stored");
    assert_eq!(stored["state"]["email"], email(0));
    let aof = dir.path().join(format!("redis-{}", redis.port));
    (
        occurrences(&redis_dump(redis.port)),
        occurrences(&files(&aof)),
    )
}

#[test]
fn with_privacy_on_no_id_or_content_is_readable_in_redis_or_its_aof() {
    let (keys_values, aof) = redis_scan(true);
    eprintln!("privacy on: {keys_values} occurrences in Redis keys and values, {aof} in the AOF");
    assert_eq!((keys_values, aof), (0, 0));
}

#[test]
fn control_with_privacy_off_ids_and_contents_are_readable_in_redis() {
    let (keys_values, aof) = redis_scan(false);
    eprintln!("privacy off: {keys_values} occurrences in Redis keys and values, {aof} in the AOF");
    assert!(keys_values > 0 && aof > 0, "{keys_values} {aof}");
}

/// Occurrences in the embedded database file after the flows.
fn embedded_scan(privacy: bool) -> usize {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    if privacy {
        config.private_at_rest();
    }
    let mut sh = Statehold::start(config);
    drive(&[&sh]);
    sh.stop_gracefully();
    occurrences(&std::fs::read(dir.path().join("statehold.db")).expect("database file"))
}

#[test]
fn with_privacy_on_the_embedded_file_holds_no_id_or_content() {
    let (on, off) = (embedded_scan(true), embedded_scan(false));
    eprintln!("embedded file: {on} occurrences with privacy on, {off} off");
    assert_eq!(on, 0);
    assert!(off > 0);
}

/// Occurrences in the spool file: reports spooled while Redis is down
/// (`on_unavailable = "passthrough"`).
fn spool_scan(privacy: bool) -> usize {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let mut redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    config.store_extra = "on_unavailable = \"passthrough\"\nop_timeout = \"300ms\"\n".into();
    if privacy {
        config.private_at_rest();
    }
    let mut sh = Statehold::start(config);
    redis.proc.kill9();
    for (i, phone) in PHONES.iter().enumerate() {
        let r = sh.update(5000 + i as u64, *phone, "/start");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    support::wait_until("three reports spooled", || {
        sh.metric("statehold_spool_depth") == 3.0
    });
    sh.stop_gracefully();
    let spool = dir.path().join(format!("spool-{}.db", sh.config.id));
    occurrences(&std::fs::read(spool).expect("spool file"))
}

#[test]
fn with_privacy_on_the_spool_holds_no_id() {
    let (on, off) = (spool_scan(true), spool_scan(false));
    eprintln!("spool file: {on} occurrences with privacy on, {off} off");
    assert_eq!(on, 0);
    assert!(off > 0);
}

/// A key removed from `store.encryption.keys` while values still use it:
/// the snapshot is reported (log, metric), the bot sees a new
/// conversation, and statehold keeps serving.
#[test]
fn a_value_whose_key_was_removed_is_reported_and_the_bot_sees_new() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.private_at_rest();
    let mut sh = Statehold::start(config.clone());
    drive(&[&sh]);
    sh.stop_gracefully();
    // k1 replaced by k2: every stored value is sealed under a key not listed.
    config.store_extra = config.store_extra.replace("\"k1\"", "\"k2\"");
    config.env.retain(|(k, _)| k != "SH_KEY_K1");
    config.env.push((
        "SH_KEY_K1".into(),
        "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=".into(),
    ));
    let sh = Statehold::start(config.replica());
    let r = sh.update(9001, PHONES[0], "pro");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(reply_text(&r), "Session expired. Send /start to register.");
    let seen = bot.handled().last().expect("handled")["status_seen"].clone();
    assert_eq!(seen, "new");
    assert_eq!(
        sh.metric("statehold_state_loads_total{result=\"undecryptable\"}"),
        1.0
    );
    let logs = sh.logs();
    assert!(logs.contains("stored snapshot cannot be opened"), "{logs}");
    assert!(logs.contains(r#"key id "k1""#), "{logs}");
    assert_eq!(
        occurrences(logs.as_bytes()),
        0,
        "no id or content in the log"
    );
}

/// A sealed snapshot copied onto another conversation's key does not open
/// there (the stored key is the associated data).
#[test]
fn a_sealed_value_copied_onto_another_conversation_does_not_open() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    config.private_at_rest();
    let sh = Statehold::start(config);
    drive(&[&sh]);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut snapshots: Vec<String> = redis::cmd("KEYS").arg("*:s").query(&mut con).unwrap();
    snapshots.sort();
    assert_eq!(snapshots.len(), 3);
    // Rotate the sealed snapshots among the three conversations.
    let values: Vec<Vec<u8>> = snapshots
        .iter()
        .map(|k| redis::cmd("HGET").arg(k).arg("d").query(&mut con).unwrap())
        .collect();
    for (i, key) in snapshots.iter().enumerate() {
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg("d")
            .arg(&values[(i + 1) % 3])
            .query(&mut con)
            .unwrap();
    }
    for (i, phone) in PHONES.iter().enumerate() {
        let r = sh.update(9100 + i as u64, *phone, "pro");
        assert_eq!(reply_text(&r), "Session expired. Send /start to register.");
    }
    assert_eq!(
        sh.metric("statehold_state_loads_total{result=\"undecryptable\"}"),
        3.0
    );
    assert!(sh.logs().contains("fails authentication"));
}
