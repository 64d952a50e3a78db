//! Hand-over notices are addressed to the waiting replica (issue 23, point
//! 3): a grant is announced on the channel of the replica whose request
//! waits for it, so Redis's output for notices does not grow with the
//! fleet. Real replicas on one `redis-server` and on a Redis Cluster; a
//! test subscriber sees every notice, and `PUBSUB NUMSUB` counts who else
//! does.

use crate::support;

use support::notices::Observer;
use support::redis_cluster::RedisCluster;
use support::sentinel::query;
use support::{Bot, Config, RedisServer, Statehold};

/// Double clicks on `chats` conversations, each pair through two different
/// replicas at once, the bot slow enough that one of each pair waits and
/// is granted the turn by a notice.
fn contend(replicas: &[Statehold], chats: i64) {
    for chat in 0..chats {
        replicas[0].update(1, 900 + chat, "/start");
    }
    let slow = [("x-demo-delay-ms", "150")];
    std::thread::scope(|s| {
        for chat in 0..chats {
            let n = replicas.len();
            let (a, b) = (
                &replicas[chat as usize % n],
                &replicas[(chat as usize + 1) % n],
            );
            s.spawn(move || assert_eq!(a.update_with(2, 900 + chat, "Quin", &slow).status, 200));
            s.spawn(move || {
                assert_eq!(
                    b.update_with(3, 900 + chat, "quin@example.com", &slow)
                        .status,
                    200
                )
            });
        }
    });
}

/// Each notice went to the channel its token names, and exactly one
/// process (the replica that queued the token) listens there; `numsub`
/// counts the subscribers of a channel across the servers.
fn assert_addressed(notices: &[(String, String)], numsub: impl Fn(&str) -> i64) {
    assert!(!notices.is_empty(), "the double clicks waited for a turn");
    for (channel, token) in notices {
        let tag = &token[token.len().saturating_sub(4)..];
        assert!(
            channel.ends_with(&format!(":turns:{tag}")),
            "notice for token {token} on {channel}: not its replica's channel"
        );
        assert_eq!(numsub(channel), 1, "{channel}: one replica listens");
    }
}

#[test]
fn a_hand_over_notice_reaches_only_the_waiting_replica() {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    let replicas: Vec<Statehold> = (0..3).map(|_| Statehold::start(base.replica())).collect();
    let observer = Observer::start(redis.port);
    contend(&replicas, 4);
    let notices = observer.finish();
    assert_addressed(&notices, |channel| numsub(redis.port, channel));
    assert_eq!(bot.overlaps(), 0);
}

#[test]
fn on_a_cluster_a_hand_over_notice_reaches_only_the_waiting_replica() {
    let dir = support::temp_dir();
    let cluster = RedisCluster::start(dir.path(), 3, 0);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis_cluster = cluster.seeds();
    let replicas: Vec<Statehold> = (0..3).map(|_| Statehold::start(base.replica())).collect();
    let observer = Observer::start(cluster.seeds()[0]);
    contend(&replicas, 6);
    let notices = observer.finish();
    // Each replica subscribes on one node; the count is the sum.
    assert_addressed(&notices, |channel| {
        cluster
            .seeds()
            .iter()
            .map(|port| numsub(*port, channel))
            .sum()
    });
    assert_eq!(bot.overlaps(), 0);
}

fn numsub(port: u16, channel: &str) -> i64 {
    let reply: Vec<redis::Value> =
        query(port, &["PUBSUB", "NUMSUB", channel]).expect("PUBSUB NUMSUB");
    match reply.get(1) {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("PUBSUB NUMSUB answered {other:?}"),
    }
}

/// Redis's network output per request under contention, with `n`
/// replicas on the same traffic: 8 conversations, each a double click
/// through two replicas (16 requests, 8 hand-overs).
fn output_per_request(n: usize) -> f64 {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    let replicas: Vec<Statehold> = (0..n).map(|_| Statehold::start(base.replica())).collect();
    // Every replica has loaded its scripts and subscribed before counting.
    for (i, sh) in replicas.iter().enumerate() {
        assert_eq!(sh.update(1, 800 + i as i64, "/start").status, 200);
    }
    let sent = || -> f64 {
        support::redis_info_field(redis.port, "total_net_output_bytes")
            .expect("total_net_output_bytes") as f64
    };
    let before = sent();
    contend(&replicas, 8);
    let per_request = (sent() - before) / 24.0;
    assert_eq!(bot.overlaps(), 0);
    per_request
}

/// Issue 23, point 3: with notices addressed to the waiting replica,
/// eight replicas cost Redis the same output per request as two (with
/// one shared channel, each hand-over went out once per replica).
#[test]
fn redis_output_per_request_does_not_grow_with_the_fleet() {
    let two = output_per_request(2);
    let eight = output_per_request(8);
    eprintln!(
        "Redis output per request under contention: 2 replicas {two:.0} B, 8 replicas {eight:.0} B"
    );
    assert!(
        eight <= two * 1.2,
        "8 replicas: {eight:.0} B per request, 2 replicas: {two:.0} B"
    );
}
