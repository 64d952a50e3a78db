//! History and rollback (`store.history`), against the real binary and a
//! bot that reports what the test makes it, on both backends: the admin
//! API lists kept versions newest first and serves one by `?version=`;
//! `POST .../rollback` and the bot's `X-Statehold-Rollback` write a kept
//! version again as the newest (404 for a version not kept, 409 once the
//! conversation was cleared); a rollback while the bot is mid-turn waits
//! for the turn.

use crate::support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::recorder::reporting_bot;
use support::{Config, RedisServer, Statehold};

const CHAT: i64 = 777;

fn stored(sh: &Statehold) -> (Value, Value) {
    let s = sh.stored("tg", &CHAT.to_string()).expect("a snapshot");
    (s["version"].clone(), s["state"].clone())
}

fn history_and_rollback(redis: Option<&RedisServer>) {
    let dir = support::temp_dir();
    let bot = reporting_bot();
    let mut config = Config::new(bot.port, dir.path());
    config.redis = redis.map(|r| r.port);
    config.store_extra = "history = 3\n".into();
    let sh = Statehold::start(config);
    let say = |id: u64, text: &str| assert_eq!(sh.update(id, CHAT, text).status, 200);
    for n in 1..=4 {
        say(n, &json!({ "n": n }).to_string());
    }
    let base = format!("/v1/state/tg/{CHAT}");

    let (status, listed) = sh.admin_call("GET", &format!("{base}/history"), "");
    assert_eq!(status, 200);
    let versions: Vec<u64> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [4, 3, 2], "the last three, newest first");
    let newest = &listed[0];
    let text = json!({"n": 4}).to_string();
    assert_eq!(newest["kind"], "write");
    assert_eq!(newest["bytes"], text.len());
    let digest: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(newest["sha256"], digest);
    assert!(newest["at"].as_u64().unwrap() > 1_700_000_000_000);

    let (status, v3) = sh.admin_call("GET", &format!("{base}?version=3"), "");
    assert_eq!((status, v3["state"].clone()), (200, json!({"n": 3})));
    assert_eq!(
        sh.admin_call("GET", &format!("{base}?version=1"), "").0,
        404
    );

    // The admin API: version 2 again, as version 5.
    let (status, done) = sh.admin_call("POST", &format!("{base}/rollback"), r#"{"to": 2}"#);
    assert_eq!((status, done["version"].clone()), (200, json!(5)), "{done}");
    assert_eq!(stored(&sh), (json!(5), json!({"n": 2})));
    assert_eq!(
        sh.admin_call("POST", &format!("{base}/rollback"), r#"{"to": 1}"#)
            .0,
        404
    );

    // The bot: `previous` (the newest kept version before 5 is 4).
    say(10, "ROLLBACK previous");
    assert_eq!(stored(&sh), (json!(6), json!({"n": 4})));
    let (_, listed) = sh.admin_call("GET", &format!("{base}/history"), "");
    assert_eq!(listed[0]["kind"], "rollback");
    assert_eq!(listed[1]["kind"], "rollback");
    // A version not kept: refused, the snapshot stays.
    let rejected = "statehold_state_saves_total{result=\"rejected\"}";
    say(11, "ROLLBACK 1");
    assert_eq!(stored(&sh), (json!(6), json!({"n": 4})));
    assert_eq!(sh.metric(rejected), 1.0);

    // Mid-turn: the rollback waits for the bot's turn, then lands on top.
    std::thread::scope(|s| {
        let before = bot.count();
        let slow = s.spawn(|| sh.update(12, CHAT, r#"SLOW {"n":7}"#));
        support::wait_until("the bot holds the turn", || bot.count() > before);
        let (status, done) = sh.admin_call("POST", &format!("{base}/rollback"), r#"{"to": 5}"#);
        assert_eq!(slow.join().unwrap().status, 200);
        assert_eq!((status, done["version"].clone()), (200, json!(8)), "{done}");
    });
    assert_eq!(stored(&sh), (json!(8), json!({"n": 2})));
    let (_, listed) = sh.admin_call("GET", &format!("{base}/history"), "");
    let kinds: Vec<(u64, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [(8, "rollback"), (7, "write"), (6, "rollback")]);

    // Cleared since: 409.
    say(13, "CLEAR");
    let (status, _) = sh.admin_call("POST", &format!("{base}/rollback"), r#"{"to": 7}"#);
    assert_eq!(status, 409);
}

#[test]
fn history_and_rollback_on_the_embedded_store() {
    history_and_rollback(None);
}

#[test]
fn history_and_rollback_on_redis() {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    history_and_rollback(Some(&redis));
}
