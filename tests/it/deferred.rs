//! Deferred turns with real processes (issue 19): a bot that answers every
//! update at once (`X-Statehold-Deferred: 1`) and reports 50 to 400 ms
//! later from a background task (`POST /v1/turns/<token>`), killed with
//! kill -9 between rounds, keeps every step of every user; the next step
//! of a conversation is handled only once the last one's report is saved;
//! on two replicas sharing Redis the report goes to the other replica, and
//! still lands after the replica holding the turn died. A bot that defers
//! and never reports times out: the snapshot stays, the late report gets
//! 404.

use crate::support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::{find_header, post_json, reply_text, Bot, Config, RedisServer, Statehold};

const USERS: i64 = 20;
const STEPS: [&str; 4] = ["/start", "name", "email", "pro"];

/// What user `u` types at step `s`.
fn typed(u: i64, s: usize) -> String {
    match STEPS[s] {
        "name" => format!("name{u}"),
        "email" => format!("user{u}@example.com"),
        other => other.to_string(),
    }
}

/// The answer user `u` must see at step `s`.
fn expected_reply(u: i64, s: usize) -> String {
    match s {
        0 => "Welcome! What's your name?".into(),
        1 => format!("Nice to meet you, name{u}. Your email?"),
        2 => "Which plan: basic or pro?".into(),
        _ => format!("Registered name{u} <user{u}@example.com> on the pro plan. Done!"),
    }
}

/// Late reports saved or cleared so far, over every replica.
fn reported(replicas: &[Statehold]) -> f64 {
    replicas
        .iter()
        .map(|r| {
            r.metric_or_zero(r#"statehold_deferred_reports_total{route="tg",result="saved"}"#)
                + r.metric_or_zero(
                    r#"statehold_deferred_reports_total{route="tg",result="cleared"}"#,
                )
        })
        .sum()
}

/// 20 users type the four steps in rounds; each request of user `u` at
/// step `s` goes through replica `(u + s) % n` and its bot reports to
/// replica `(u + s + 1) % n` (the other one, with two). Every bot is
/// killed with kill -9 between rounds.
fn flow_survives_kill_9_between_rounds(replicas: &[Statehold], bots: &mut [Bot]) {
    let n = replicas.len();
    for s in 0..STEPS.len() {
        std::thread::scope(|scope| {
            for u in 0..USERS {
                let via = &replicas[(u as usize + s) % n];
                let report_to = replicas[(u as usize + s + 1) % n].admin().to_string();
                scope.spawn(move || {
                    let delay = (50 + (u * 37 + s as i64 * 91) % 351).to_string();
                    let headers = [
                        ("x-demo-defer-ms", delay.as_str()),
                        ("x-demo-report-to", report_to.as_str()),
                    ];
                    let update_id = (u * 10 + s as i64 + 1) as u64;
                    let r = via.update_with(update_id, 1000 + u, &typed(u, s), &headers);
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert!(r.reserved_headers().is_empty(), "{:?}", r.headers);
                    assert_eq!(reply_text(&r), expected_reply(u, s), "user {u} step {s}");
                });
            }
        });
        let want = (USERS as usize * (s + 1)) as f64;
        support::wait_until("every late report of the round is saved", || {
            reported(replicas) >= want
        });
        assert_eq!(reported(replicas), want, "one report per step");
        for bot in bots.iter() {
            // Step s of every user saw the state its step s-1 reported.
            for h in bot.handled() {
                assert_eq!(h["version_seen"], json!(s.to_string()), "{h}");
            }
            assert_eq!(bot.overlaps(), 0);
            assert!(bot.reports().iter().all(|r| r["status"] == 200));
        }
        if s == 2 {
            let state = replicas[0].stored("tg", "1007").expect("stored");
            assert_eq!(state["state"]["name"], "name7", "{state}");
            assert_eq!(state["state"]["email"], "user7@example.com");
            assert_eq!(state["state"]["applied"], json!([71, 72, 73]));
        }
        for bot in bots.iter_mut() {
            bot.crash_and_restart();
        }
    }
    for r in replicas {
        // A turn reported on the other replica: its holder hears so at its
        // next lease extension.
        support::wait_until("no turn left deferred", || {
            r.metric("statehold_turns_deferred") == 0.0
        });
        assert!(!r.logs().contains("no late report"), "no timeouts");
    }
}

/// A fast typer: the second message follows the first at once (10 ms,
/// through another replica when there are two) while the first is still
/// deferred; it is handled after the first's report is saved, in order.
fn fast_typer_is_served_in_order(replicas: &[Statehold], bots: &[Bot]) {
    let (first, second) = (&replicas[0], &replicas[replicas.len() - 1]);
    let report_to = second.admin().to_string();
    let headers = [
        ("x-demo-defer-ms", "300"),
        ("x-demo-report-to", report_to.as_str()),
    ];
    let r = first.update_with(501, 77, "/start", &headers);
    assert_eq!(reply_text(&r), expected_reply(0, 0));
    std::thread::sleep(std::time::Duration::from_millis(10));
    let r = second.update_with(502, 77, "Zoe", &headers);
    assert_eq!(reply_text(&r), "Nice to meet you, Zoe. Your email?");
    let mut handled: Vec<Value> = bots
        .iter()
        .flat_map(Bot::handled)
        .filter(|h| h["key"] == "tg:77")
        .collect();
    handled.sort_by_key(|h| h["update_id"].as_u64());
    assert_eq!(handled.len(), 2);
    assert_eq!(handled[1]["version_seen"], "1", "saw the first report");
    support::wait_until("the second report", || {
        let reports = bots.iter().flat_map(Bot::reports);
        reports.filter(|r| r["key"] == "tg:77").count() == 2
    });
    let state = second.stored("tg", "77").expect("stored");
    assert_eq!(state["state"]["applied"], json!([501, 502]));
    assert_eq!(state["version"], 2);
}

#[test]
fn a_deferring_bot_keeps_every_step_embedded() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let mut bots = vec![Bot::start(0)];
    let sh = Statehold::start(Config::new(bots[0].port, dir.path()));
    let replicas = vec![sh];
    flow_survives_kill_9_between_rounds(&replicas, &mut bots);
    fast_typer_is_served_in_order(&replicas, &bots);
}

#[test]
fn a_deferring_bot_keeps_every_step_on_two_redis_replicas() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let mut bots = vec![Bot::start(0), Bot::start(0)];
    let mut base = Config::new(bots[0].port, dir.path());
    base.redis = Some(redis.port);
    base.private_at_rest();
    let mut second = base.replica();
    second.upstream = bots[1].port;
    let replicas = vec![Statehold::start(base), Statehold::start(second)];
    flow_survives_kill_9_between_rounds(&replicas, &mut bots);
    fast_typer_is_served_in_order(&replicas, &bots);
}

/// The replica holding a deferred turn dies; the report reaches the
/// other replica while the lease is still valid and is saved there.
#[test]
fn a_report_outlives_the_replica_that_held_the_turn() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    base.store_extra = "lock_lease = \"3s\"\n".into();
    let mut holder = Statehold::start(base.clone());
    let other = Statehold::start(base.replica());
    assert_eq!(holder.update(1, 5, "/start").status, 200);
    let report_to = other.admin().to_string();
    let headers = [
        ("x-demo-defer-ms", "800"),
        ("x-demo-report-to", report_to.as_str()),
    ];
    let r = holder.update_with(2, 5, "Ada", &headers);
    assert_eq!(reply_text(&r), "Nice to meet you, Ada. Your email?");
    holder.proc.kill9();
    support::wait_until("the late report", || !bot.reports().is_empty());
    assert_eq!(bot.reports()[0]["status"], 200, "{:?}", bot.reports());
    let state = other.stored("tg", "5").expect("stored");
    assert_eq!(state["state"]["name"], "Ada");
    assert_eq!(state["version"], 2);
    let r = other.update(3, 5, "ada@example.com");
    assert_eq!(reply_text(&r), "Which plan: basic or pro?");
}

fn turn_token_of(bot: &Bot, update_id: u64) -> String {
    let handled = bot.handled();
    let h = handled
        .iter()
        .find(|h| h["update_id"] == update_id)
        .expect("handled");
    h["reserved_seen"]["x-statehold-turn"]
        .as_str()
        .expect("a turn token")
        .to_string()
}

fn late_report(sh: &Statehold, token: &str, body: &str) -> (u16, Value) {
    let r = post_json(sh.admin(), &format!("/v1/turns/{token}"), body, &[]).expect("admin");
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// A bot that defers and never reports: the turn is released after
/// `route.report_timeout`, the next request sees the old snapshot and
/// version, and the late report then gets 404 and changes nothing.
#[test]
fn a_deferred_turn_times_out_and_keeps_the_snapshot() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.store_extra = "lock_lease = \"300ms\"\n".into();
    config.route_extra = "report_timeout = \"1s\"\n".into();
    let sh = Statehold::start(config);
    assert_eq!(sh.update(1, 4242424, "/start").status, 200);
    let never = [
        ("x-demo-defer-ms", "never"),
        ("x-demo-report-to", "127.0.0.1:9"),
    ];
    assert_eq!(sh.update_with(2, 4242424, "Alice", &never).status, 200);
    let token = turn_token_of(&bot, 2);
    assert!(token.len() >= 22, "128 random bits and more: {token}");
    // Waits for the timeout, then sees the snapshot before "Alice".
    let r = sh.update(3, 4242424, "Bob");
    assert_eq!(reply_text(&r), "Nice to meet you, Bob. Your email?");
    let seen = bot
        .handled()
        .into_iter()
        .find(|h| h["update_id"] == 3)
        .expect("handled");
    assert_eq!(seen["version_seen"], "1");
    let (status, _) = late_report(
        &sh,
        &token,
        r#"{"state": {"step": "email", "name": "Alice"}}"#,
    );
    assert_eq!(status, 404);
    let state = sh.stored("tg", "4242424").expect("stored");
    assert_eq!(state["state"]["name"], "Bob");
    assert_eq!(state["version"], 2);
    let series = |result: &str| {
        sh.metric(&format!(
            r#"statehold_deferred_reports_total{{route="tg",result="{result}"}}"#
        ))
    };
    assert_eq!(series("timeout"), 1.0);
    assert_eq!(series("unknown"), 1.0);
    let logs = sh.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("no late report within route.report_timeout"))
        .expect("one warning");
    assert!(!warning.contains("4242424"), "the key is masked: {warning}");
    assert!(!logs.contains(&token), "a token is never logged");
}

/// The edges: a redelivery of a deferred update is answered from its
/// dedupe record without running the bot; a malformed report is 400 and
/// changes nothing (the turn still takes a good one); an unknown token is
/// 404; a deferred answer that also reports is refused (counted, the
/// snapshot stays, the turn ends); the route's rules judge a late report
/// (422, the old snapshot stays); a client's own X-Statehold-Turn never
/// reaches the bot.
#[test]
fn late_reports_are_checked_like_answers() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}}"#,
    )
    .unwrap();
    let mut config = Config::new(bot.port, dir.path());
    config.route_extra = format!("schema = \"{}\"\n", schema.display());
    let sh = Statehold::start(config);
    let admin = sh.admin().to_string();
    let manual = [
        ("x-demo-defer-ms", "never"),
        ("x-demo-report-to", admin.as_str()),
    ];
    assert_eq!(sh.update(1, 9, "/start").status, 200);

    // Deferred; the redelivery waits for the turn and gets the record.
    let first = sh.update_with(2, 9, "Eve", &manual);
    let token = turn_token_of(&bot, 2);
    let redelivery = std::thread::scope(|scope| {
        let again = scope.spawn(|| sh.update_with(2, 9, "Eve", &manual));
        support::wait_until("the redelivery waits for the turn", || {
            sh.metric_or_zero("statehold_turns_waiting") == 1.0
        });
        assert_eq!(
            late_report(&sh, &token, "{\"state\": 1, \"clear\": true}").0,
            400
        );
        assert_eq!(late_report(&sh, &token, "not json").0, 400);
        assert_eq!(late_report(&sh, "bogus", r#"{"unchanged": true}"#).0, 404);
        let (status, body) = late_report(
            &sh,
            &token,
            r#"{"state": {"step": "email", "name": "Eve", "applied": [1, 2]}}"#,
        );
        assert_eq!((status, &body["version"]), (200, &json!(2)), "{body}");
        assert_eq!(body["key"], "tg:9");
        again.join().unwrap()
    });
    assert_eq!(redelivery.body, first.body, "answered from the record");
    assert_eq!(
        bot.handled().iter().filter(|h| h["update_id"] == 2).count(),
        1,
        "the bot ran once"
    );
    assert_eq!(
        late_report(&sh, &token, r#"{"unchanged": true}"#).0,
        404,
        "used"
    );

    // The route's schema judges the late report: 422, the old one stays.
    sh.update_with(3, 9, "x", &manual);
    let token = turn_token_of(&bot, 3);
    let long = "n".repeat(30);
    let (status, _) = late_report(
        &sh,
        &token,
        &format!(r#"{{"state": {{"name": "{long}"}}}}"#),
    );
    assert_eq!(status, 422);
    assert_eq!(sh.stored("tg", "9").unwrap()["version"], 2);

    // A deferred answer that reports too: refused, the turn ends.
    let ambiguous = [
        ("x-demo-defer-ms", "never"),
        ("x-demo-report-to", admin.as_str()),
        ("x-demo-report", r#"{"step":"forged"}"#),
    ];
    assert_eq!(sh.update_with(4, 9, "y", &ambiguous).status, 200);
    assert_eq!(sh.stored("tg", "9").unwrap()["version"], 2);
    let r = sh.update(5, 9, "eve@example.com");
    assert_eq!(
        reply_text(&r),
        "Which plan: basic or pro?",
        "{} {}",
        r.status,
        r.text()
    );
    let series = |result: &str| {
        sh.metric(&format!(
            r#"statehold_deferred_reports_total{{route="tg",result="{result}"}}"#
        ))
    };
    assert_eq!((series("saved"), series("refused")), (1.0, 2.0));
    assert_eq!(sh.metric("statehold_turns_deferred"), 0.0);

    // A client cannot hand the bot a turn token of its own.
    let forged = [
        ("x-statehold-turn", "forged"),
        ("X_Statehold_Turn", "forged"),
    ];
    sh.update_with(6, 10, "/start", &forged);
    let handled = bot.handled();
    let h = handled.iter().find(|h| h["update_id"] == 6).unwrap();
    assert_ne!(h["reserved_seen"]["x-statehold-turn"], "forged");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for h in &handled {
        if let Some(t) = h["reserved_seen"]["x-statehold-turn"].as_str() {
            *seen.entry(t.to_string()).or_default() += 1;
        }
    }
    assert!(seen.values().all(|&n| n == 1), "one token per turn");
    assert!(find_header(&first.headers, "x-statehold-turn").is_none());
}

/// What a deferred turn costs on Redis: its acquire, `defer.lua`, and the
/// report's commit (three scripts), plus `adopt.lua` when the report
/// reaches another replica, and there the holder's next lease extension,
/// which tells it the turn ended (five, one of them off the request
/// path). An answer's turn costs two.
#[test]
fn a_deferred_turn_costs_three_round_trips_five_on_another_replica() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    let (a, b) = (
        Statehold::start(base.clone()),
        Statehold::start(base.replica()),
    );
    // The replicas' key marks at start are not a request's scripts.
    let started = support::redis_script_runs(redis.port);
    a.update(1, 31, "/start");
    support::wait_until("the first turn's scripts", || {
        support::redis_script_runs(redis.port) - started == 2
    });
    // The test posts each report once the deferred answer reached it (the
    // turn is parked by then: no report overtakes its deferral).
    let cost = |report_to: &Statehold, first: u64| {
        let before = support::redis_script_runs(redis.port);
        let headers = [("x-demo-defer-ms", "never"), ("x-demo-report-to", "-")];
        for id in first..first + 10 {
            let r = a.update_with(id, 31, &format!("n{id}"), &headers);
            assert_eq!(r.status, 200);
            let token = turn_token_of(&bot, id);
            let (status, _) = late_report(report_to, &token, r#"{"unchanged": true}"#);
            assert_eq!(status, 200);
        }
        support::wait_until("the last release", || {
            a.metric("statehold_turns_deferred") == 0.0
        });
        support::redis_script_runs(redis.port) - before
    };
    assert_eq!(cost(&a, 2), 30, "acquire, defer, commit");
    assert_eq!(cost(&b, 12), 50, "acquire, defer, adopt, commit; extend");
}

/// A late report may also roll back (`"rollback": "previous"`, with
/// `store.history`) or link the conversation to a member, under the answer
/// headers' rules.
#[test]
fn a_late_report_rolls_back_and_links_like_an_answer() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.store_extra = "history = 5\n".into();
    let sh = Statehold::start(config);
    let never = [("x-demo-defer-ms", "never"), ("x-demo-report-to", "-")];
    sh.update(1, 61, "/start");
    sh.update(2, 61, "Ann"); // version 2: name Ann
    sh.update_with(3, 61, "ann@example.com", &never);
    let token = turn_token_of(&bot, 3);
    let (status, body) = late_report(
        &sh,
        &token,
        r#"{"unchanged": true, "rollback": "previous"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let state = sh.stored("tg", "61").expect("stored");
    assert_eq!(state["version"], 3, "the rollback is a new version");
    assert_eq!(
        state["state"]["step"], "name",
        "version 1's snapshot: {state}"
    );
    // Ambiguous: a rollback with a state is refused (422), nothing changes.
    sh.update_with(4, 61, "Bob", &never);
    let token = turn_token_of(&bot, 4);
    let (status, _) = late_report(
        &sh,
        &token,
        r#"{"state": {"step": "x"}, "rollback": "previous"}"#,
    );
    assert_eq!(status, 422);
    assert_eq!(sh.stored("tg", "61").unwrap()["version"], 3);

    // A link: the conversation becomes a channel of member:7.
    sh.update_with(5, 62, "/start", &never);
    let token = turn_token_of(&bot, 5);
    let (status, body) = late_report(
        &sh,
        &token,
        r#"{"state": {"step": "name", "applied": [5]}, "link": "member:7"}"#,
    );
    assert_eq!(status, 200, "{body}");
    sh.update(6, 62, "Cy");
    let handled = bot.handled();
    let h = handled
        .iter()
        .find(|h| h["update_id"] == 6)
        .expect("handled");
    assert_eq!(h["reserved_seen"]["x-statehold-key"], "member:7", "{h}");
    assert_eq!(h["reserved_seen"]["x-statehold-via"], "tg:62");
    assert_eq!(sh.metric(r#"statehold_links_total{result="linked"}"#), 1.0);
}

/// A graceful stop waits (within `server.shutdown_grace`) for the late
/// reports of the turns it holds: the admin listener still takes them.
#[test]
fn a_graceful_stop_waits_for_deferred_reports() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut sh = Statehold::start(Config::new(bot.port, dir.path()));
    sh.update(1, 81, "/start");
    let admin = sh.admin().to_string();
    let headers = [
        ("x-demo-defer-ms", "800"),
        ("x-demo-report-to", admin.as_str()),
    ];
    let r = sh.update_with(2, 81, "Dee", &headers);
    assert_eq!(reply_text(&r), "Nice to meet you, Dee. Your email?");
    assert!(sh.stop_gracefully().success());
    assert_eq!(bot.reports().len(), 1);
    assert_eq!(bot.reports()[0]["status"], 200, "saved before the exit");
    assert!(sh
        .logs()
        .contains("waiting for deferred turns' late reports"));
    sh.start_again();
    let state = sh.stored("tg", "81").expect("stored");
    assert_eq!(state["state"]["name"], "Dee");
}

/// A late report claimed just as a graceful stop began is answered before
/// the process exits, though its save takes a while (Redis holds writes
/// for 0.7 s, within `store.op_timeout`: `CLIENT PAUSE`). Before: the stop went on once the report
/// had claimed its turn, and the process exited under the save: the bot's
/// report got no answer, and the saved state was not confirmed to it.
#[test]
fn a_late_report_in_flight_at_a_graceful_stop_is_answered() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    let mut sh = Statehold::start(config);
    sh.update(1, 83, "/start");
    let admin = sh.admin().to_string();
    let headers = [
        ("x-demo-defer-ms", "300"),
        ("x-demo-report-to", admin.as_str()),
    ];
    let r = sh.update_with(2, 83, "Eve", &headers);
    assert_eq!(reply_text(&r), "Nice to meet you, Eve. Your email?");
    support::redis_cmd(redis.port, "CLIENT PAUSE 700 WRITE").unwrap();
    assert!(sh.stop_gracefully().success());
    assert_eq!(bot.reports().len(), 1);
    assert_eq!(bot.reports()[0]["status"], 200, "answered before the exit");
    sh.start_again();
    assert_eq!(
        sh.stored("tg", "83").expect("stored")["state"]["name"],
        "Eve"
    );
}
