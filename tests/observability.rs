//! What an operator's tooling reads, against the real binary: JSON log
//! lines (`log.format = "json"`, here set through the environment), the
//! W3C `traceparent` forwarded to the bot with its trace id on the request
//! line, `statehold_build_info` and the process metrics, and the
//! `STATEHOLD_<SECTION>__<KEY>` overrides as `check-config` shows them.

mod support;

use serde_json::Value;
use support::recorder::Recorder;
use support::{Config, Statehold};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn json_logs_carry_the_request_line_and_its_trace_id() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let mut config = Config::new(bot.port, dir.path());
    config
        .env
        .push(("STATEHOLD_LOG__FORMAT".into(), "json".into()));
    let sh = Statehold::start(config);
    let r = sh.update_with(1, 4242, "hi", &[("traceparent", TRACEPARENT)]);
    assert_eq!(r.status, 200);
    // The bot sees the header as it came.
    let seen = bot.requests();
    assert_eq!(seen[0].header("traceparent"), Some(TRACEPARENT));

    let logs = sh.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let overridden = lines
        .iter()
        .find(|l| l["message"] == "config key set by the environment, over the file")
        .expect("the override is logged");
    assert_eq!(overridden["key"], "log.format");
    let request = lines
        .iter()
        .find(|l| l["message"] == "request")
        .expect("a request line");
    assert_eq!(request["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(request["outcome"], "ok");
    assert_eq!(request["status"], 200);
    assert_eq!(request["route"], "/telegram");
    assert_eq!(
        request["key"],
        "tg:***4242".replace("4242", "42"),
        "{request}"
    );
    assert!(request["took_us"].as_u64().is_some());
    assert_eq!(request["level"], "INFO");
    assert!(!logs.contains("4242"), "ids stay masked");
}

#[test]
fn build_info_and_process_metrics_are_served() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = Statehold::start(Config::new(bot.port, dir.path()));
    let metrics = sh.metrics();
    let info = metrics
        .lines()
        .find(|l| l.starts_with("statehold_build_info{"))
        .expect("build info");
    assert!(
        info.starts_with(&format!(
            "statehold_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{info}"
    );
    assert!(
        info.ends_with("\"} 1") && !info.contains("commit=\"\""),
        "{info}"
    );
    assert!(sh.metric("process_cpu_seconds_total") > 0.0);
    assert!(sh.metric("process_resident_memory_bytes") > 1e6);
    assert!(
        sh.metric("process_open_fds") >= 4.0,
        "listeners, the store file"
    );
    assert!(sh.metric("process_max_fds") >= sh.metric("process_open_fds"));
    let started = sh.metric("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - started).abs() < 600.0,
        "started {started}, now {now}"
    );
}

#[test]
fn environment_overrides_win_over_the_file_and_check_config_names_them() {
    let dir = support::temp_dir();
    let config = Config::new(1, dir.path());
    let path = dir.path().join("statehold.toml");
    std::fs::write(&path, config.render()).unwrap();
    let path = path.to_str().unwrap();
    let out = support::run_statehold(
        &["check-config", "--config", path],
        &[
            ("STATEHOLD_SERVER__LISTEN", "127.0.0.1:18081"),
            ("STATEHOLD_STORE__TTL", "2h"),
            ("STATEHOLD_SERVER__MAX_BODY_BYTES", "4096"),
        ],
    );
    support::assert_exit(&out, 0);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(
        "# server.listen: from the environment (STATEHOLD_SERVER__LISTEN), over the file"
    ));
    assert!(
        printed.contains("listen = \"127.0.0.1:18081\""),
        "{printed}"
    );
    assert!(printed.contains("ttl = \"2h\""), "{printed}");
    assert!(printed.contains("max_body_bytes = 4096"), "{printed}");

    // A variable that names no table, or a bad value, is refused by name.
    let typo = support::run_statehold(
        &["check-config", "--config", path],
        &[("STATEHOLD_SERVR__LISTEN", "127.0.0.1:1")],
    );
    support::assert_exit(&typo, 2);
    assert!(String::from_utf8_lossy(&typo.stderr).contains("STATEHOLD_SERVR__LISTEN"));
    let bad = support::run_statehold(
        &["check-config", "--config", path],
        &[("STATEHOLD_STORE__TTL", "soon")],
    );
    support::assert_exit(&bad, 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("store.ttl"));
}
