//! The wire contract (CONTRACT.md §3) seen from outside: what reaches the
//! bot, what reaches the client, header and body mode, bad snapshots.

use crate::support;

use serde_json::{json, Value};
use support::{reply_text, Bot, Config, Statehold};

fn last_handled(bot: &Bot) -> Value {
    bot.handled().pop().expect("bot handled a request")
}

#[test]
fn forged_inbound_statehold_headers_never_reach_the_bot() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    let forged_state =
        statehold::contract::encode_state(br#"{"step":"plan","name":"Mallory","applied":[]}"#);
    let forged = [
        ("X-Statehold-State", forged_state.as_str()),
        ("x-statehold-key", "tg:999"),
        ("X-STATEHOLD-VERSION", "99"),
        ("X-Statehold-Status", "restored"),
        ("X-Statehold-Clear", "1"),
        ("X-Statehold-Anything", "x"),
        ("X-Statehold-Turn", "forged"),
        ("X-Statehold-Deferred", "1"),
    ];
    let r = sh.update_with(1, 30, "pro", &forged);
    assert_eq!(r.status, 200);
    assert_eq!(reply_text(&r), "Session expired. Send /start to register.");
    let mut seen = last_handled(&bot)["reserved_seen"].clone();
    // statehold's own turn token, never the client's.
    let turn = seen["x-statehold-turn"].take();
    assert!(
        turn.as_str().is_some_and(|t| t != "forged" && t.len() > 22),
        "{turn}"
    );
    seen.as_object_mut().unwrap().remove("x-statehold-turn");
    assert_eq!(
        seen,
        json!({"x-statehold-key": "tg:30", "x-statehold-version": "0", "x-statehold-status": "new"})
    );

    // Also on paths no route matches.
    let r = support::post_json(sh.addr(), "/other", "{}", &forged).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(last_handled(&bot)["reserved_seen"], json!({}));
}

#[test]
fn no_statehold_header_reaches_the_client() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    // The bot reports state and clear headers on every answer.
    for r in [
        sh.update(1, 31, "/start"),
        sh.update(2, 31, "Jo"),
        sh.update(2, 31, "Jo"), // answered from the dedupe record
        support::post_json(
            sh.addr(),
            "/unrouted",
            &support::tg_update(3, 31, "x"),
            &[("x-demo-report", "{}")],
        )
        .unwrap(),
        sh.update_with(4, 31, "x", &[("x-demo-report", "not json")]),
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.reserved_headers().is_empty(),
            "leaked: {:?}",
            r.reserved_headers()
        );
    }
}

#[test]
fn header_mode_injects_base64url_state_and_version() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    sh.update(1, 32, "/start");
    sh.update(2, 32, "Kim");
    let seen = &last_handled(&bot)["reserved_seen"];
    assert_eq!(seen["x-statehold-status"], "restored");
    assert_eq!(seen["x-statehold-version"], "1");
    let raw = seen["x-statehold-state"].as_str().unwrap();
    assert!(!raw.contains('='), "no padding");
    let state: Value =
        serde_json::from_slice(&statehold::contract::decode_b64(raw.as_bytes()).unwrap()).unwrap();
    assert_eq!(state, json!({"step": "name", "applied": [1]}));
}

#[test]
fn body_mode_round_trip_and_no_field_leaks() {
    let dir = support::temp_dir();
    let bot = Bot::start_with(0, true);
    let mut config = Config::new(bot.port, dir.path());
    config.mode = "body";
    let sh = Statehold::start(config);

    // A client-supplied field is replaced, never passed on.
    let mut update: Value = serde_json::from_str(&support::tg_update(1, 33, "/start")).unwrap();
    update["_statehold"] = json!({"state": {"step": "plan", "name": "Mallory"}});
    let r = support::post_json(sh.addr(), "/telegram", &update.to_string(), &[]).unwrap();
    assert_eq!(reply_text(&r), "Welcome! What's your name?");
    for (id, text, want) in [
        (2, "Lee", "Nice to meet you, Lee. Your email?"),
        (3, "lee@example.com", "Which plan: basic or pro?"),
    ] {
        let r = sh.update(id, 33, text);
        assert_eq!(reply_text(&r), want);
        let body = r.json();
        assert!(body.get("_statehold").is_none(), "field leaked: {body}");
        assert_eq!(
            r.header("content-length").unwrap(),
            r.body.len().to_string()
        );
        assert!(r.reserved_headers().is_empty());
    }
    let seen = last_handled(&bot);
    assert_eq!(seen["status_seen"], "restored");
    assert!(
        seen["reserved_seen"].get("x-statehold-state").is_none(),
        "body mode keeps big state out of headers"
    );
    let stored = sh.stored("tg", "33").unwrap();
    assert_eq!(stored["state"]["name"], "Lee");
    let r = sh.update(4, 33, "pro");
    assert_eq!(
        reply_text(&r),
        "Registered Lee <lee@example.com> on the pro plan. Done!"
    );
    assert_eq!(
        sh.stored("tg", "33"),
        None,
        "clear in the body field deletes the snapshot"
    );
}

#[test]
fn expired_snapshots_are_not_injected() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.store_extra = "ttl = \"1s\"\n".into();
    let sh = Statehold::start(config);
    sh.update(1, 34, "/start");
    sh.update(2, 34, "Max");
    // Let the TTL run out (the behaviour under test is wall-clock time).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = sh.update(3, 34, "max@example.com");
    assert_eq!(reply_text(&r), "Session expired. Send /start to register.");
    let seen = last_handled(&bot);
    assert_eq!(seen["status_seen"], "new");
    assert!(seen["reserved_seen"].get("x-statehold-state").is_none());
}

#[test]
fn undecodable_or_oversized_snapshot_is_refused_and_the_old_one_stays() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.store_extra = "max_state_bytes = 200\n".into();
    let sh = Statehold::start(config);
    sh.update(1, 35, "/start");
    let before = sh.stored("tg", "35").unwrap();

    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
    let big_b64 = statehold::contract::encode_state(big.as_bytes());
    for (n, bad) in [
        "not json at all",
        "{broken",
        "e30=!!",
        big.as_str(),
        big_b64.as_str(),
    ]
    .iter()
    .enumerate()
    {
        let r = sh.update_with(10 + n as u64, 35, "Ned", &[("x-demo-report", bad)]);
        assert_eq!(r.status, 200, "the bot's answer still goes out");
        assert!(r.reserved_headers().is_empty());
        assert_eq!(
            sh.stored("tg", "35").unwrap(),
            before,
            "old snapshot intact"
        );
    }
    assert_eq!(
        sh.metric("statehold_state_saves_total{result=\"rejected\"}"),
        5.0
    );
    let logs = sh.logs();
    assert!(logs.contains("snapshot not stored"), "{logs}");
    assert!(logs.contains("over store.max_state_bytes"));
    assert!(
        !logs.contains("xxxxxxxxxx"),
        "snapshot content never logged"
    );
}

#[test]
fn missing_key_passes_through_or_is_rejected() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    // No chat id: forwarded without any state header.
    let r = support::post_json(
        sh.addr(),
        "/telegram",
        r#"{"update_id":1,"poll":{"id":"5"}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(last_handled(&bot)["reserved_seen"], json!({}));

    let mut config = Config::new(bot.port, dir.path());
    config.data_dir = dir.path().join("reject");
    std::fs::create_dir_all(&config.data_dir).unwrap();
    config.route_extra = "on_missing_key = \"reject\"\n".into();
    let sh2 = Statehold::start(config);
    let handled = bot.handled().len();
    let r = support::post_json(
        sh2.addr(),
        "/telegram",
        r#"{"update_id":2,"message":{"chat":{"id":{"nested":1}}}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 400, "a key of the wrong JSON type is no key");
    assert_eq!(r.json()["error"], "bad_request");
    assert_eq!(bot.handled().len(), handled, "bot not called");
}

#[test]
fn unmatched_paths_are_proxied_untouched() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    let r = support::request(
        sh.addr(),
        "POST",
        "/health/check?x=1&y=two",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
        ],
        b"not json",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = last_handled(&bot);
    assert_eq!(seen["path"], "/health/check");
    assert_eq!(seen["query"], "x=1&y=two");
    assert_eq!(seen["reserved_seen"], json!({}));
    // The peer is not in server.trusted_proxies: its X-Forwarded-For is
    // replaced, never passed on (tests/it/hostile.rs covers both cases).
    assert_eq!(seen["forwarded_for"], "127.0.0.1");
    assert_eq!(seen["forwarded_proto"], "http");
    let names = seen["header_names"].as_array().unwrap();
    assert!(
        !names.contains(&json!("x-hop")),
        "headers named in Connection are hop-by-hop"
    );
    assert!(sh.logs().lines().all(|l| !l.contains("route=/health")));
}

#[test]
fn failed_signature_is_401_and_the_bot_is_not_called() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.route_extra = "[route.verify]\nkind = \"telegram\"\nsecret = \"s3cret-token\"\n".into();
    let sh = Statehold::start(config);
    let r = sh.update(1, 36, "/start");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unverified");
    let r = sh.update_with(
        1,
        36,
        "/start",
        &[("x-telegram-bot-api-secret-token", "wrong")],
    );
    assert_eq!(r.status, 401);
    assert!(bot.handled().is_empty());
    let r = sh.update_with(
        1,
        36,
        "/start",
        &[("x-telegram-bot-api-secret-token", "s3cret-token")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(bot.handled().len(), 1);
    let logs = sh.logs();
    assert!(logs.contains("outcome=\"unverified\""));
    assert!(!logs.contains("s3cret-token"), "secrets never logged");
}
