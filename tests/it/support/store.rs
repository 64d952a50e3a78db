//! Which store a scenario runs on, for tests that run one scenario on the
//! embedded store, one Redis and a Redis Cluster.

use super::redis_cluster::{key_slot, RedisCluster};
use super::{redis_cmd, temp_dir, wait_until, Config, RedisServer, Statehold};

/// Runs `scenario` on a redis-server of its own (no persistence), stopped
/// after it.
pub fn with_redis(scenario: impl FnOnce(Store)) {
    let dir = temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    scenario(Store::Redis(&redis));
}

/// Runs `scenario` on a Redis Cluster of its own: three primaries, no
/// replicas.
pub fn with_cluster(scenario: impl FnOnce(Store)) {
    let dir = temp_dir();
    let cluster = RedisCluster::start(dir.path(), 3, 0);
    scenario(Store::Cluster(&cluster));
}

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

    /// Waits until `chat`'s record expired: its snapshot key (`stored`)
    /// gone from Redis, or on the embedded store an `expire` event in its
    /// trail. Not through the admin state API, whose reads slide the TTL.
    pub fn wait_expired(self, sh: &Statehold, stored: &str, chat: i64) {
        wait_until("the record to expire", || match self.key_gone(stored) {
            Some(gone) => gone,
            None => {
                let (_, trail) =
                    sh.admin_call("GET", &format!("/v1/audit?key=tg:{chat}&limit=1"), "");
                trail[0]["event"]["kind"] == "expire"
            }
        });
    }
}
