//! The admin listener (CONTRACT.md §5, §6).

use crate::support;

use serde_json::json;
use support::{reply_text, Bot, Config, Statehold};

const AUTH: (&str, &str) = ("authorization", "Bearer test-admin-token");

#[test]
fn health_readiness_and_metrics() {
    let dir = support::temp_dir();
    let mut bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    assert_eq!(support::get(sh.admin(), "/healthz").unwrap().status, 200);
    let ready = support::get(sh.admin(), "/readyz").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());

    sh.update(1, 70, "/start");
    let metrics = sh.metrics();
    for name in [
        "statehold_requests_total",
        "statehold_request_duration_seconds_bucket",
        "statehold_upstream_duration_seconds_bucket",
        "statehold_store_duration_seconds_bucket",
        "statehold_state_loads_total{result=\"miss\"} 1",
        "statehold_state_saves_total{result=\"ok\"} 1",
        "statehold_dedupe_hits_total",
        "statehold_lock_wait_seconds_bucket",
        "statehold_conflicts_total",
        "statehold_store_up 1",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }

    bot.proc.kill9();
    let ready = support::get(sh.admin(), "/readyz").unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "upstream unreachable");
}

#[test]
fn state_api_needs_the_token_and_reads_writes_deletes() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    let path = "/v1/state/tg/71";
    assert_eq!(support::get(sh.admin(), path).unwrap().status, 401);
    let wrong = support::request(
        sh.admin(),
        "GET",
        path,
        &[("authorization", "Bearer nope")],
        b"",
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(
        support::request(sh.admin(), "GET", path, &[AUTH], b"")
            .unwrap()
            .status,
        404
    );

    // An operator puts a conversation at the plan step; the flow continues from there.
    let state = json!({"step": "plan", "name": "Pia", "email": "pia@example.com", "applied": []});
    let put = support::request(
        sh.admin(),
        "PUT",
        path,
        &[AUTH],
        state.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["version"], 1);
    assert_eq!(sh.stored("tg", "71").unwrap()["state"], state);
    let r = sh.update(1, 71, "basic");
    assert_eq!(
        reply_text(&r),
        "Registered Pia <pia@example.com> on the basic plan. Done!"
    );

    let bad = support::request(sh.admin(), "PUT", path, &[AUTH], b"{nope").unwrap();
    assert_eq!(bad.status, 400);

    sh.update(2, 71, "/start");
    assert!(sh.stored("tg", "71").is_some());
    let del = support::request(sh.admin(), "DELETE", path, &[AUTH], b"").unwrap();
    assert_eq!(del.status, 200);
    assert_eq!(sh.stored("tg", "71"), None);
}
