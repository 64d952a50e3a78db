//! Unit tests of `metrics`.

use super::*;

#[test]
fn renders_contract_names() {
    let m = Metrics::new(["tg".to_string()]);
    m.request(0, Outcome::Ok, 200, Duration::from_millis(3));
    m.load(LoadResult::Hit);
    m.save(SaveResult::Rejected);
    m.dedupe_hit();
    let text = m.render();
    for name in [
        "statehold_requests_total{route=\"tg\",outcome=\"ok\",code=\"2xx\"} 1",
        "statehold_request_duration_seconds_bucket{route=\"tg\",le=\"0.005\"} 1",
        "statehold_upstream_duration_seconds_count 0",
        "statehold_store_duration_seconds_count{op=\"load\"} 0",
        "statehold_state_loads_total{result=\"hit\"} 1",
        "statehold_state_saves_total{result=\"rejected\"} 1",
        "statehold_dedupe_hits_total 1",
        "statehold_lock_wait_seconds_count 0",
        "statehold_conflicts_total 0",
        "statehold_store_up 1",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
}

#[test]
fn every_metric_and_outcome_is_in_docs_metrics_md() {
    let doc = include_str!("../../docs/metrics.md");
    let m = Metrics::new(["tg".to_string()]);
    let text = m.render();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/metrics.md lacks {name}"
        );
    }
    for outcome in Outcome::ALL {
        let row = format!("| `{}` |", outcome.as_str());
        assert!(doc.contains(&row), "docs/metrics.md lacks outcome {row}");
    }
}
