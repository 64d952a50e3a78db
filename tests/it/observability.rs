//! What an operator's tooling reads, against the real binary: JSON log
//! lines (`log.format = "json"`, here set through the environment), the
//! W3C `traceparent` forwarded to the bot with its trace id on the request
//! line, `statehold_build_info` and the process metrics, and the
//! `STATEHOLD_<SECTION>__<KEY>` overrides as `check-config` shows them.

use crate::support;

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
    // An id no timestamp, port or duration in the log would spell by chance.
    let r = sh.update_with(1, 80424217, "hi", &[("traceparent", TRACEPARENT)]);
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
    assert_eq!(request["key"], "tg:***4217", "{request}");
    assert!(request["took_us"].as_u64().is_some());
    assert_eq!(request["level"], "INFO");
    assert!(!logs.contains("80424217"), "ids stay masked");
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
    // CPU time counts in clock ticks (10 ms): a process just started may
    // show none yet; it grows with the work it does.
    assert!(sh.metric("process_cpu_seconds_total") >= 0.0);
    let mut update = 0;
    support::wait_until("CPU time to show", || {
        update += 1;
        assert_eq!(sh.update(update, 4242, "hi").status, 200);
        sh.metric("process_cpu_seconds_total") > 0.0
    });
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

/// `statehold_*` and `process_*` names in a PromQL text, `_bucket` and
/// friends folded to their histogram.
fn metric_names(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    for start in ["statehold_", "process_"] {
        for (at, _) in promql.match_indices(start) {
            let name: String = promql[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| {
                n.strip_suffix(s).map(str::to_string).unwrap_or(n)
            });
            names.push(name);
        }
    }
    names
}

#[test]
fn the_dashboard_and_alerts_use_documented_metrics_and_promtool_accepts_the_rules() {
    let doc = include_str!("../../docs/metrics.md");
    let dashboard: Value =
        serde_json::from_str(include_str!("../../deploy/grafana/statehold.json"))
            .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Requests by outcome",
        "Added latency (statehold, bot excluded)",
        "Turns waiting",
        "Store up",
        "Spool depth",
        "Saves by result",
        "Dedupe hits",
    ] {
        assert!(
            titles.contains(&wanted),
            "the dashboard lacks {wanted:?}: {titles:?}"
        );
    }
    let mut used = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                assert!(
                    doc.contains(&format!("`{name}`")),
                    "{name} (panel {}) is not in docs/metrics.md",
                    panel["title"]
                );
                used += 1;
            }
        }
    }
    assert!(used >= 10);
    let alerts = include_str!("../../deploy/prometheus/alerts.yml");
    for name in metric_names(alerts) {
        assert!(
            doc.contains(&format!("`{name}`")),
            "alerts.yml uses {name}, not in docs/metrics.md"
        );
    }
    for alert in [
        "StateholdStoreDown",
        "StateholdSpoolGrowing",
        "StateholdConflictRate",
        "Statehold5xxRate",
        "StateholdUnreportedReports",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "{alert}");
    }
    // Debian's `prometheus` package (scripts/test.sh installs it).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool (Debian: apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
