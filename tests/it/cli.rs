//! The command line (CONTRACT.md §2): check-config, exit statuses, shutdown.

use crate::support;

use support::{assert_exit, run_statehold, Bot, Config, Statehold};

fn statehold(args: &[&str]) -> std::process::Output {
    run_statehold(args, &[])
}

#[test]
fn shipped_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = statehold(&["check-config", "--config", path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("backend = \"embedded\""));
    assert!(printed.contains("json:/update_id"), "preset expanded");
}

#[test]
fn unknown_key_fails_check_config_with_exit_2_naming_the_key() {
    let dir = support::temp_dir();
    let mut text = Config::new(1, dir.path()).render();
    text = text.replace("[store]\n", "[store]\nttl_seconds = 5\n");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = statehold(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.ttl_seconds"), "{err}");
    // serve refuses the same file with the same message.
    let out = statehold(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.ttl_seconds"));
}

#[test]
fn wrong_types_and_values_name_the_key() {
    let dir = support::temp_dir();
    let base = Config::new(1, dir.path()).render();
    for (edit, key) in [
        (
            base.replace("timeout = \"10s\"", "timeout = 10"),
            "upstream.timeout",
        ),
        (
            base.replace("timeout = \"10s\"", "timeout = \"10 parsecs\""),
            "upstream.timeout",
        ),
        (
            base.replace("mode = \"header\"", "mode = \"carrier-pigeon\""),
            "contract.mode",
        ),
        (
            base.replace("namespace = \"tg\"", "namespace = \"\""),
            "route[0].namespace",
        ),
        (
            base.replace("url = \"http://", "url = \"ftp://"),
            "upstream.url",
        ),
        // A report timeout shorter than a lease (5s by default; issue 19):
        // a dead holder's turn would outlive every report.
        (
            base.replace(
                "namespace = \"tg\"",
                "namespace = \"tg\"\nreport_timeout = \"3s\"",
            ),
            "route[0].report_timeout",
        ),
        (
            base.replace(
                "namespace = \"tg\"",
                "namespace = \"tg\"\nreport_timeout = \"16m\"",
            ),
            "route[0].report_timeout",
        ),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, edit).unwrap();
        let out = statehold(&["check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "expected {key} in: {err}");
    }
    let out = statehold(&["check-config", "--config", "/nonexistent/statehold.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = statehold(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_masks_secrets() {
    let dir = support::temp_dir();
    let mut config = Config::new(1, dir.path());
    config.route_extra = "[route.verify]\nkind = \"telegram\"\nsecret_env = \"TG_SECRET\"\n".into();
    let text = config.render();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, text).unwrap();
    let out = run_statehold(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("TG_SECRET", "super-secret-value")],
    );
    assert_exit(&out, 0);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!printed.contains("super-secret-value"));
    assert!(!printed.contains("test-admin-token"));
    assert!(printed.contains("secret = \"***\""), "{printed}");
    // Without the variable the config is invalid, naming the key.
    let out = statehold(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("route[0].verify.secret_env"));
}

#[test]
fn sigterm_exits_0_and_port_in_use_exits_nonzero() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut sh = Statehold::start(Config::new(bot.port, dir.path()));
    sh.update(1, 60, "/start");

    // A second instance on the same ports fails with a one-line reason.
    let other_dir = support::temp_dir();
    let mut clash = sh.config.clone();
    clash.data_dir = other_dir.path().to_path_buf();
    let path = other_dir.path().join("clash.toml");
    std::fs::write(&path, clash.render()).unwrap();
    let out = statehold(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen"), "{err}");
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "the cause once: {err}"
    );

    let status = sh.proc.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(sh.logs().contains("stopped cleanly"));
}

#[test]
fn config_path_defaults_to_env_var() {
    let dir = support::temp_dir();
    let path = dir.path().join("env.toml");
    std::fs::write(&path, Config::new(1, dir.path()).render()).unwrap();
    let out = run_statehold(
        &["check-config"],
        &[("STATEHOLD_CONFIG", path.to_str().unwrap())],
    );
    assert_exit(&out, 0);
}

#[test]
fn unusable_store_path_is_a_config_error_naming_the_key() {
    let dir = support::temp_dir();
    let base = Config::new(1, dir.path()).render();
    let db_line = format!("path = \"{}\"", dir.path().join("statehold.db").display());
    // Under a regular file: check-config already knows.
    let under_file = base.replace(&db_line, "path = \"/etc/hostname/statehold.db\"");
    let path = dir.path().join("f.toml");
    std::fs::write(&path, under_file).unwrap();
    let out = statehold(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store.path") && err.contains("not a directory"),
        "{err}"
    );
    // On a file system that refuses writes: serve finds out at startup.
    let read_only = base.replace(&db_line, "path = \"/proc/statehold-test/statehold.db\"");
    std::fs::write(&path, read_only).unwrap();
    let out = statehold(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.path"), "{err}");
}

#[test]
fn help_and_version_exit_0_on_stdout_and_usage_errors_exit_2() {
    for args in [&["--help"][..], &["serve", "--help"], &["--version"]] {
        let out = statehold(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.is_empty() && out.stderr.is_empty(),
            "{args:?}: {text}"
        );
    }
    // The version and the commit, as statehold_build_info names them
    // (issue 20, item 13).
    let version = String::from_utf8_lossy(&statehold(&["--version"]).stdout).to_string();
    let commit = format!("(commit {})", env!("STATEHOLD_COMMIT"));
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")) && version.contains(&commit),
        "{version}"
    );
    assert!(String::from_utf8_lossy(&statehold(&["serve", "--help"]).stdout).contains("--config"));
    for args in [&["bogus"][..], &[], &["serve", "--nope"]] {
        let out = statehold(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("Usage:").count(), 1, "{err}");
    }
}

#[test]
fn check_config_explain_documents_every_key_of_the_shipped_config() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = statehold(&["check-config", "--explain", "--config", shipped]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    // Each key line is preceded by its documentation.
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') {
            keys += 1;
            assert!(
                i > 0 && lines[i - 1].starts_with("# "),
                "{line} has no explanation:\n{text}"
            );
        }
    }
    assert!(keys > 30, "{text}");
    assert!(
        text.contains("# The longest the circuit stays open"),
        "{text}"
    );
    // The explanation is still the valid effective config.
    let toml: toml::Value = toml::from_str(&text).expect("still TOML");
    assert!(toml.get("store").is_some());
}
