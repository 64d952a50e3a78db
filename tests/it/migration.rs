//! Turning `store.key_secret` on over existing plaintext data, on a live
//! store, as an operator does it (docs/privacy.md): conversations written
//! with plaintext keys (phone-number ids) and plaintext values; the
//! replica restarted with hashed keys, sealed values and
//! `plaintext_fallback`; `statehold migrate --dry-run` counts;
//! `statehold migrate` runs while users type; the fallback turned off.
//! Every conversation continues (0 lost), redeliveries of updates
//! recorded before the switch are answered from their record, and on
//! Redis no conversation key names a user any more (recorded answers
//! from before the switch keep their names until `store.dedupe_window`
//! expires them; docs/privacy.md). On both backends.

use crate::support;

use serde_json::Value;
use support::traffic::{expected_reply, step_text, update_id};
use support::{reply_text, run_statehold, Bot, Config, RedisServer, Statehold};

const SECRET: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K1: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const ENV: [(&str, &str); 2] = [("SH_KEY_SECRET", SECRET), ("SH_K1", K1)];

const CHATS: i64 = 300;

fn privacy_on(fallback: bool) -> String {
    format!(
        "key_secret_env = \"SH_KEY_SECRET\"\nencryption = {{ keys = [{{ id = \"k1\", secret_env = \"SH_K1\" }}] }}\nplaintext_fallback = {fallback}\n"
    )
}

/// Phone-number ids, as WhatsApp bots key conversations.
fn chats() -> Vec<i64> {
    (0..CHATS).map(|i| 263_770_000_000 + i * 7919).collect()
}

/// Every fifth conversation finished its flow (cleared) before the switch.
fn finished(chat: i64) -> bool {
    chat % 5 == 0
}

fn step(sh: &Statehold, chat: i64, n: usize) {
    let r = sh.update(update_id(chat, n), chat, &step_text(chat, n));
    assert_eq!(r.status, 200, "chat {chat} step {n}: {}", r.text());
    assert_eq!(
        reply_text(&r),
        expected_reply(chat, n),
        "chat {chat} step {n}"
    );
}

/// Runs `statehold migrate` against `sh`; the last progress line.
fn migrate(sh: &Statehold, extra: &[&str]) -> Value {
    let mut args = vec!["migrate", "--config", sh.config_path().to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_statehold(&args, &ENV);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = serde_json::from_str(printed.lines().last().expect("progress")).expect("json");
    eprintln!("migrate {extra:?}: {last}");
    last
}

/// Redis conversation key names (snapshot, lease, queue; not recorded
/// answers) that contain any raw id.
fn keys_naming_users(port: u16, chats: &[i64]) -> usize {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let mut con = client.get_connection().unwrap();
    let names: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    let ids: Vec<String> = chats.iter().map(|c| c.to_string()).collect();
    names
        .iter()
        .filter(|n| !n.contains(":d:") && ids.iter().any(|id| n.contains(id.as_str())))
        .count()
}

fn migrate_live(redis: Option<&RedisServer>) {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = redis.map(|r| r.port);
    config.env = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut sh = Statehold::start(config);
    let chats = chats();
    let (done, open): (Vec<i64>, Vec<i64>) = chats.iter().partition(|c| finished(**c));
    for &chat in &chats {
        let last = if finished(chat) { 3 } else { 1 };
        (0..=last).for_each(|n| step(&sh, chat, n));
    }
    if let Some(r) = redis {
        assert!(
            keys_naming_users(r.port, &chats) > 0,
            "control: plaintext keys name users"
        );
    }

    // Hashed keys and sealed values, reading plaintext ones meanwhile.
    sh.restart_with(|c| c.store_extra = privacy_on(true));
    // A redelivery of an update handled before the switch: its record.
    let ran = bot.handled().len();
    let again = sh.update(update_id(open[0], 1), open[0], &step_text(open[0], 1));
    assert_eq!(reply_text(&again), expected_reply(open[0], 1));
    assert_eq!(bot.handled().len(), ran, "the bot did not run it again");

    let counted = migrate(&sh, &["--dry-run"]);
    assert_eq!(counted["moved"], open.len() as u64, "{counted}");
    assert_eq!(counted["empty"], done.len() as u64, "{counted}");
    assert_eq!(counted["hashed"], 0, "{counted}");
    if let Some(r) = redis {
        assert!(
            keys_naming_users(r.port, &chats) > 0,
            "a dry run moves nothing"
        );
    }

    // Half of the open conversations go on while migrate runs: each next
    // step, whether it lands before or after its conversation moves, sees
    // the flow where it was.
    let (typing, idle) = open.split_at(open.len() / 2);
    let sh_ref = &sh;
    let moved = std::thread::scope(|s| {
        let users = s.spawn(move || typing.iter().for_each(|&chat| step(sh_ref, chat, 2)));
        let moved = migrate(sh_ref, &["--rate", "1000"]);
        users.join().expect("users typed");
        moved
    });
    assert_eq!(moved["done"], true, "{moved}");
    assert_eq!(moved["errors"], 0, "{moved}");
    assert_eq!(moved["undecryptable"], 0, "{moved}");

    // Everything is on hashed keys: without the fallback nothing is lost.
    sh.restart_with(|c| c.store_extra = privacy_on(false));
    let after = migrate(&sh, &["--dry-run"]);
    for outcome in ["moved", "empty", "superseded", "undecryptable"] {
        assert_eq!(after[outcome], 0, "{outcome}: {after}");
    }
    assert_eq!(after["hashed"], open.len() as u64, "{after}");
    typing.iter().for_each(|&chat| step(&sh, chat, 3));
    idle.iter().for_each(|&chat| step(&sh, chat, 2));
    done.iter().for_each(|&chat| step(&sh, chat, 0)); // finished: a new flow
    let undecryptable = sh.metric_or_zero("statehold_state_loads_total{result=\"undecryptable\"}");
    assert_eq!(undecryptable, 0.0);
    if let Some(r) = redis {
        assert_eq!(keys_naming_users(r.port, &chats), 0, "no key names a user");
    }
    eprintln!(
        "migrate ({}): {} conversations ({} open, {} finished), dry run {counted}, run {moved}, \
         {} steps typed during the run, lost 0",
        if redis.is_some() { "redis" } else { "embedded" },
        chats.len(),
        open.len(),
        done.len(),
        typing.len(),
    );
}

#[test]
fn migrating_plaintext_keys_on_a_live_embedded_store_loses_nothing() {
    let _serial = support::serial(module_path!());
    migrate_live(None);
}

#[test]
fn migrating_plaintext_keys_on_a_live_redis_loses_nothing() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    migrate_live(Some(&redis));
}
