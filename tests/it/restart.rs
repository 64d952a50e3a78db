//! A flow survives crashes: of the bot between every step, and of statehold
//! itself right after an acknowledged answer.

use crate::support;

use support::{reply_text, Bot, Config, Statehold};

#[test]
fn flow_survives_kill9_of_the_bot_between_every_step() {
    let dir = support::temp_dir();
    let mut bot = Bot::start(0);
    let sh = Statehold::start(Config::new(bot.port, dir.path()));

    let steps = [
        (1, "/start", "Welcome! What's your name?"),
        (2, "Ann", "Nice to meet you, Ann. Your email?"),
        (3, "ann@example.com", "Which plan: basic or pro?"),
        (
            4,
            "pro",
            "Registered Ann <ann@example.com> on the pro plan. Done!",
        ),
    ];
    for (update_id, text, expected) in steps {
        let r = sh.update(update_id, 42, text);
        assert_eq!(r.status, 200);
        assert_eq!(reply_text(&r), expected);
        // Each bot process handled exactly the one update it was sent.
        let handled = bot.handled();
        assert_eq!(handled.len(), 1);
        assert_eq!(handled[0]["update_id"], update_id);
        bot.crash_and_restart();
    }
    // The flow finished and cleared its snapshot.
    assert_eq!(sh.stored("tg", "42"), None);
}

#[test]
fn acknowledged_state_survives_kill9_of_statehold() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut sh = Statehold::start(Config::new(bot.port, dir.path()));

    assert_eq!(sh.update(1, 7, "/start").status, 200);
    assert_eq!(
        reply_text(&sh.update(2, 7, "Bo")),
        "Nice to meet you, Bo. Your email?"
    );
    // kill -9 right after the answer: the save was acknowledged, so it is on disk.
    sh.crash_and_restart();
    let stored = sh.stored("tg", "7").expect("snapshot after restart");
    assert_eq!(stored["state"]["step"], "email");
    assert_eq!(stored["version"], 2);

    // Kill the bot too: only statehold's copy is left.
    let mut bot = bot;
    bot.crash_and_restart();
    assert_eq!(
        reply_text(&sh.update(3, 7, "bo@example.com")),
        "Which plan: basic or pro?"
    );
    sh.crash_and_restart();
    let r = sh.update(4, 7, "basic");
    assert_eq!(
        reply_text(&r),
        "Registered Bo <bo@example.com> on the basic plan. Done!"
    );

    // A redelivery of an update answered before the crash is still deduped.
    sh.crash_and_restart();
    let again = sh.update(4, 7, "basic");
    assert_eq!(reply_text(&again), reply_text(&r));
    assert_eq!(sh.metric("statehold_dedupe_hits_total"), 1.0);
}

#[test]
fn many_conversations_survive_a_statehold_crash_mid_traffic() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut sh = Statehold::start(Config::new(bot.port, dir.path()));
    let chats: Vec<i64> = (100..140).collect();
    std::thread::scope(|s| {
        for &chat in &chats {
            let sh = &sh;
            s.spawn(move || {
                assert_eq!(sh.update(chat as u64 * 10, chat, "/start").status, 200);
                assert_eq!(
                    sh.update(chat as u64 * 10 + 1, chat, &format!("user{chat}"))
                        .status,
                    200
                );
            });
        }
    });
    sh.crash_and_restart();
    for &chat in &chats {
        let stored = sh.stored("tg", &chat.to_string()).expect("snapshot");
        assert_eq!(stored["state"]["name"], format!("user{chat}"));
        assert_eq!(
            stored["state"]["applied"],
            serde_json::json!([chat * 10, chat * 10 + 1])
        );
    }
}
