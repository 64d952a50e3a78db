//! The fleet: eight replicas on a Redis Cluster through a reshard and a
//! failover (issue 23, point 4), every update raced by a redelivery.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::checks::verify;
use support::redis_cluster::RedisCluster;
use support::traffic::{drive, Report};
use support::{Bot, Config, Statehold};

/// Issue 23, point 4: a fleet of eight replicas on a three-primary
/// Cluster (a replica each, `min_replica_acks = 1`), one bot behind them.
/// Conversations spread over every slot type their steps through rotating
/// replicas, each update sent twice at once to two replicas (a redelivery
/// racing its original), 32 conversations in flight at any time (100 with
/// `STATEHOLD_FLEET=full`, README, Testing); meanwhile 500 slots move (a
/// live reshard; 2,000 in the full run) and then the primary of slot 0 is
/// killed and its replica promoted, after which no new conversation
/// starts. Then: every answer the step's, every acknowledged step stored
/// once and in order, no conversation handled concurrently, and the
/// hand-over notices each went to one replica.
#[test]
fn a_fleet_of_eight_replicas_on_a_cluster_loses_nothing() {
    let full = std::env::var("STATEHOLD_FLEET").as_deref() == Ok("full");
    let (in_flight, moved) = if full { (100, 2000) } else { (32, 500) };
    let dir = support::temp_dir();
    let mut cluster = RedisCluster::start(dir.path(), 3, 1);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.upstream_timeout = "2s";
    base.store_extra = "lock_lease = \"1s\"\nlock_wait = \"5s\"\nop_timeout = \"500ms\"\n".into();
    base.redis_cluster = cluster.seeds();
    // A failover must not take back an acknowledged step.
    base.store_extra.push_str("min_replica_acks = 1\n");
    let replicas: Vec<Statehold> = (0..8).map(|_| Statehold::start(base.replica())).collect();
    let targets: Vec<_> = replicas.iter().map(Statehold::addr).collect();
    let notices = support::notices::Observer::start(cluster.seeds()[0]);
    // The killed node's counter starts again at 0: a lower bound.
    let output = |c: &RedisCluster| -> u64 {
        c.nodes
            .iter()
            .filter_map(|n| support::redis_info_field(n.port, "total_net_output_bytes"))
            .sum()
    };
    let output_before = output(&cluster);

    let chats: Vec<i64> = (1..=100_000).map(|i| 5_000_000 + i * 7919).collect();
    let goal = |chat: i64| (chat % 4) as usize;
    let report = Report {
        racing_duplicates: true,
        ..Report::default()
    };
    let no_new = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(240);
    let progress = std::thread::scope(|s| {
        let traffic = s.spawn(|| {
            drive(
                &targets, &chats, goal, in_flight, deadline, &report, &no_new,
            )
        });
        let acknowledged = || report.acknowledged.load(Ordering::Relaxed);
        support::wait_until_within("traffic under way", Duration::from_secs(60), || {
            acknowledged() >= 100
        });
        cluster.move_slots_of(0, moved);
        let after_reshard = acknowledged();
        support::wait_until_within("traffic after the reshard", Duration::from_secs(60), || {
            acknowledged() >= after_reshard + 100
        });
        cluster.fail_over_slot(0);
        let after_failover = acknowledged();
        support::wait_until_within(
            "traffic after the failover",
            Duration::from_secs(60),
            || acknowledged() >= after_failover + 100,
        );
        no_new.store(true, Ordering::Relaxed);
        traffic.join().unwrap()
    });
    let seen = notices.finish();
    let (verified, reran) = verify(
        &progress,
        goal,
        &report,
        &replicas[0],
        (bot.overlaps(), &bot.handled()),
    );
    assert!(verified > 100, "the fleet drove real traffic");
    let requests = report.acknowledged.load(Ordering::Relaxed)
        + report.duplicates_answered.load(Ordering::Relaxed);
    let per_replica: std::collections::BTreeMap<&str, usize> =
        seen.iter().fold(Default::default(), |mut m, (channel, _)| {
            *m.entry(channel.as_str()).or_default() += 1;
            m
        });
    for (channel, token) in &seen {
        assert!(
            channel.ends_with(&token[token.len().saturating_sub(4)..]),
            "notice for {token} on {channel}"
        );
    }
    eprintln!(
        "fleet: 8 replicas, {in_flight} conversations in flight, {verified} conversations verified, {moved} slots moved and a primary failed over meanwhile, {} steps acknowledged, {} racing duplicates answered, {} redeliveries, {reran} updates re-run by the bot after a fault; {} hand-over notices, each on its waiting replica's channel ({} replicas received any: {:?}); Redis output at least {:.0} B per answered request (replication included)",
        report.acknowledged.load(Ordering::Relaxed),
        report.duplicates_answered.load(Ordering::Relaxed),
        report.redeliveries.load(Ordering::Relaxed),
        seen.len(),
        per_replica.len(),
        per_replica.values().collect::<Vec<_>>(),
        output(&cluster).saturating_sub(output_before) as f64 / requests.max(1) as f64,
    );
}
