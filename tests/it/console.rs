//! The console's own calls (`/v1/console/…`, `admin/console_api.rs`)
//! against the real binary on the embedded store, one Redis with privacy
//! on (hashed keys, sealed values) and a Redis Cluster: a conversation's
//! summary names no value; a reveal and a diff answer the values and each
//! appends a `view` event to the trail; the recent list names each
//! conversation once, newest first, and a listed stored key opens the
//! same conversation (also in the state API, for a rollback); bad input
//! is a 400 that loses nothing. The browser test
//! (`clients/python/tests/test_console.py`) drives the page on top.

use crate::support;

use serde_json::{json, Value};
use support::recorder::reporting_bot;
use support::store::Store;
use support::{Config, Statehold};

// Long enough never to turn up in a port number or a timestamp of the log.
const CHAT: i64 = 8_305_551_234;

fn console_calls(store: Store, private: bool) {
    let dir = support::temp_dir();
    let bot = reporting_bot();
    let mut config = Config::new(bot.port, dir.path());
    store.configure(&mut config);
    config.store_extra = "history = 5\n".into();
    config.extra = "[audit]\nmax_events = 1000\n".into();
    if private {
        config.private_at_rest();
    }
    let sh = Statehold::start(config);
    let say = |id: u64, chat: i64, text: &str| {
        assert_eq!(sh.update(id, chat, text).status, 200);
    };
    say(1, CHAT, r#"{"step":"name","name":"Ada-secret-name"}"#);
    say(
        2,
        CHAT,
        r#"{"step":"pin","name":"Ada-secret-name","pin":"pin-4711-secret"}"#,
    );
    say(3, CHAT + 1, r#"{"step":"name"}"#);
    let key = format!("tg:{CHAT}");

    // The summary: status, version, lifetime; never a value.
    let (status, summary) =
        sh.admin_call("GET", &format!("/v1/console/conversation?key={key}"), "");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["status"], "stored");
    assert_eq!(summary["version"], 2);
    let ttl = summary["ttl_ms"].as_u64().expect("a lifetime left");
    assert!(ttl > 0 && ttl <= 7 * 24 * 3600 * 1000, "{summary}");
    assert!(
        !summary.to_string().contains("Ada-secret-name")
            && !summary.to_string().contains("pin-4711-secret")
    );
    let stored_key = summary["stored_key"].as_str().unwrap().to_string();
    assert_eq!(
        stored_key != key,
        private,
        "hashed with store.key_secret only"
    );
    let (_, none) = sh.admin_call("GET", "/v1/console/conversation?key=tg:999", "");
    assert_eq!(none["status"], "none");

    // A reveal answers the values and is audited as a view.
    let (status, shown) = sh.admin_call("POST", &format!("/v1/console/reveal?key={key}"), "");
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["state"]["pin"], "pin-4711-secret");
    assert_eq!(shown["version"], 2);
    // A diff: v1 → v2 by member, audited too.
    let (status, diff) =
        sh.admin_call("POST", &format!("/v1/console/diff?key={key}&version=2"), "");
    assert_eq!(status, 200, "{diff}");
    assert_eq!(diff["from"], 1);
    assert_eq!(
        diff["changes"],
        json!([
            {"member": "pin", "before": null, "after": "pin-4711-secret"},
            {"member": "step", "before": "name", "after": "pin"},
        ])
    );
    let (_, trail) = sh.admin_call("GET", &format!("/v1/audit?key={key}&limit=10"), "");
    let kinds: Vec<(&str, u64, u64)> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["event"];
            let v = |n: &str| e[n].as_u64().unwrap();
            (
                e["kind"].as_str().unwrap(),
                v("from_version"),
                v("to_version"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("view", 2, 2),
            ("view", 2, 2),
            ("write", 1, 2),
            ("write", 0, 1)
        ],
        "{trail}"
    );
    assert!(
        !trail.to_string().contains("pin-4711-secret"),
        "no value in the trail"
    );

    // Recent conversations: each once, newest first, by stored key.
    let (status, recent) = sh.admin_call("GET", "/v1/console/recent?limit=5", "");
    assert_eq!(status, 200, "{recent}");
    let keys: Vec<&str> = recent
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{recent}");
    assert_eq!(keys[0], stored_key, "the views made it the newest");
    assert_eq!(recent[0]["kind"], "view");
    // A listed (stored) key opens the same conversation, and the state
    // API takes it for a rollback.
    let listed = stored_key.replace('#', "%23");
    let (_, by_stored) =
        sh.admin_call("GET", &format!("/v1/console/conversation?key={listed}"), "");
    assert_eq!(by_stored["version"], 2, "{listed}: {by_stored}");
    let (ns, id) = stored_key.split_once(':').unwrap();
    let ns = ns.replace('#', "%23");
    let (status, links) = sh.admin_call("GET", &format!("/v1/links/{ns}/{id}"), "");
    assert_eq!(status, 200, "{links}");
    assert_eq!(links["key"], stored_key.as_str());
    let (status, rolled) = sh.admin_call(
        "POST",
        &format!("/v1/state/{ns}/{id}/rollback"),
        r#"{"to": 1}"#,
    );
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["version"], 3);
    let r = sh.update(4, CHAT, "KEEP");
    assert_eq!(r.status, 200);
    assert_eq!(
        sh.stored("tg", &CHAT.to_string()).expect("a snapshot")["state"]["step"],
        "name",
        "the bot got the rolled-back state"
    );

    // Bad input: a clear refusal, nothing lost, nothing audited.
    for (method, path) in [
        ("GET", "/v1/console/conversation"),
        ("GET", "/v1/console/conversation?key=tg"),
        ("GET", "/v1/console/conversation?key=t%7Bg:1"),
        ("POST", "/v1/console/diff?key=tg:4242&version=x"),
        ("GET", "/v1/console/recent?limit=-1"),
        ("GET", "/v1/console/conversation?key=tg:1&key=tg:2"),
        ("POST", "/v1/console/reveal?key=tg:1&keys=tg:2"),
    ] {
        let (status, body) = sh.admin_call(method, path, "");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (status, _) = sh.admin_call(
        "POST",
        &format!("/v1/console/diff?key={key}&version=99"),
        "",
    );
    assert_eq!(status, 404);
    let (status, _) = sh.admin_call("POST", "/v1/console/reveal?key=tg:999", "");
    assert_eq!(status, 404);
    if !private {
        // Without key_secret a stored-key namespace is no namespace.
        let (status, _) = sh.admin_call("GET", "/v1/console/conversation?key=tg%23:ab", "");
        assert_eq!(status, 400);
    }
    let (_, after) = sh.admin_call("GET", &format!("/v1/audit?key={key}&limit=10"), "");
    let views = |t: &Value| {
        t.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["kind"] == "view")
            .count()
    };
    assert_eq!(views(&after), 2, "refusals audit nothing");
    let logs = sh.logs();
    assert!(
        !logs.contains("pin-4711-secret") && !logs.contains("Ada-secret-name"),
        "no value logged"
    );
    if private {
        assert!(!logs.contains(&CHAT.to_string()), "no raw id logged");
    }
}

#[test]
fn console_calls_on_the_embedded_store() {
    console_calls(Store::Embedded, false);
}

#[test]
fn console_calls_on_redis_with_privacy_on() {
    support::store::with_redis(|store| console_calls(store, true));
}

#[test]
fn console_calls_on_a_redis_cluster() {
    support::store::with_cluster(|store| console_calls(store, false));
}

/// Without a token the console's calls are off, as the state API is;
/// with a wrong one, refused.
#[test]
fn console_calls_need_the_token() {
    let dir = support::temp_dir();
    let bot = reporting_bot();
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    let wrong = [("authorization", "Bearer wrong-token")];
    let r = support::request(
        sh.admin(),
        "POST",
        "/v1/console/reveal?key=tg:1",
        &wrong,
        b"",
    )
    .expect("admin answers");
    assert_eq!(r.status, 401, "{}", r.text());
    let r = support::request(sh.admin(), "GET", "/v1/console/recent", &[], b"").expect("answers");
    assert_eq!(r.status, 401);
}

/// The summary's status follows the record: `cleared` after a delete,
/// `expired` once the record's lifetime ran out (the trail says there was
/// one), `none` for a key never stored; the lifetime left counts down.
fn status_follows_clear_and_expiry(store: Store) {
    let dir = support::temp_dir();
    let bot = reporting_bot();
    let mut config = Config::new(bot.port, dir.path());
    store.configure(&mut config);
    config.store_extra = "ttl = \"1s\"\npurge_interval = \"1s\"\n".into();
    config.extra = "[audit]\nmax_events = 1000\n".into();
    let snapshot_key = |chat: i64| format!("{{{}:tg:{chat}}}:s", config.key_prefix());
    let expiring_key = snapshot_key(CHAT + 1);
    let sh = Statehold::start(config);
    let status = |chat: i64| {
        let (code, s) = sh.admin_call(
            "GET",
            &format!("/v1/console/conversation?key=tg:{chat}"),
            "",
        );
        assert_eq!(code, 200, "{s}");
        s
    };
    assert_eq!(sh.update(1, CHAT, r#"{"n":1}"#).status, 200);
    assert_eq!(sh.update(2, CHAT + 1, r#"{"n":1}"#).status, 200);
    let fresh = status(CHAT + 1);
    assert_eq!(fresh["status"], "stored");
    assert!(fresh["ttl_ms"].as_u64().unwrap() <= 1000, "{fresh}");
    assert_eq!(
        sh.admin_call("DELETE", &format!("/v1/state/tg/{CHAT}"), "")
            .0,
        200
    );
    let cleared = status(CHAT);
    assert_eq!(
        (&cleared["status"], &cleared["version"]),
        (&json!("cleared"), &json!(2))
    );
    store.wait_expired(&sh, &expiring_key, CHAT + 1);
    let expired = status(CHAT + 1);
    assert_eq!(expired["status"], "expired", "{expired}");
    assert_eq!(expired["ttl_ms"], Value::Null);
    assert_eq!(status(CHAT + 2)["status"], "none");
}

#[test]
fn the_status_follows_a_clear_and_an_expiry_on_the_embedded_store() {
    status_follows_clear_and_expiry(Store::Embedded);
}

#[test]
fn the_status_follows_a_clear_and_an_expiry_on_redis() {
    support::store::with_redis(status_follows_clear_and_expiry);
}
