//! The shipped deployment files stay valid: the config embedded in the
//! Kubernetes ConfigMap passes `check-config`.

mod support;

#[test]
fn configmap_config_passes_check_config() {
    let yaml = include_str!("../deploy/k8s/configmap.yaml");
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
        ],
    );
    support::assert_exit(&out, 0);
}
