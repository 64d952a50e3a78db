//! The request path served in this process (`statehold::app::run_over`,
//! `support::in_process`), over the embedded store made to fail in chosen
//! ways (`support::faulty`): how each kind of store failure is answered,
//! counted and kept apart from the others, without a process to start or
//! kill. The bot is the recording bot (a thread of this process).

use serde_json::Value;

use crate::support;
use support::faulty::Fault;
use support::in_process::InProcess;
use support::recorder::{reporting_bot, Recorder};
use support::{get, post_json, tg_update, Response};

const CHAT: i64 = 4242;

fn update(sh: &InProcess, update_id: u64, text: &str) -> Response {
    post_json(
        sh.proxy,
        "/telegram",
        &tg_update(update_id, CHAT, text),
        &[],
    )
    .expect("statehold answers")
}

fn stored(sh: &InProcess) -> Option<Value> {
    sh.stored("tg", &CHAT.to_string())
}

/// What the bot was handed as the conversation's snapshot last time.
fn handed(bot: &Recorder) -> Option<Value> {
    let last = bot.last();
    let header = last.header("x-statehold-state")?;
    let decoded = statehold::contract::decode_state(header.as_bytes(), 1 << 20).ok()?;
    serde_json::from_slice(&decoded).ok()
}

#[test]
fn a_conversation_keeps_its_state_in_process() {
    let bot = reporting_bot();
    let sh = InProcess::start(bot.port, |_| {});
    assert_eq!(update(&sh, 1, r#"{"step":1}"#).status, 200);
    assert_eq!(update(&sh, 2, r#"{"step":2}"#).status, 200);
    assert_eq!(handed(&bot), Some(serde_json::json!({"step": 1})));
    assert_eq!(stored(&sh), Some(serde_json::json!({"step": 2})));
    // The redelivery of update 2 is answered from its record.
    assert_eq!(update(&sh, 2, r#"{"step":2}"#).status, 200);
    assert_eq!(bot.count(), 2);
}

#[test]
fn an_outage_is_a_503_to_retry_and_marks_the_store_down_until_it_answers() {
    let bot = reporting_bot();
    let sh = InProcess::start(bot.port, |c| {
        c.store.on_unavailable = statehold::config::OnUnavailable::Reject;
    });
    assert_eq!(update(&sh, 1, r#"{"step":1}"#).status, 200);
    sh.faults.fail_begin(Some(Fault::Outage));
    let r = update(&sh, 2, r#"{"step":2}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.header("retry-after").is_some(),
        "the bot never ran: a retry is safe"
    );
    assert_eq!(sh.metric("statehold_store_up"), 0.0);
    assert_eq!(bot.count(), 1, "the bot is not called without its state");
    assert_eq!(get(sh.admin, "/readyz").expect("readyz").status, 503);

    sh.faults.fail_begin(None);
    assert_eq!(update(&sh, 2, r#"{"step":2}"#).status, 200);
    assert_eq!(sh.metric("statehold_store_up"), 1.0);
    assert_eq!(stored(&sh), Some(serde_json::json!({"step": 2})));
}

#[test]
fn a_damaged_record_is_a_500_and_leaves_the_store_up() {
    let bot = reporting_bot();
    let sh = InProcess::start(bot.port, |c| {
        // Passthrough would degrade on an outage: a damaged record must
        // not be taken for one.
        c.store.on_unavailable = statehold::config::OnUnavailable::Passthrough;
    });
    assert_eq!(update(&sh, 1, r#"{"step":1}"#).status, 200);
    sh.faults.fail_begin(Some(Fault::Damaged));
    let r = update(&sh, 2, r#"{"step":2}"#);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.header("retry-after").is_none());
    assert_eq!(sh.metric("statehold_store_up"), 1.0);
    let errors = r#"statehold_requests_total{route="tg",outcome="store_error",code="5xx"}"#;
    assert_eq!(sh.metric(errors), 1.0);
    assert_eq!(bot.count(), 1, "the bot is never handed a degraded turn");
    sh.faults.fail_begin(None);
    assert_eq!(
        stored(&sh),
        Some(serde_json::json!({"step": 1})),
        "the snapshot is intact"
    );
}

#[test]
fn a_save_refused_after_the_bot_ran_is_not_acknowledged_and_not_retried_blindly() {
    let bot = reporting_bot();
    let sh = InProcess::start(bot.port, |_| {});
    assert_eq!(update(&sh, 1, r#"{"step":1}"#).status, 200);
    sh.faults.fail_commit(Some(Fault::Refused));
    let r = update(&sh, 2, r#"{"step":2}"#);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.header("retry-after").is_none(),
        "the bot already acted on this update: no Retry-After"
    );
    assert_eq!(sh.metric("statehold_store_up"), 1.0);
    sh.faults.fail_commit(None);
    assert_eq!(stored(&sh), Some(serde_json::json!({"step": 1})));
    // The turn was released: the redelivery runs the bot and is saved.
    assert_eq!(update(&sh, 2, r#"{"step":2}"#).status, 200);
    assert_eq!(stored(&sh), Some(serde_json::json!({"step": 2})));
}

#[test]
fn a_commit_lost_in_an_outage_is_not_acknowledged() {
    let bot = reporting_bot();
    let sh = InProcess::start(bot.port, |c| {
        c.store.on_unavailable = statehold::config::OnUnavailable::Reject;
    });
    assert_eq!(update(&sh, 1, r#"{"step":1}"#).status, 200);
    sh.faults.fail_commit(Some(Fault::Outage));
    let r = update(&sh, 2, r#"{"step":2}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.header("retry-after").is_none(),
        "the bot ran: no Retry-After"
    );
    assert_eq!(sh.metric("statehold_store_up"), 0.0);
    sh.faults.fail_commit(None);
    assert_eq!(update(&sh, 2, r#"{"step":2}"#).status, 200);
    assert_eq!(stored(&sh), Some(serde_json::json!({"step": 2})));
    assert_eq!(sh.metric("statehold_store_up"), 1.0);
}
