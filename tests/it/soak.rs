//! Chaos soak: many conversations through three replicas while the harness
//! kills the bot, kills replicas, freezes a replica past its lease, fills a
//! replica's connection limit, and breaks the store: Redis stopped and
//! restarted (one Redis), a Sentinel failover (primary killed, replica
//! promoted, the old primary back as a replica), or on a Redis Cluster a
//! live reshard and a primary killed with its replica promoted. Then a
//! checker proves that every acknowledged step is in the stored state
//! exactly once and in order, and that no conversation was handled
//! concurrently by the bot.
//!
//! Bounded for CI (`STATEHOLD_SOAK_SECS`, default 40; 25 for the Sentinel
//! and Cluster runs); run longer with e.g.
//! `STATEHOLD_SOAK_SECS=600 cargo test --release --test it soak:: -- --nocapture`.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::checks::verify;
use support::redis_cluster::{key_slot, RedisCluster};
use support::sentinel::SentinelSet;
use support::traffic::{drive, Report};
use support::{Bot, Config, RedisServer, Statehold};

const MAX_CONNECTIONS: usize = 48;

const STORE_FAULTS: [&str; 4] = [
    "redis kill -9 + restart (AOF)",
    "sentinel failover",
    "cluster live reshard",
    "cluster primary kill -9",
];

/// Where the replicas keep conversations, and how the soak breaks it.
enum Store {
    /// One Redis with AOF: killed and restarted.
    Redis(RedisServer),
    /// A primary, two replicas, three Sentinels: the primary killed.
    Sentinel(SentinelSet),
    /// Three primaries with a replica each: slots moved, a primary killed.
    Cluster(RedisCluster),
}

impl Store {
    fn configure(&self, base: &mut Config) {
        match self {
            Store::Redis(r) => base.redis = Some(r.port),
            Store::Sentinel(set) => base.backend = Some(set.backend_lines(&base.key_prefix())),
            Store::Cluster(c) => base.redis_cluster = c.seeds(),
        }
        // A failover must not take back an acknowledged step, whichever
        // replica is promoted: every replica confirms each commit.
        let replicas = match self {
            Store::Redis(_) => 0,
            Store::Sentinel(set) => set.servers.len() - 1,
            Store::Cluster(_) => 1,
        };
        if replicas > 0 {
            base.store_extra
                .push_str(&format!("min_replica_acks = {replicas}\n"));
        }
    }

    /// One store fault; returns its name.
    fn break_once(&mut self, round: usize) -> &'static str {
        match self {
            Store::Redis(redis) => {
                redis.proc.kill9();
                std::thread::sleep(Duration::from_millis(800));
                redis.restart();
                "redis kill -9 + restart (AOF)"
            }
            Store::Sentinel(set) => {
                set.kill_primary();
                set.restart_stopped();
                "sentinel failover"
            }
            Store::Cluster(cluster) if round.is_multiple_of(2) => {
                cluster.move_slots_of(0, 500);
                "cluster live reshard"
            }
            Store::Cluster(cluster) => {
                cluster.fail_over_slot(0);
                "cluster primary kill -9"
            }
        }
    }
}

fn soak_secs(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("STATEHOLD_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

#[test]
fn chaos_soak_loses_nothing() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let store = Store::Redis(RedisServer::start(dir.path(), true));
    soak(&dir, store, soak_secs(40), |_| true);
}

#[test]
fn chaos_soak_through_sentinel_failovers_loses_nothing() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let store = Store::Sentinel(SentinelSet::start(dir.path(), 2));
    soak(&dir, store, soak_secs(25), |_| true);
}

#[test]
fn chaos_soak_through_reshards_and_cluster_failovers_loses_nothing() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let store = Store::Cluster(RedisCluster::start(dir.path(), 3, 1));
    // Every conversation in the slots the faults move and fail over.
    let prefix = Config::new(0, dir.path()).key_prefix();
    soak(&dir, store, soak_secs(25), move |chat| {
        key_slot(&format!("{{{prefix}:tg:{chat}}}")) < 1000
    });
}

/// Drives conversations (those `pick` accepts) through three replicas on
/// `store` for `soak`, injecting a fault every 0.7 s, then checks.
fn soak(dir: &tempfile::TempDir, mut store: Store, soak: Duration, pick: impl Fn(i64) -> bool) {
    let mut bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.upstream_timeout = "2s";
    base.server_extra = format!("max_connections = {MAX_CONNECTIONS}\nshutdown_grace = \"3s\"\n");
    base.store_extra = "lock_lease = \"1s\"\nlock_wait = \"5s\"\nop_timeout = \"500ms\"\n".into();
    store.configure(&mut base);
    let mut replicas: Vec<Statehold> = (0..3).map(|_| Statehold::start(base.replica())).collect();
    let targets: Vec<_> = replicas.iter().map(Statehold::addr).collect();

    // Each conversation stops at a step of its own: some finish (and clear
    // their snapshot), the others stay in progress for the checker.
    let chats: Vec<i64> = (100_000..10_000_000)
        .filter(|c| pick(*c))
        .take(200_000)
        .collect();
    let goal = |chat: i64| (chat % 4) as usize;
    let report = Report::default();
    let no_new = AtomicBool::new(false);
    let deadline = Instant::now() + soak + Duration::from_secs(120);
    let mut faults: Vec<&str> = Vec::new();
    let mut bot_overlaps = 0u64;
    let mut bot_runs: Vec<serde_json::Value> = Vec::new();

    let progress = std::thread::scope(|s| {
        let traffic = s.spawn(|| drive(&targets, &chats, goal, 8, deadline, &report, &no_new));
        let mut faults = |name: &'static str| {
            report.note(None, name.to_string());
            faults.push(name);
        };
        let end = Instant::now() + soak;
        let mut round = 0usize;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(700));
            match round % 5 {
                0 => {
                    bot_overlaps += bot.overlaps();
                    bot_runs.extend(bot.handled());
                    bot.crash_and_restart();
                    faults("bot kill -9");
                }
                1 => {
                    let r = &mut replicas[round / 5 % 3];
                    r.proc.kill9();
                    std::thread::sleep(Duration::from_millis(300));
                    r.start_again();
                    faults("replica kill -9");
                }
                2 => {
                    report.note(None, "a store fault begins".to_string());
                    faults(store.break_once(round / 5));
                }
                3 => {
                    let r = &replicas[round / 5 % 3];
                    let idle: Vec<_> = (0..MAX_CONNECTIONS + 4)
                        .filter_map(|_| std::net::TcpStream::connect(r.addr()).ok())
                        .collect();
                    std::thread::sleep(Duration::from_millis(800));
                    drop(idle);
                    faults("connection limit filled");
                }
                _ => {
                    let r = &replicas[(round / 5 + 1) % 3];
                    support::signal(r.proc.pid(), "STOP");
                    std::thread::sleep(Duration::from_millis(1500));
                    support::signal(r.proc.pid(), "CONT");
                    faults("replica frozen past its lease");
                }
            }
            round += 1;
        }
        no_new.store(true, Ordering::Relaxed);
        traffic.join().unwrap()
    });
    bot_overlaps += bot.overlaps();
    bot_runs.extend(bot.handled());

    let (verified, reran) = verify(
        &progress,
        goal,
        &report,
        &replicas[0],
        (bot_overlaps, &bot_runs),
    );
    let o = Ordering::Relaxed;
    eprintln!(
        "soak {}s: {} conversations verified, {} steps acknowledged, {} faults injected ({} bot kills, {} replica kills, store faults: {}, {} connection floods, {} freezes), {} redeliveries ({} x 503, {} x 502, {} x 504, {} unanswered), {} updates re-run by the bot after a fault, losses: 0",
        soak.as_secs(),
        verified,
        report.acknowledged.load(o),
        faults.len(),
        faults.iter().filter(|f| f.starts_with("bot")).count(),
        faults.iter().filter(|f| f.starts_with("replica kill")).count(),
        STORE_FAULTS
            .iter()
            .map(|kind| (kind, faults.iter().filter(|f| *f == kind).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{n} x {kind}"))
            .collect::<Vec<_>>()
            .join(", "),
        faults.iter().filter(|f| f.starts_with("connection")).count(),
        faults.iter().filter(|f| f.contains("frozen")).count(),
        report.redeliveries.load(o),
        report.status_503.load(o),
        report.status_502.load(o),
        report.status_504.load(o),
        report.no_answer.load(o),
        reran,
    );
    assert!(verified > 100, "the soak drove real traffic");
}
