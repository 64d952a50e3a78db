//! Redelivered webhooks run the bot once and get the first answer.

use crate::support;

use support::{reply_text, Bot, Config, Statehold};

#[test]
fn redelivered_update_is_processed_once() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));

    sh.update(1, 5, "/start");
    let first = sh.update(2, 5, "Cy");
    // The platform did not see the answer and sends the same update again.
    let second = sh.update(2, 5, "Cy");
    let third = sh.update(2, 5, "Cy");
    for r in [&second, &third] {
        assert_eq!(r.status, first.status);
        assert_eq!(r.body, first.body);
        assert_eq!(r.header("content-type"), first.header("content-type"));
        assert!(r.reserved_headers().is_empty());
    }
    let handled: Vec<_> = bot
        .handled()
        .iter()
        .map(|h| h["update_id"].clone())
        .collect();
    assert_eq!(handled, vec![1, 2], "the bot saw update 2 once");
    assert_eq!(sh.metric("statehold_dedupe_hits_total"), 2.0);
    // The snapshot applied update 2 once.
    let stored = sh.stored("tg", "5").expect("snapshot");
    assert_eq!(stored["state"]["applied"], serde_json::json!([1, 2]));
    assert!(sh.logs().contains("outcome=\"duplicate\""));
}

#[test]
fn redelivery_while_first_is_in_flight_waits_and_gets_the_same_answer() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    sh.update(1, 6, "/start");

    let (a, b) = std::thread::scope(|s| {
        let slow = s.spawn(|| sh.update_with(2, 6, "Dee", &[("x-demo-delay-ms", "400")]));
        // The redelivery is sent once the first is inside the bot.
        support::wait_until("first delivery in the bot", || in_flight(&bot));
        let fast = s.spawn(|| sh.update(2, 6, "Dee"));
        (slow.join().unwrap(), fast.join().unwrap())
    });
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b.body);
    assert_eq!(reply_text(&b), "Nice to meet you, Dee. Your email?");
    let ids: Vec<_> = bot
        .handled()
        .iter()
        .map(|h| h["update_id"].clone())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(sh.metric("statehold_dedupe_hits_total"), 1.0);
}

/// Whether the bot is working on a request right now.
fn in_flight(bot: &Bot) -> bool {
    support::get(support::addr(bot.port), "/_stats")
        .map(|r| r.json()["in_flight"].as_u64().unwrap_or(0) > 0)
        .unwrap_or(false)
}

#[test]
fn failed_bot_answer_records_nothing_so_the_redelivery_runs_again() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    sh.update(1, 8, "/start");
    let failed = sh.update_with(2, 8, "Eve", &[("x-demo-status", "500")]);
    assert_eq!(failed.status, 500, "a bot 5xx passes through");
    let retried = sh.update(2, 8, "Eve");
    assert_eq!(retried.status, 200);
    assert_eq!(reply_text(&retried), "Nice to meet you, Eve. Your email?");
    assert_eq!(sh.metric("statehold_dedupe_hits_total"), 0.0);
    let stored = sh.stored("tg", "8").expect("snapshot");
    assert_eq!(stored["state"]["applied"], serde_json::json!([1, 2]));
}
