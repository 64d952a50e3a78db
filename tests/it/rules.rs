//! Validated snapshots, against the real binary and a bot that reports
//! whatever the test makes it: a snapshot breaking `route.schema` and one
//! moving `[route.transitions]` along an edge not listed are not stored,
//! the old snapshot stays, `statehold_state_saves_total{result="invalid"}`
//! counts them and the log names the JSON pointer, never a value; a clear
//! keeps `route.keep_on_clear`. On both backends.

use crate::support;

use serde_json::{json, Value};
use support::recorder::reporting_bot;
use support::{run_statehold, Config, RedisServer, Statehold};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["stage", "member_id"],
  "properties": {
    "stage": {"enum": ["INIT", "AUTH", "MENU", "TRANSFER"]},
    "pin": {"type": "string", "pattern": "^[0-9]{4}$"}
  }
}"#;

fn rules(schema: &std::path::Path) -> String {
    format!(
        "schema = {schema:?}\nkeep_on_clear = [\"/member_id\"]\n[route.transitions]\nfield = \"/stage\"\n\
         allowed = {{ INIT = [\"AUTH\"], AUTH = [\"MENU\"], MENU = [\"TRANSFER\"], TRANSFER = [\"MENU\"] }}\n"
    )
}

fn validated(redis: Option<&RedisServer>) {
    let dir = support::temp_dir();
    let schema = dir.path().join("member.schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let bot = reporting_bot();
    let mut config = Config::new(bot.port, dir.path());
    config.redis = redis.map(|r| r.port);
    config.route_extra = rules(&schema);
    let sh = Statehold::start(config);
    let chat = 4242;
    let report = |id: u64, snapshot: &Value| {
        let r = sh.update(id, chat, &snapshot.to_string());
        assert_eq!(r.status, 200, "the bot's answer still reaches the platform");
        sh.stored("tg", &chat.to_string())
    };
    let invalid = || sh.metric_or_zero("statehold_state_saves_total{result=\"invalid\"}");

    let init = json!({"stage": "INIT", "member_id": "m-1"});
    let stored = report(1, &init).expect("stored");
    assert_eq!(stored["state"], init);
    assert_eq!(stored["version"], 1);

    // Breaks the schema: a PIN that is not four digits.
    let bad_pin = json!({"stage": "INIT", "member_id": "m-1", "pin": "98x7-secret"});
    let stored = report(2, &bad_pin).expect("still stored");
    assert_eq!(stored["state"], init, "the old snapshot stays");
    assert_eq!(stored["version"], 1);
    assert_eq!(invalid(), 1.0);
    let logs = sh.logs();
    let line = r#"reason=does not match route.schema at "/pin" (keyword pattern)"#;
    assert!(logs.contains(line), "{logs}");
    assert!(!logs.contains("98x7"), "the log never shows a value");

    // A transition not listed: INIT straight to MENU.
    let skip = json!({"stage": "MENU", "member_id": "m-1"});
    assert_eq!(report(3, &skip).expect("stored")["state"], init);
    assert_eq!(invalid(), 2.0);
    assert!(sh.logs().contains("may not move from INIT to MENU"));

    // Listed edges are stored.
    let auth = json!({"stage": "AUTH", "member_id": "m-1", "pin": "1234"});
    assert_eq!(report(4, &auth).expect("stored")["state"], auth);
    let menu = json!({"stage": "MENU", "member_id": "m-1"});
    let stored = report(5, &menu).expect("stored");
    assert_eq!(
        (stored["state"].clone(), stored["version"].clone()),
        (menu, json!(3))
    );
    assert_eq!(invalid(), 2.0);

    // A clear keeps the member id.
    let stored = sh.update(6, chat, "CLEAR");
    assert_eq!(stored.status, 200);
    let kept = sh.stored("tg", &chat.to_string()).expect("kept members");
    assert_eq!(kept["state"], json!({"member_id": "m-1"}));
    assert_eq!(sh.metric("statehold_state_saves_total{result=\"ok\"}"), 4.0);
}

#[test]
fn invalid_snapshots_are_refused_on_the_embedded_store() {
    validated(None);
}

#[test]
fn invalid_snapshots_are_refused_on_redis() {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    validated(Some(&redis));
}

#[test]
fn an_unusable_schema_fails_check_config_naming_the_key() {
    // A broken schema; then one whose pattern needs a backtracking engine
    // (issue 20, item 1: 400 such strings cost 7.8 s of CPU on a runtime
    // worker), refused with the pointer to the pattern.
    for (text, pointer) in [
        (r#"{"type": 12}"#, ""),
        (
            r#"{"type": "array", "items": {"pattern": "^(\\w+\\s?)*(?<!x)$"}}"#,
            "/items/pattern",
        ),
    ] {
        let dir = support::temp_dir();
        let schema = dir.path().join("broken.json");
        std::fs::write(&schema, text).unwrap();
        let mut config = Config::new(1, dir.path());
        config.route_extra = rules(&schema);
        let path = dir.path().join("statehold.toml");
        std::fs::write(&path, config.render()).unwrap();
        let out = run_statehold(&["check-config", "--config", path.to_str().unwrap()], &[]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            said.contains("route[0].schema") && said.contains(pointer),
            "{said}"
        );
    }
}
