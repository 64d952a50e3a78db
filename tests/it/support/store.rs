//! Which store a scenario runs on, for tests that run one scenario on the
//! embedded store, one Redis and a Redis Cluster.

use super::redis_cluster::{key_slot, RedisCluster};
use super::{redis_cmd, Config, RedisServer};

#[derive(Clone, Copy)]
pub enum Store<'a> {
    Embedded,
    Redis(&'a RedisServer),
    Cluster(&'a RedisCluster),
}

impl Store<'_> {
    /// Points `config` at this store.
    pub fn configure(self, config: &mut Config) {
        match self {
            Store::Embedded => {}
            Store::Redis(r) => config.redis = Some(r.port),
            Store::Cluster(c) => config.redis_cluster = c.seeds(),
        }
    }

    /// The data nodes' ports (none on the embedded store).
    pub fn ports(self) -> Vec<u16> {
        match self {
            Store::Embedded => Vec::new(),
            Store::Redis(r) => vec![r.port],
            Store::Cluster(c) => c.seeds(),
        }
    }

    /// The server holding `key` (its slot's primary on a Cluster).
    pub fn port_of(self, key: &str) -> Option<u16> {
        match self {
            Store::Embedded => None,
            Store::Redis(r) => Some(r.port),
            Store::Cluster(c) => Some(c.owner(key_slot(key)).expect("an owner").port),
        }
    }

    /// Whether `key` is gone, read on the server itself (not through the
    /// admin API, whose reads slide the TTL); `None` on the embedded store.
    pub fn key_gone(self, key: &str) -> Option<bool> {
        let port = self.port_of(key)?;
        Some(redis_cmd(port, &format!("EXISTS {key}")).ok() == Some("int(0)".into()))
    }
}
