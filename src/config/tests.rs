//! Config parsing and validation, by example.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use std::collections::HashMap;

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:3000"
[[route]]
path = "/telegram"
namespace = "tg"
key = ["json:/message/from/id"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, &HashMap::new())
}

#[test]
fn durations_are_humantime() {
    let with = |value: &str| {
        parse(&MINIMAL.replace(
            "[upstream]",
            &format!("[store]\nttl = \"{value}\"\n[upstream]"),
        ))
    };
    assert_eq!(
        with("1h30m").expect("valid").store.ttl,
        Duration::from_secs(5400)
    );
    assert_eq!(
        with("250ms").expect("valid").store.ttl,
        Duration::from_millis(250)
    );
    assert_eq!(
        with("7d").expect("valid").store.ttl,
        Duration::from_secs(7 * 86_400)
    );
    for bad in ["10", "1x", "s", ""] {
        assert_eq!(with(bad).expect_err(bad).key, "store.ttl", "{bad}");
    }
    assert_eq!(with("0s").expect_err("zero").key, "store.ttl");
    // What check-config prints parses again to the same config.
    let c = with("1h30m").unwrap();
    let again = parse(&c.to_masked_toml()).expect("printed config parses");
    assert_eq!(again.store.ttl, c.store.ttl);
}

#[test]
fn zero_where_zero_cannot_work_is_named() {
    for (table, key) in [
        ("server", "max_body_bytes"),
        ("server", "max_connections"),
        ("store", "max_state_bytes"),
        ("store", "breaker_failures"),
    ] {
        let text = format!("[{table}]\n{key} = 0\n[upstream]\nurl = \"http://127.0.0.1:1\"\n");
        let err = parse(&text).expect_err(key);
        assert_eq!(err.key, format!("{table}.{key}"));
        assert!(err.message.contains("nonzero"), "{err}");
    }
}

#[test]
fn only_the_upstream_is_required() {
    let err = parse("").expect_err("no upstream");
    assert_eq!(err.key, "upstream.url");
    let c = parse("[upstream]\nurl = \"http://127.0.0.1:3000\"\n").expect("valid");
    assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(c.store.ttl, Duration::from_secs(86_400));
    assert_eq!(c.admin.listen, SocketAddr::from(([127, 0, 0, 1], 9090)));
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.store.backend, BackendKind::Embedded);
    assert_eq!(c.store.ttl, Duration::from_secs(86_400));
    assert_eq!(c.contract.body_field, "/_statehold");
    assert_eq!(c.routes[0].on_missing_key, OnMissingKey::Passthrough);
}

#[test]
fn unknown_key_is_named() {
    let text = MINIMAL.replace("listen =", "lsten = \"x\"\nlisten =");
    let err = parse(&text).expect_err("unknown key");
    assert_eq!(err.key, "server.lsten");
    assert!(err.message.contains("unknown field"), "{err}");
    let text = format!("{MINIMAL}ttl_typo = 1\n");
    let err = parse(&text).expect_err("unknown key in route");
    assert!(err.key.starts_with("route"), "{err}");
}

#[test]
fn empty_key_name_still_names_a_key() {
    // Found by the config_parse fuzz target.
    let err = parse(r#"''='''=''''"#).expect_err("invalid");
    assert_eq!(err.key, "config");
}

#[test]
fn wrong_type_is_named() {
    let text = MINIMAL.replace("[upstream]", "[store]\nttl = 5\n[upstream]");
    let err = parse(&text).expect_err("wrong type");
    assert_eq!(err.key, "store.ttl");
}

#[test]
fn bad_key_source_is_named() {
    let text = MINIMAL.replace("json:/message/from/id", "jsn:/x");
    let err = parse(&text).expect_err("bad source");
    assert_eq!(err.key, "route[0].key[0]");
}

#[test]
fn secrets_come_from_env_and_never_print() {
    let text = format!("{MINIMAL}\n[admin]\ntoken_env = \"ADMIN_TOKEN\"\n");
    assert_eq!(parse(&text).expect_err("unset env").key, "admin.token_env");
    let env = HashMap::from([("ADMIN_TOKEN".to_string(), "s3cr3t-token".to_string())]);
    let c = Config::parse(&text, &env).expect("valid");
    assert_eq!(
        c.admin.token.as_ref().map(Secret::expose),
        Some("s3cr3t-token")
    );
    let printed = c.to_masked_toml();
    assert!(!printed.contains("s3cr3t"), "{printed}");
    assert!(format!("{c:?}").find("s3cr3t").is_none());
}

#[test]
fn redis_url_password_is_redacted() {
    assert_eq!(
        redact_url("redis://:pw@host:6379/0"),
        "redis://***@host:6379/0"
    );
    assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
}

#[test]
fn preset_fills_keys() {
    let text = MINIMAL.replace("key = [\"json:/message/from/id\"]", "preset = \"telegram\"");
    let c = parse(&text).expect("valid");
    assert!(!c.routes[0].key.is_empty());
    assert_eq!(c.routes[0].dedupe[0].to_string(), "json:/update_id");
}

#[test]
fn public_listener_needs_verification_or_an_explicit_none() {
    let public = MINIMAL.replace("127.0.0.1:8080", "0.0.0.0:8080");
    let err = parse(&public).expect_err("unverified on a public listener");
    assert_eq!(err.key, "route[0].verify");
    let explicit = format!("{public}verify = \"none\"\n");
    let c = parse(&explicit).expect("explicit none");
    assert_eq!(c.warnings().len(), 1);
    assert!(parse(&format!("{public}verify = \"nope\"\n")).is_err());
    let verified = format!("{public}[route.verify]\nkind = \"telegram\"\nsecret = \"tok\"\n");
    assert!(parse(&verified).expect("verified").warnings().is_empty());
    // Blank secrets are refused, inline or from the environment.
    let blank = format!("{public}[route.verify]\nkind = \"telegram\"\nsecret = \"   \"\n");
    assert_eq!(
        parse(&blank).expect_err("blank").key,
        "route[0].verify.secret"
    );
    let env_text = format!("{public}[route.verify]\nkind = \"telegram\"\nsecret_env = \"T\"\n");
    let env = HashMap::from([("T".to_string(), " \t".to_string())]);
    assert_eq!(
        Config::parse(&env_text, &env).expect_err("blank env").key,
        "route[0].verify.secret_env"
    );
}

#[test]
fn twilio_and_discord_need_their_settings() {
    let twilio = format!("{MINIMAL}[route.verify]\nkind = \"twilio\"\nsecret = \"tok\"\n");
    assert_eq!(
        parse(&twilio).expect_err("no url").key,
        "route[0].verify.public_url"
    );
    let discord = format!("{MINIMAL}[route.verify]\nkind = \"discord\"\npublic_key = \"ab\"\n");
    assert_eq!(
        parse(&discord).expect_err("bad key").key,
        "route[0].verify.public_key"
    );
}

#[test]
fn every_key_is_documented_for_explain() {
    let documented = explain::keys();
    assert!(documented.len() > 40, "{documented:?}");
    let missing: Vec<String> = documented
        .iter()
        .filter(|k| k.doc.is_empty())
        .map(|k| format!("{}.{}", k.table, k.key))
        .collect();
    assert!(missing.is_empty(), "keys without a /// line: {missing:?}");
    let c = parse(MINIMAL).expect("valid");
    let explained = c.explain();
    assert!(
        explained.contains("# Log conversation ids in full"),
        "{explained}"
    );
    // Every printed key is one we document.
    let mut table = String::new();
    for line in c.to_masked_toml().lines() {
        if line.starts_with('[') {
            table = line.trim_matches(['[', ']']).to_string();
        } else if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                documented.iter().any(|d| d.table == table && d.key == key),
                "{table}.{key} is printed but not documented"
            );
        }
    }
}

#[test]
fn every_key_is_in_docs_configuration_md() {
    let doc = include_str!("../../docs/configuration.md");
    let missing: Vec<String> = explain::keys()
        .iter()
        .map(|k| format!("`{}.{}`", k.table, k.key))
        .filter(|name| !doc.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
}

#[test]
fn a_single_key_source_needs_no_list() {
    let one = MINIMAL.replace(
        r#"key = ["json:/message/from/id"]"#,
        r#"key = "json:/message/from/id""#,
    );
    let c = parse(&one).expect("one source");
    assert_eq!(c.routes[0].key.len(), 1);
}

#[test]
fn sentinel_needs_a_master_name_and_no_url() {
    let with = |store: &str| {
        parse(&MINIMAL.replace("[upstream]", &format!("[store]\n{store}\n[upstream]")))
    };
    let ok =
        with("backend = \"redis\"\nsentinels = [\"127.0.0.1:26379\"]\nsentinel_master = \"m\"")
            .expect("sentinel config");
    assert_eq!(ok.store.sentinels, ["127.0.0.1:26379"]);
    assert_eq!(
        with("backend = \"redis\"\nsentinels = [\"127.0.0.1:26379\"]")
            .expect_err("no master")
            .key,
        "store.sentinel_master"
    );
    assert_eq!(
        with("backend = \"redis\"\nurl = \"redis://x:6379\"\nsentinels = [\"a:1\"]\nsentinel_master = \"m\"")
            .expect_err("both")
            .key,
        "store.url"
    );
}

#[test]
fn a_redis_cluster_is_one_of_url_sentinels_cluster_with_clean_node_urls() {
    let with = |store: &str| {
        parse(&MINIMAL.replace("[upstream]", &format!("[store]\n{store}\n[upstream]")))
    };
    let ok =
        with("backend = \"redis\"\ncluster = [\"redis://127.0.0.1:7000\", \"rediss://r2:7001\"]")
            .expect("cluster config");
    assert_eq!(ok.store.cluster.len(), 2);
    assert_eq!(
        ok.redacted_store_url().as_deref(),
        Some("cluster via redis://127.0.0.1:7000,rediss://r2:7001")
    );
    let refused = |store: &str| with(store).expect_err(store).key;
    assert_eq!(
        refused("backend = \"redis\"\nurl = \"redis://x:6379\"\ncluster = [\"redis://a:1\"]"),
        "store.url"
    );
    assert_eq!(
        refused("backend = \"redis\"\ncluster = [\"redis://a:1\", \"a:2\"]"),
        "store.cluster[1]"
    );
    // A password in a node URL would be printed by check-config and logs.
    assert_eq!(
        refused("backend = \"redis\"\ncluster = [\"redis://:hunter2@a:1\"]"),
        "store.cluster[0]"
    );
}

#[test]
fn redis_passwords_come_inline_or_from_the_environment_and_print_masked() {
    let toml = MINIMAL.replace(
        "[upstream]",
        "[store]\nbackend = \"redis\"\nsentinels = [\"s:26379\"]\nsentinel_master = \"m\"\n\
         password_env = \"REDIS_PW\"\nsentinel_password_env = \"SENTINEL_PW\"\n[upstream]",
    );
    let env: std::collections::HashMap<String, String> = [
        ("REDIS_PW", "data-secret"),
        ("SENTINEL_PW", "sentinel-secret"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let c = Config::parse(&toml, &env).expect("passwords from env");
    assert_eq!(
        c.store.password.as_ref().map(|p| p.expose()),
        Some("data-secret")
    );
    assert_eq!(
        c.store.sentinel_password.as_ref().map(|p| p.expose()),
        Some("sentinel-secret")
    );
    let shown = c.to_masked_toml();
    assert!(!shown.contains("secret\""), "{shown}");
    let unset = Config::parse(&toml, &std::collections::HashMap::new()).expect_err("unset");
    assert_eq!(unset.key, "store.password_env");
}

#[test]
fn the_first_key_not_open_only_seals() {
    const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let with = |keys: &str| {
        let store = format!("[store]\nencryption = {{ keys = [{keys}] }}\n[upstream]");
        parse(&MINIMAL.replace("[upstream]", &store))?.privacy()
    };
    let rolling = with(&format!(
        r#"{{ id = "k2", secret = "{K2}", open_only = true }}, {{ id = "k1", secret = "{K1}" }}"#
    ))
    .expect("valid");
    let active = rolling.keyring().and_then(|r| r.active_id());
    assert_eq!(active, Some("k1"));
    let none_seals = with(&format!(
        r#"{{ id = "k2", secret = "{K2}", open_only = true }}"#
    ));
    let err = none_seals.err().expect("refused");
    assert_eq!(err.key, "store.encryption.keys");
}

#[test]
fn plaintext_fallback_needs_hashed_keys() {
    let fallback = MINIMAL.replace(
        "[upstream]",
        "[store]\nplaintext_fallback = true\n[upstream]",
    );
    let err = parse(&fallback).expect_err("refused");
    assert_eq!(err.key, "store.plaintext_fallback");
}

#[test]
fn route_ttl_sets_its_namespaces_lifetime_and_routes_of_one_namespace_agree() {
    let two = format!(
        "{MINIMAL}ttl = \"5m\"\n[[route]]\npath = \"/web\"\nnamespace = \"web\"\nkey = [\"header:x-session-id\"]\n"
    );
    let config = parse(&two).expect("valid");
    let lifetimes = config.lifetimes();
    let key = |ns: &str| crate::key::ConvKey::new(ns, "1");
    assert_eq!(lifetimes.of(&key("tg")), Duration::from_secs(300));
    assert_eq!(lifetimes.of(&key("tg#")), Duration::from_secs(300));
    assert_eq!(lifetimes.of(&key("web")), config.store.ttl);
    let clash = two.replace("namespace = \"web\"", "namespace = \"tg\"");
    assert_eq!(parse(&clash).expect_err("refused").key, "route[1].ttl");
    let zero = MINIMAL.to_string() + "ttl = \"0s\"\n";
    assert_eq!(parse(&zero).expect_err("refused").key, "route[0].ttl");
}
