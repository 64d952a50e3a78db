//! A real Redis Cluster on loopback, created by the test: `redis-server`
//! nodes with `cluster-enabled`, joined by `redis-cli --cluster create`,
//! resharded by `redis-cli --cluster reshard`, and the slot of a key
//! computed the way Redis does (CRC16 of the hash tag).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use super::{redis_cmd, RedisServer};

/// A port whose cluster bus port (port + 10000) is free too.
pub fn free_node_port() -> u16 {
    // Both the node's port and its bus port (10000 above) stay below the
    // ephemeral range (see `free_port`).
    let bindable = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..1000 {
        let port = super::free_port();
        if bindable(port + 10000) && super::reserve_port(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair for a cluster node")
}

pub struct RedisCluster {
    /// Every node, primaries and replicas.
    pub nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    /// Slot ranges, inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, all slots
    /// covered and every node agreeing.
    pub fn start(dir: &Path, primaries: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::start_cluster_node(dir))
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = cmd.output().expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_agreed();
        cluster
    }

    /// Every live node says the cluster is ok and sees every other node,
    /// and every replica is in sync with its primary (a replica that never
    /// synced is not promoted when its primary dies).
    ///
    /// Agreement is the Cluster's own time (failure reports, a promoted
    /// replica's epoch spreading, a restarted node's full sync): it gets as
    /// long as a failover, and if it never comes, each node's view says why.
    pub fn wait_agreed(&self) {
        let live: Vec<u16> = self.live_ports();
        let agreed = || {
            live.iter().all(|p| {
                redis_cmd(*p, "CLUSTER INFO").is_ok_and(|i| {
                    i.contains("cluster_state:ok")
                        && i.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
                })
            })
        };
        let in_sync = || {
            live.iter().all(|p| {
                redis_cmd(*p, "INFO replication")
                    .is_ok_and(|i| i.contains("role:master") || i.contains("master_link_status:up"))
            })
        };
        let views = || {
            let views: Vec<String> = live
                .iter()
                .map(|p| {
                    let info = redis_cmd(*p, "CLUSTER INFO").unwrap_or_else(|e| e.to_string());
                    let nodes = redis_cmd(*p, "CLUSTER NODES").unwrap_or_else(|e| e.to_string());
                    let role = redis_cmd(*p, "INFO replication").unwrap_or_else(|e| e.to_string());
                    let state: Vec<&str> = info.lines().take(3).collect();
                    let link: Vec<&str> = role
                        .lines()
                        .filter(|l| l.starts_with("role") || l.starts_with("master_link"))
                        .collect();
                    format!("node {p}: {state:?} {link:?}\n{nodes}")
                })
                .collect();
            views.join("\n")
        };
        super::wait_until_within_or(
            "the cluster to agree",
            std::time::Duration::from_secs(60),
            || agreed() && in_sync(),
            views,
        );
    }

    /// Moves `count` slots (the lowest first) from the primary serving
    /// `slot` to another primary, live; returns that other primary.
    pub fn move_slots_of(&self, slot: u16, count: u16) -> NodeInfo {
        let from = self.owner(slot).expect("the slot served");
        let to = self
            .view()
            .into_iter()
            .find(|n| n.primary && !n.failed && n.id != from.id)
            .expect("another primary");
        self.reshard(&from, &to, count);
        to
    }

    /// Kills (kill -9) the primary serving `slot`, waits until its replica
    /// took over, and brings it back as a replica, in sync, before a next
    /// fault may kill the promoted one.
    pub fn fail_over_slot(&mut self, slot: u16) {
        let doomed = self.owner(slot).expect("the slot served");
        let node = self.nodes.iter_mut().find(|n| n.port == doomed.port);
        node.expect("the primary is ours").proc.kill9();
        super::wait_until_within(
            "a replica took over",
            std::time::Duration::from_secs(60),
            || self.owner(slot).is_some_and(|n| n.port != doomed.port),
        );
        let node = self.nodes.iter_mut().find(|n| n.port == doomed.port);
        node.expect("the primary is ours").restart();
        self.wait_agreed();
    }

    fn live_ports(&self) -> Vec<u16> {
        let mut nodes: Vec<_> = self.nodes.iter().collect();
        nodes.retain(|n| redis_cmd(n.port, "PING").is_ok());
        nodes.iter().map(|n| n.port).collect()
    }

    /// Seed ports for statehold's `store.cluster`: every node.
    pub fn seeds(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The cluster's view from a live node.
    pub fn view(&self) -> Vec<NodeInfo> {
        let port = self.live_ports()[0];
        let text = redis_cmd(port, "CLUSTER NODES").expect("CLUSTER NODES");
        text.lines().filter_map(parse_node_line).collect()
    }

    /// The node serving `slot` now (none while its primary is failing).
    pub fn owner(&self, slot: u16) -> Option<NodeInfo> {
        self.view().into_iter().find(|n| {
            n.primary && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
        })
    }

    /// Moves `count` slots from the primary on `from` to the one on `to`
    /// with `redis-cli --cluster reshard` (lowest slots first), keys and
    /// all, while clients keep using them.
    pub fn reshard(&self, from: &NodeInfo, to: &NodeInfo, count: u16) {
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{}", from.port)])
            .args(["--cluster-from", &from.id, "--cluster-to", &to.id])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn parse_node_line(line: &str) -> Option<NodeInfo> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
    let flags = fields.get(2)?;
    let slots = fields
        .iter()
        .skip(8)
        .filter(|f| !f.starts_with('['))
        .filter_map(|f| {
            let (a, b) = f.split_once('-').unwrap_or((f, f));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    Some(NodeInfo {
        id: fields.first()?.to_string(),
        port,
        primary: flags.contains("master"),
        failed: flags.contains("fail"),
        slots,
    })
}

/// The slot Redis Cluster assigns `key`: CRC16 (XMODEM) of its hash tag
/// (the part between the first `{` and the next `}`, when not empty).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}
