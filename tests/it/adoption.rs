//! What a bot adopting statehold gets wrong silently, caught: a framework
//! that answers the webhook before its handlers run never reports state
//! (`statehold_unreported_total`, one warning naming the guide).

use crate::support;

use support::recorder::Recorder;
use support::{Bot, Config, Statehold};

const WARNING: &str = "docs/frameworks.md#the-unreported-warning";

#[test]
fn a_bot_that_answers_before_handling_is_counted_and_named_once() {
    let dir = support::temp_dir();
    // Answers `{"ok":true}` at once and never reports state: what aiogram
    // with handle_in_background=True looks like from outside.
    let bot = Recorder::start();
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    for i in 0..25u64 {
        let r = sh.update(i + 1, 7000 + (i as i64 % 5), "hello");
        assert_eq!(r.status, 200);
    }
    // Each counts when answered within 10 ms: on a loaded machine one may
    // take longer (it neither counts nor breaks the run).
    let unreported = sh.metric("statehold_unreported_total{route=\"tg\"}");
    assert!((20.0..=25.0).contains(&unreported), "{unreported}");
    let logs = sh.logs();
    assert_eq!(logs.matches(WARNING).count(), 1, "{logs}");
    // Ids and state never appear in the warning.
    let line = logs.lines().find(|l| l.contains(WARNING)).unwrap();
    assert!(
        !line.contains("7000") && line.contains("route=/telegram"),
        "{line}"
    );
}

#[test]
fn a_bot_that_reports_its_state_is_not_suspected() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    for chat in 0..8i64 {
        let base = 100 * chat as u64;
        for (i, text) in ["/start", "Ann", "ann@example.com"].iter().enumerate() {
            assert_eq!(
                sh.update(base + i as u64 + 1, 8000 + chat, text).status,
                200
            );
        }
    }
    assert_eq!(sh.metric("statehold_unreported_total{route=\"tg\"}"), 0.0);
    assert!(!sh.logs().contains(WARNING));
}
