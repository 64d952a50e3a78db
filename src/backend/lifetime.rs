//! How long a conversation's record lives without a request: `store.ttl`,
//! or its route's `route.ttl` (one bot's web sessions 1 h, its payment
//! sessions 5 min). Routes are told apart by namespace, which every stored
//! key carries (a hashed key's namespace is the route's plus `#`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::key::ConvKey;

#[derive(Clone, Debug)]
pub struct Lifetimes {
    default: Duration,
    by_namespace: Arc<HashMap<String, Duration>>,
}

impl Lifetimes {
    /// Every conversation lives `ttl`.
    pub fn uniform(ttl: Duration) -> Lifetimes {
        Lifetimes {
            default: ttl,
            by_namespace: Arc::default(),
        }
    }

    /// `store.ttl`, and each listed namespace's own.
    pub fn new(default: Duration, by_namespace: HashMap<String, Duration>) -> Lifetimes {
        Lifetimes {
            default,
            by_namespace: Arc::new(by_namespace),
        }
    }

    /// The lifetime of `key`'s record (a stored key, hashed or not).
    pub fn of(&self, key: &ConvKey) -> Duration {
        let ns = crate::privacy::Privacy::route_namespace(key.namespace());
        self.by_namespace.get(ns).copied().unwrap_or(self.default)
    }

    pub fn default_ttl(&self) -> Duration {
        self.default
    }

    /// Every lifetime in use, each once, the default first.
    pub fn distinct(&self) -> Vec<Duration> {
        let mut all = vec![self.default];
        for d in self.by_namespace.values() {
            if !all.contains(d) {
                all.push(*d);
            }
        }
        all
    }
}

/// How long and how much of each conversation a backend keeps: its
/// record's lifetime and, with `store.history = N`, its last N versions.
#[derive(Clone, Debug)]
pub struct Retention {
    pub lifetimes: Lifetimes,
    /// Versions kept per conversation (0: history off).
    pub history: u32,
    /// Audit events kept (0: audit off).
    pub audit: u64,
}

impl From<Duration> for Retention {
    fn from(ttl: Duration) -> Retention {
        Lifetimes::uniform(ttl).into()
    }
}

impl From<Lifetimes> for Retention {
    fn from(lifetimes: Lifetimes) -> Retention {
        Retention {
            lifetimes,
            history: 0,
            audit: 0,
        }
    }
}

impl From<Duration> for Lifetimes {
    fn from(ttl: Duration) -> Lifetimes {
        Lifetimes::uniform(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_namespace_overrides_the_default_hashed_or_not() {
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        let l = Lifetimes::new(hour, [("pay".to_string(), minute)].into_iter().collect());
        assert_eq!(l.of(&ConvKey::new("pay", "1")), minute);
        assert_eq!(l.of(&ConvKey::new("pay#", "Vh3k")), minute);
        assert_eq!(l.of(&ConvKey::new("web", "1")), hour);
        assert_eq!(Lifetimes::from(hour).of(&ConvKey::new("pay", "1")), hour);
    }
}
