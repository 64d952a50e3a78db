//! One turn at a time per conversation; other conversations never wait.

use crate::support;

use serde_json::Value;
use support::{Bot, Config, Statehold};

fn interval(h: &Value) -> (u64, u64) {
    (
        h["start_us"].as_u64().unwrap(),
        h["end_us"].as_u64().unwrap(),
    )
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn same_conversation_never_overlaps_while_others_proceed_in_parallel() {
    let logs = one_at_a_time_per_conversation("");
    assert!(logs.contains("serving requests on 1 thread(s)"), "{logs}");
}

/// `server.worker_threads`: the default runs on one thread; several
/// threads (or one per core) keep the same guarantees.
#[test]
fn the_same_holds_on_several_threads() {
    let logs = one_at_a_time_per_conversation("worker_threads = 3\n");
    assert!(logs.contains("serving requests on 3 thread(s)"), "{logs}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let logs = one_at_a_time_per_conversation("worker_threads = 0\n");
    let want = format!("serving requests on {cores} thread(s)");
    assert!(logs.contains(&want), "{logs}");
}

/// Runs the scenario; returns statehold's log.
fn one_at_a_time_per_conversation(server_extra: &str) -> String {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.server_extra = server_extra.to_string();
    let sh = Statehold::start(config);
    sh.update(1, 10, "/start");
    sh.update(2, 20, "/start");

    // A double click: two updates of chat 10 at once, plus chat 20.
    let slow = [("x-demo-delay-ms", "300")];
    let slow = &slow;
    std::thread::scope(|s| {
        let a = s.spawn(|| sh.update_with(3, 10, "Fay", slow));
        let b = s.spawn(|| sh.update_with(4, 10, "fay@example.com", slow));
        let c = s.spawn(|| sh.update_with(5, 20, "Gus", slow));
        for t in [a, b, c] {
            assert_eq!(t.join().unwrap().status, 200);
        }
    });

    assert_eq!(bot.overlaps(), 0, "the bot never saw chat 10 twice at once");
    let handled = bot.handled();
    let of = |id: u64| {
        handled
            .iter()
            .find(|h| h["update_id"] == id)
            .map(interval)
            .unwrap()
    };
    assert!(
        !overlap(of(3), of(4)),
        "chat 10's requests ran one after another"
    );
    assert!(
        overlap(of(5), of(3)) || overlap(of(5), of(4)),
        "chat 20 ran alongside chat 10"
    );
    // Both updates of chat 10 landed, none lost.
    let stored = sh.stored("tg", "10").expect("snapshot");
    let mut applied: Vec<u64> = stored["state"]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    applied.sort();
    assert_eq!(applied, vec![1, 3, 4]);
    assert_eq!(stored["version"], 3);
    sh.logs()
}

#[test]
fn arrival_order_is_kept_for_one_conversation() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    sh.update(1, 11, "/start");
    let sh = &sh;
    // The first holds the turn; the others queue behind it in the order sent.
    std::thread::scope(|s| {
        let first = s.spawn(|| sh.update_with(2, 11, "Hal", &[("x-demo-delay-ms", "300")]));
        support::wait_until("first request in the bot", || {
            support::get(support::addr(bot.port), "/_stats")
                .map(|r| r.json()["in_flight"].as_u64() == Some(1))
                .unwrap_or(false)
        });
        let mut later = Vec::new();
        for (n, (id, text)) in [(3, "hal@example.com"), (4, "pro")].into_iter().enumerate() {
            later.push(s.spawn(move || sh.update(id, 11, text)));
            // Each one is queued for the turn before the next one is sent.
            support::wait_until("request queued", || {
                sh.metric("statehold_turns_waiting") == (n + 1) as f64
            });
        }
        assert_eq!(first.join().unwrap().status, 200);
        for t in later {
            assert_eq!(t.join().unwrap().status, 200);
        }
    });
    let ids: Vec<_> = bot
        .handled()
        .iter()
        .map(|h| h["update_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
}

#[test]
fn a_turn_wait_longer_than_lock_wait_answers_503_with_retry_after() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.store_extra = "lock_wait = \"100ms\"\n".into();
    let sh = Statehold::start(config);
    sh.update(1, 12, "/start");
    std::thread::scope(|s| {
        let slow = s.spawn(|| sh.update_with(2, 12, "Ida", &[("x-demo-delay-ms", "800")]));
        support::wait_until("first request in the bot", || {
            support::get(support::addr(bot.port), "/_stats")
                .map(|r| r.json()["in_flight"].as_u64() == Some(1))
                .unwrap_or(false)
        });
        let busy = sh.update(3, 12, "ida@example.com");
        assert_eq!(busy.status, 503);
        assert_eq!(busy.header("retry-after"), Some("1"));
        assert_eq!(busy.json()["error"], "busy");
        assert_eq!(slow.join().unwrap().status, 200);
    });
    // The rejected update was not applied and can be redelivered.
    let stored = sh.stored("tg", "12").expect("snapshot");
    assert_eq!(stored["state"]["applied"], serde_json::json!([1, 2]));
    assert_eq!(sh.update(3, 12, "ida@example.com").status, 200);
    assert!(sh.logs().contains("outcome=\"busy\""));
}
