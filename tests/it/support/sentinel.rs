//! Redis with Sentinel on loopback, started by the test: one primary, its
//! replicas, three `redis-sentinel`s watching it, and a failover on demand
//! (the primary killed, a replica promoted, the old primary back as a
//! replica).

use std::path::Path;
use std::time::{Duration, Instant};

use super::{wait_until, wait_until_within, Proc, RedisServer};

/// The monitored primary's name.
pub const MASTER: &str = "mymaster";

/// One command to a server of this test, typed; `None` when it does not
/// answer (yet).
pub fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut con).ok()
}

fn ping(port: u16) -> bool {
    query::<String>(port, &["PING"]).is_some_and(|r| r == "PONG")
}

/// A `redis-sentinel` watching `primary`; quorum 2, a primary is down after 1 s.
pub fn start_sentinel(dir: &Path, primary: u16) -> (Proc, u16) {
    let port = super::free_port();
    let conf = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 5000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir.display()
        ),
    )
    .expect("sentinel conf");
    let mut cmd = std::process::Command::new("redis-sentinel");
    cmd.arg(&conf).stdout(std::process::Stdio::null());
    let proc = Proc::from_child("redis-sentinel", cmd.spawn().expect("redis-sentinel"));
    wait_until("sentinel up", || ping(port));
    (proc, port)
}

/// The primary's port as a Sentinel names it.
pub fn primary_of(sentinel: u16) -> Option<u16> {
    let addr: Vec<String> = query(sentinel, &["SENTINEL", "get-master-addr-by-name", MASTER])?;
    addr.get(1)?.parse().ok()
}

/// A primary, `replicas` replicas and three Sentinels, all agreeing.
pub struct SentinelSet {
    /// The data nodes; which one is primary changes with each failover.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<(Proc, u16)>,
}

impl SentinelSet {
    pub fn start(dir: &Path, replicas: usize) -> SentinelSet {
        let primary = RedisServer::start(dir, false);
        let port = primary.port;
        let mut servers = vec![primary];
        servers.extend((0..replicas).map(|_| RedisServer::start_replica(dir, port)));
        let sentinels: Vec<(Proc, u16)> = (0..3).map(|_| start_sentinel(dir, port)).collect();
        let set = SentinelSet { servers, sentinels };
        set.wait_agreed(replicas);
        set
    }

    /// Every Sentinel sees the replicas and the other Sentinels.
    fn wait_agreed(&self, replicas: usize) {
        wait_until("sentinels see the replicas and each other", || {
            self.sentinels.iter().all(|(_, port)| {
                query::<Vec<String>>(*port, &["SENTINEL", "master", MASTER]).is_some_and(|f| {
                    let field = |name: &str| {
                        let at = f.iter().position(|x| x == name)?;
                        f.get(at + 1).map(String::as_str)
                    };
                    field("num-slaves") == Some(&replicas.to_string())
                        && field("num-other-sentinels") == Some("2")
                })
            })
        });
    }

    /// statehold's `[store]` lines for this set.
    pub fn backend_lines(&self, key_prefix: &str) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, p)| format!("\"127.0.0.1:{p}\""))
            .collect();
        format!(
            "backend = \"redis\"\nsentinels = [{}]\nsentinel_master = \"{MASTER}\"\nkey_prefix = \"{key_prefix}\"\n",
            addrs.join(", ")
        )
    }

    pub fn primary_port(&self) -> Option<u16> {
        primary_of(self.sentinels[0].1)
    }

    /// Kills the primary (kill -9) and waits until a Sentinel names
    /// another; returns how long that took. The old primary stays down
    /// until [`SentinelSet::restart_stopped`].
    pub fn kill_primary(&mut self) -> Duration {
        let old = self.primary_port().expect("a primary");
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == old)
            .expect("the primary is ours");
        server.proc.kill9();
        let killed = Instant::now();
        // A Sentinel that just failed over backs off before the next
        // failover (its failover-timeout): under load that can pass the
        // usual 20 s.
        wait_until_within(
            "a sentinel promoted a replica",
            Duration::from_secs(60),
            || self.primary_port().is_some_and(|p| p != old),
        );
        killed.elapsed()
    }

    /// Starts every killed server again as a replica of the current
    /// primary, and waits until each is in sync: what an operator does
    /// before the next failover may need it. (Left alone, a restarted old
    /// primary calls itself a primary, empty, until the Sentinels demote
    /// it some 8 s later; a failover in between may have only empty
    /// servers to promote, and no client can keep data through that.)
    pub fn restart_stopped(&mut self) {
        let primary = self.primary_port().expect("a primary");
        for s in &mut self.servers {
            if s.proc.pid() == 0 {
                s.restart_as_replica_of(primary);
            }
        }
    }
}
