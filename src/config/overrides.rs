//! Environment overrides: `STATEHOLD_<SECTION>__<KEY>` sets `<section>.<key>`
//! over the file (`STATEHOLD_SERVER__LISTEN=0.0.0.0:8080`,
//! `STATEHOLD_STORE__URL=redis://redis:6379/0`); nested tables take one
//! `__` per level (`STATEHOLD_SERVER__TLS__CERT`). The environment wins over
//! the file. A value that reads as a TOML value (a number, `true`, a quoted
//! string, an array) is taken as one, anything else as a string, so
//! `STATEHOLD_STORE__KEY_PREFIX='"123"'` keeps a number-like string a
//! string. `[[route]]` tables cannot be set this way. Variables without
//! `__` (`STATEHOLD_CONFIG`, the `*_env` secrets' own names) are not
//! overrides.

use toml::{Table, Value};

use super::{ConfigError, Env};

const PREFIX: &str = "STATEHOLD_";
const SECTIONS: &[&str] = &[
    "server", "upstream", "store", "contract", "admin", "log", "audit",
];

/// One applied override: the dotted key and the variable that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    pub var: String,
}

/// Applies every `STATEHOLD_<SECTION>__<KEY>` of `env` to `table`; an
/// override naming no section, or a key under a value that is no table,
/// is refused (naming the variable), never ignored.
pub fn apply(table: &mut Table, env: &dyn Env) -> Result<Vec<Override>, ConfigError> {
    let mut vars = env.vars_with_prefix(PREFIX);
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        let Some(path) = var[PREFIX.len()..]
            .split_once("__")
            .map(|_| &var[PREFIX.len()..])
        else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) || !SECTIONS.contains(&parts[0].as_str()) {
            return Err(ConfigError::new(
                var.clone(),
                format!(
                    "names no config key: use STATEHOLD_<SECTION>__<KEY> with a section of {}",
                    SECTIONS.join(", ")
                ),
            ));
        }
        let key = parts.join(".");
        set(table, &parts, value_of(&raw), &var)?;
        applied.push(Override { key, var });
    }
    Ok(applied)
}

/// The TOML value `raw` reads as, else `raw` as a string.
fn value_of(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.into())),
        Err(_) => Value::String(raw.into()),
    }
}

fn set(table: &mut Table, parts: &[String], value: Value, var: &str) -> Result<(), ConfigError> {
    let (last, parents) = parts
        .split_last()
        .ok_or_else(|| ConfigError::new(var, "names no key"))?;
    let mut at = table;
    for part in parents {
        let slot = at
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        at = slot.as_table_mut().ok_or_else(|| {
            ConfigError::new(var, format!("`{part}` is not a table in the config file"))
        })?;
    }
    at.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_overrides_set_typed_values_and_refuse_what_names_nothing() {
        let env: HashMap<String, String> = [
            ("STATEHOLD_SERVER__LISTEN", "0.0.0.0:8080"),
            ("STATEHOLD_SERVER__MAX_BODY_BYTES", "4096"),
            ("STATEHOLD_STORE__KEY_PREFIX", "\"123\""),
            ("STATEHOLD_SERVER__TLS__CERT", "/tls/cert.pem"),
            ("STATEHOLD_CONFIG", "/etc/statehold.toml"),
            ("STATEHOLD_ADMIN_TOKEN", "a secret's own name"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut table: Table = "[server]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        let applied = apply(&mut table, &env).unwrap();
        let keys: Vec<&str> = applied.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.max_body_bytes",
                "server.tls.cert",
                "store.key_prefix"
            ]
        );
        assert_eq!(table["server"]["listen"].as_str(), Some("0.0.0.0:8080"));
        assert_eq!(table["server"]["max_body_bytes"].as_integer(), Some(4096));
        assert_eq!(table["store"]["key_prefix"].as_str(), Some("123"));
        assert_eq!(
            table["server"]["tls"]["cert"].as_str(),
            Some("/tls/cert.pem")
        );

        let bad: HashMap<String, String> =
            [("STATEHOLD_SERVR__LISTEN".to_string(), "x".to_string())].into();
        let e = apply(&mut Table::new(), &bad).unwrap_err();
        assert_eq!(e.key, "STATEHOLD_SERVR__LISTEN");
        let nested: HashMap<String, String> = [(
            "STATEHOLD_SERVER__LISTEN__PORT".to_string(),
            "1".to_string(),
        )]
        .into();
        assert!(apply(&mut table, &nested).is_err(), "listen is no table");
    }
}
