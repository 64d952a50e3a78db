//! What a route requires of the snapshots its bot reports, and what a
//! clear keeps: `route.schema` (JSON Schema 2020-12), `[route.transitions]`
//! (the edges a state field may move along) and `route.keep_on_clear`.
//!
//! A refusal names where the snapshot broke the rule (a JSON pointer and
//! the schema keyword, or the transition field and its configured state
//! names), never a value from the snapshot: it goes into the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[route.transitions]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionsConfig {
    /// JSON pointer to the state field, e.g. `"/stage"`.
    pub field: String,
    /// From each state, the states it may move to, e.g. `{ INIT = ["AUTH"], AUTH = ["MENU"] }`.
    pub allowed: BTreeMap<String, Vec<String>>,
}

/// A route's compiled rules; [`Rules::default`] allows everything.
#[derive(Default)]
pub struct Rules {
    schema: Option<jsonschema::Validator>,
    transitions: Option<Transitions>,
    keep_on_clear: Vec<String>,
}

struct Transitions {
    field: String,
    allowed: BTreeMap<String, BTreeSet<String>>,
}

/// Why a reported snapshot breaks its route's rules.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("does not match route.schema at {pointer:?} (keyword {keyword})")]
    Schema { pointer: String, keyword: String },
    #[error("route.transitions: {field} may not move from {from} to {to}")]
    Transition {
        field: String,
        /// A configured state name, or a placeholder: never snapshot text.
        from: String,
        to: String,
    },
    #[error("the snapshot is not JSON")]
    NotJson,
    /// The check ran out of its time limit (it goes on off the runtime,
    /// and its result is dropped).
    #[error("checking the route's rules took longer than {0:?}")]
    TimedOut(std::time::Duration),
}

/// A rule that cannot be compiled from the config.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("schema: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema: {path} is not JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("schema: {path} is not a usable JSON Schema 2020-12: {reason}")]
    Schema { path: PathBuf, reason: String },
    #[error("{0}: a JSON pointer starts with '/'")]
    Pointer(&'static str),
}

impl RulesError {
    /// The route's config key at fault.
    pub fn config_key(&self) -> &'static str {
        match self {
            RulesError::Read { .. } | RulesError::Json { .. } | RulesError::Schema { .. } => {
                "schema"
            }
            RulesError::Pointer(key) => key,
        }
    }
}

impl Rules {
    pub fn new(
        schema: Option<&Path>,
        transitions: Option<&TransitionsConfig>,
        keep_on_clear: &[String],
    ) -> Result<Rules, RulesError> {
        let schema = schema.map(compile_schema).transpose()?;
        let transitions = match transitions {
            Some(t) if !t.field.starts_with('/') => {
                return Err(RulesError::Pointer("transitions.field"))
            }
            Some(t) => Some(Transitions {
                field: t.field.clone(),
                allowed: t
                    .allowed
                    .iter()
                    .map(|(from, to)| (from.clone(), to.iter().cloned().collect()))
                    .collect(),
            }),
            None => None,
        };
        if keep_on_clear.iter().any(|p| !p.starts_with('/')) {
            return Err(RulesError::Pointer("keep_on_clear"));
        }
        Ok(Rules {
            schema,
            transitions,
            keep_on_clear: keep_on_clear.to_vec(),
        })
    }

    /// Whether a JSON Schema is configured (its check is run off the
    /// async workers, [`Rules::check_bounded`]).
    pub fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// [`Rules::check`], on a blocking thread when a schema is configured,
    /// within `limit`: a check that runs out of time is refused, and never
    /// holds a runtime worker (other conversations and `/healthz` go on).
    /// Without a schema the check is cheap and runs in place (no copy).
    pub async fn check_bounded(
        self: &std::sync::Arc<Self>,
        old: Option<&Bytes>,
        new: &Bytes,
        limit: std::time::Duration,
    ) -> Result<(), Refusal> {
        if !self.has_schema() {
            return self.check(old.map(|o| &o[..]), new);
        }
        let (rules, old, new) = (std::sync::Arc::clone(self), old.cloned(), new.clone());
        let check = tokio::task::spawn_blocking(move || rules.check(old.as_deref(), &new));
        match tokio::time::timeout(limit, check).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(Refusal::TimedOut(limit)),
        }
    }

    /// `Ok` when `new` may replace `old` (the stored snapshot; `None`: none,
    /// or the store is out).
    pub fn check(&self, old: Option<&[u8]>, new: &[u8]) -> Result<(), Refusal> {
        if self.schema.is_none() && self.transitions.is_none() {
            return Ok(());
        }
        let new: Value = serde_json::from_slice(new).map_err(|_| Refusal::NotJson)?;
        if let Some(schema) = &self.schema {
            if let Some(e) = schema.iter_errors(&new).next() {
                return Err(Refusal::Schema {
                    pointer: e.instance_path().to_string(),
                    keyword: e.kind().keyword().to_string(),
                });
            }
        }
        match &self.transitions {
            Some(t) => {
                let old = old.and_then(|o| serde_json::from_slice::<Value>(o).ok());
                t.check(old.as_ref(), &new)
            }
            None => Ok(()),
        }
    }

    /// What a clear stores instead: the `keep_on_clear` members of `old`
    /// at their places, or `None` (a real clear) when it has none of them.
    pub fn kept_on_clear(&self, old: Option<&[u8]>) -> Option<Bytes> {
        if self.keep_on_clear.is_empty() {
            return None;
        }
        let old: Value = serde_json::from_slice(old?).ok()?;
        let mut kept = Value::Object(Map::new());
        for pointer in &self.keep_on_clear {
            if let Some(value) = old.pointer(pointer) {
                put_at(&mut kept, pointer, value.clone());
            }
        }
        let empty = kept.as_object().is_some_and(Map::is_empty);
        (!empty).then(|| Bytes::from(kept.to_string()))
    }
}

impl Transitions {
    fn check(&self, old: Option<&Value>, new: &Value) -> Result<(), Refusal> {
        let Some(from) = old.and_then(|o| o.pointer(&self.field)).map(state_name) else {
            return Ok(()); // the first state is free
        };
        let to = new.pointer(&self.field).map(state_name);
        if to.as_deref() == Some(from.as_str()) {
            return Ok(());
        }
        let allowed = to.as_ref().is_some_and(|to| {
            self.allowed
                .get(&from)
                .is_some_and(|next| next.contains(to))
        });
        if allowed {
            return Ok(());
        }
        // Only configured state names are shown.
        let shown = |state: Option<&String>| match state {
            None => "(missing)".to_string(),
            Some(s) if self.is_listed(s) => s.clone(),
            Some(_) => "(a state not listed)".to_string(),
        };
        Err(Refusal::Transition {
            field: self.field.clone(),
            from: shown(Some(&from)),
            to: shown(to.as_ref()),
        })
    }

    fn is_listed(&self, state: &str) -> bool {
        self.allowed.contains_key(state) || self.allowed.values().any(|to| to.contains(state))
    }
}

/// A state field's value as a state name: a string as itself, anything
/// else as its JSON text.
fn state_name(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets `value` at `pointer` inside `root`, making objects on the way.
fn put_at(root: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = tokens.split_last() else {
        return;
    };
    let mut at = root;
    for token in path {
        let Value::Object(map) = at else { return };
        at = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = at {
        map.insert(last.clone(), value);
    }
}

fn compile_schema(path: &Path) -> Result<jsonschema::Validator, RulesError> {
    let text = std::fs::read(path).map_err(|source| RulesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let schema: Value = serde_json::from_slice(&text).map_err(|source| RulesError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    // The `regex` engine matches in linear time, so no report can make a
    // check backtrack for seconds; a pattern it cannot compile (lookaround,
    // backreferences) is refused here, naming where it is (issue 20, item 1).
    jsonschema::draft202012::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(1 << 20))
        .build(&schema)
        .map_err(|e| RulesError::Schema {
            path: path.to_path_buf(),
            reason: format!("{e} (at {})", pointer_or_root(&e.schema_path().to_string())),
        })
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() {
        "/"
    } else {
        pointer
    }
}

#[cfg(test)]
mod tests;
