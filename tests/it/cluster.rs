//! Redis Cluster under change: a live reshard that moves the slots of
//! conversations in mid-flow, and a primary killed with its replica
//! promoted, each under traffic through two statehold replicas. Every
//! cluster node is a real `redis-server` started here; the cluster is made
//! and resharded with `redis-cli --cluster`.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::redis_cluster::{key_slot, NodeInfo, RedisCluster};
use support::traffic::{drive, Report};
use support::{redis_cmd, Bot, Config, Statehold};

/// The test's slot arithmetic is Redis's own.
#[test]
fn key_slots_match_redis() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let cluster = RedisCluster::start(dir.path(), 3, 0);
    let port = cluster.seeds()[0];
    for key in [
        "foo",
        "{sh:tg:42}:s",
        "{user1000}.following",
        "a{}b",
        "{}{x}",
    ] {
        let theirs = redis_cmd(port, &format!("CLUSTER KEYSLOT {key}")).unwrap();
        assert_eq!(theirs, format!("int({})", key_slot(key)), "{key}");
    }
}

/// Conversations whose keys live in `slots` (statehold's hash tag is
/// `{prefix:namespace:id}`).
fn chats_in(config: &Config, slots: std::ops::Range<u16>, count: usize) -> Vec<i64> {
    let prefix = config.key_prefix();
    (10_000i64..)
        .filter(|chat| slots.contains(&key_slot(&format!("{{{prefix}:tg:{chat}}}"))))
        .take(count)
        .collect()
}

/// Two statehold replicas on `cluster`.
fn replicas(
    cluster: &RedisCluster,
    bot: &Bot,
    dir: &std::path::Path,
    acks: u32,
) -> (Config, Vec<Statehold>) {
    let mut base = Config::new(bot.port, dir);
    base.redis_cluster = cluster.seeds();
    base.store_extra = format!(
        "op_timeout = \"1s\"\nlock_lease = \"2s\"\nlock_wait = \"5s\"\nmin_replica_acks = {acks}\n"
    );
    let replicas = (0..2).map(|_| Statehold::start(base.replica())).collect();
    (base, replicas)
}

fn acknowledged(report: &Report) -> u64 {
    report.acknowledged.load(Ordering::Relaxed)
}

/// Updates the bot ran more than once (a run whose commit failed, then
/// the platform's redelivery).
fn run_twice(bot: &Bot) -> usize {
    let mut seen = std::collections::HashSet::new();
    bot.handled()
        .iter()
        .filter(|h| !seen.insert((h["key"].to_string(), h["update_id"].to_string())))
        .count()
}

fn print(what: &str, chats: usize, report: &Report, bot: &Bot) {
    eprintln!(
        "{what}: {chats} conversations, {} steps acknowledged, {} redeliveries \
         (503: {}, 502: {}, 504: {}, no answer: {}), lost or doubled: {}, overlapping: {}, run twice: {}",
        report.acknowledged.load(Ordering::Relaxed),
        report.redeliveries.load(Ordering::Relaxed),
        report.status_503.load(Ordering::Relaxed),
        report.status_502.load(Ordering::Relaxed),
        report.status_504.load(Ordering::Relaxed),
        report.no_answer.load(Ordering::Relaxed),
        report.violations.lock().unwrap().len(),
        bot.overlaps(),
        run_twice(bot),
    );
}

#[test]
fn a_live_reshard_under_traffic_loses_nothing() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let cluster = RedisCluster::start(dir.path(), 3, 0);
    let bot = Bot::start(0);
    let (base, replicas) = replicas(&cluster, &bot, dir.path(), 0);
    let targets: Vec<_> = replicas.iter().map(Statehold::addr).collect();

    // The reshard moves the source's lowest 1000 slots; every conversation
    // of the test lives in them.
    let from = cluster.owner(0).expect("slot 0 served");
    let to = cluster
        .view()
        .into_iter()
        .find(|n| n.primary && n.id != from.id)
        .expect("another primary");
    let chats = chats_in(&base, 0..1000, 300);
    let report = Report::default();
    let no_new = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let progress = std::thread::scope(|s| {
        let traffic = s.spawn(|| drive(&targets, &chats, |_| 3, 6, deadline, &report, &no_new));
        support::wait_until("traffic flowing", || {
            report.acknowledged.load(Ordering::Relaxed) >= 40
        });
        let (started, at_start) = (Instant::now(), acknowledged(&report));
        cluster.reshard(&from, &to, 1000);
        let at_end = acknowledged(&report);
        eprintln!(
            "reshard: 1000 slots moved in {:?}; {} steps acknowledged meanwhile",
            started.elapsed(),
            at_end - at_start
        );
        no_new.store(true, Ordering::Relaxed);
        let progress = traffic.join().expect("traffic");
        assert!(at_end > at_start, "traffic ran through the reshard");
        progress
    });
    print("live reshard", progress.len(), &report, &bot);
    for r in &replicas {
        for l in r
            .logs()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        {
            eprintln!("LOG {l}");
        }
    }
    assert_eq!(
        cluster.owner(0).map(|n| n.id),
        Some(to.id),
        "the slots moved"
    );
    assert!(progress.iter().all(|(_, done)| *done == 4), "{progress:?}");
    assert_eq!(*report.violations.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        bot.overlaps(),
        0,
        "no two turns of one conversation overlapped"
    );
    assert_eq!(run_twice(&bot), 0, "no update ran twice");
}

#[test]
fn a_killed_primary_is_replaced_by_its_replica() {
    let lost = primary_kill(0);
    // Asynchronous replication may lose the dead primary's last
    // acknowledged writes; anything beyond that window is a statehold fault.
    assert!(lost <= 3, "{lost} answers showed a lost or doubled step");
}

#[test]
fn with_min_replica_acks_a_killed_primary_loses_no_acknowledged_step() {
    let lost = primary_kill(1);
    assert_eq!(lost, 0, "answers showed a lost or doubled step");
}

/// Three primaries with a replica each; the primary serving the test's
/// conversations is killed (kill -9) mid-traffic, its replica promoted, and
/// the killed node restarted (it rejoins as the promoted one's replica).
/// Returns how many answers showed a lost or doubled step.
fn primary_kill(acks: u32) -> usize {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let mut cluster = RedisCluster::start(dir.path(), 3, 1);
    let bot = Bot::start(0);
    let (base, replicas) = replicas(&cluster, &bot, dir.path(), acks);
    let targets: Vec<_> = replicas.iter().map(Statehold::addr).collect();

    let doomed: NodeInfo = cluster.owner(0).expect("slot 0 served");
    let (first, last) = doomed.slots[0];
    let chats = chats_in(&base, first..last + 1, 30);
    let report = Report::default();
    let no_new = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let progress = std::thread::scope(|s| {
        let traffic = s.spawn(|| drive(&targets, &chats, |_| 3, 6, deadline, &report, &no_new));
        support::wait_until("traffic flowing", || {
            report.acknowledged.load(Ordering::Relaxed) >= 30
        });
        // Killed, its replica promoted, and back as the new primary's
        // replica, as an operator brings it back: with `min_replica_acks`
        // the promoted primary acknowledges nothing (not even a replay of
        // a recorded answer) until a replica confirms again.
        let killed = Instant::now();
        cluster.fail_over_slot(first);
        assert!(cluster.owner(first).is_some_and(|n| n.port != doomed.port));
        eprintln!(
            "cluster failover: replica promoted, old primary back as its replica, {:?} after the kill",
            killed.elapsed()
        );
        traffic.join().expect("traffic")
    });
    print(
        &format!("cluster primary kill, min_replica_acks = {acks}"),
        progress.len(),
        &report,
        &bot,
    );
    assert!(progress.iter().all(|(_, done)| *done == 4), "{progress:?}");
    assert_eq!(bot.overlaps(), 0);
    let lost = report.violations.lock().unwrap().len();
    lost
}
