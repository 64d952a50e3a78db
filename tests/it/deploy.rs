//! The shipped deployment files stay valid: the config embedded in each
//! Kubernetes ConfigMap passes `check-config`, every manifest names its API
//! version and kind, and the replica topology's grace period covers its
//! drain delay and shutdown grace.

use crate::support;

#[test]
fn configmap_config_passes_check_config() {
    let config = check_configmap(include_str!("../../deploy/k8s/configmap.yaml"));
    every_env_is_set(&config, include_str!("../../deploy/k8s/statefulset.yaml"));
}

/// Every `*_env` variable the config reads is set in the workload's env.
fn every_env_is_set(config: &str, workload: &str) {
    for name in config
        .split("_env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
    {
        assert!(
            workload.contains(&format!("name: {name}")),
            "{name} is read by the config but not set in the workload"
        );
    }
}

#[test]
fn the_replica_topology_is_consistent() {
    let config = check_configmap(include_str!("../../deploy/k8s/replicas/configmap.yaml"));
    let seconds = |key: &str| -> u64 {
        let line = config
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .expect(key);
        let value = line.split('"').nth(1).expect("quoted duration");
        value.trim_end_matches('s').parse().expect("seconds")
    };
    let deployment = include_str!("../../deploy/k8s/replicas/deployment.yaml");
    every_env_is_set(&config, deployment);
    let grace: u64 = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("terminationGracePeriodSeconds");
    // The turn hand-over at exit takes up to 2 s.
    assert!(
        grace > seconds("drain_delay") + seconds("shutdown_grace") + 2,
        "{grace}"
    );
    for (name, yaml) in [
        ("deployment", deployment),
        ("pdb", include_str!("../../deploy/k8s/replicas/pdb.yaml")),
        (
            "service",
            include_str!("../../deploy/k8s/replicas/service.yaml"),
        ),
        (
            "configmap",
            include_str!("../../deploy/k8s/replicas/configmap.yaml"),
        ),
    ] {
        assert!(
            yaml.lines().any(|l| l.starts_with("apiVersion: "))
                && yaml.lines().any(|l| l.starts_with("kind: ")),
            "{name} names no apiVersion/kind"
        );
        assert!(
            !yaml.contains('\t'),
            "{name}: tabs are not YAML indentation"
        );
    }
}

/// Runs `check-config` on the `config.toml` block of a ConfigMap; returns it.
/// A valid 32-byte key, for check-config.
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn check_configmap(yaml: &str) -> String {
    let start = yaml.find("config.toml: |").expect("config.toml block") + "config.toml: |".len();
    let toml: String = yaml[start..]
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let out = support::run_statehold(
        &["check-config", "--config", path.to_str().unwrap()],
        &[
            ("TELEGRAM_SECRET_TOKEN", "x"),
            ("STATEHOLD_ADMIN_TOKEN", "y"),
            ("STATEHOLD_KEY_SECRET", KEY),
            ("STATEHOLD_KEY_K1", KEY),
        ],
    );
    support::assert_exit(&out, 0);
    // Privacy at rest is on (docs/privacy.md), its secrets from the Secret.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("key_secret_env = \"STATEHOLD_KEY_SECRET\""),
        "{printed}"
    );
    assert!(printed.contains("[[store.encryption.keys]]"), "{printed}");
    std::fs::read_to_string(&path).unwrap()
}

/// The compose demo's shared config passes `check-config` as each replica
/// runs it (its own bot by environment).
#[test]
fn the_compose_config_passes_check_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/compose/statehold.toml");
    for bot in ["http://bot-a:3000", "http://bot-b:3000"] {
        let out = support::run_statehold(
            &["check-config", "--config", path],
            &[("STATEHOLD_UPSTREAM__URL", bot)],
        );
        support::assert_exit(&out, 0);
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains(&format!("url = \"{bot}\"")), "{printed}");
    }
}
