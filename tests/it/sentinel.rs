//! Redis with Sentinel: one primary, two replicas, three sentinels, all
//! started here on loopback. Two statehold replicas find the primary
//! through the sentinels; the primary is killed (kill -9) mid-traffic, the
//! sentinels promote the replica, and statehold follows it by itself.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::sentinel::{query, start_sentinel, SentinelSet, MASTER};
use support::traffic::{drive, Report};
use support::{Bot, Config, Proc, RedisServer, Statehold};

#[test]
fn statehold_follows_a_sentinel_failover_by_itself() {
    let lost = failover(0);
    // Asynchronous replication may lose the last acknowledged writes of
    // the dead primary; anything beyond that window is a statehold fault.
    assert!(lost <= 3, "{lost} answers showed a lost or doubled step");
}

#[test]
fn with_min_replica_acks_a_failover_loses_no_acknowledged_step() {
    assert_eq!(failover(1), 0, "answers showed a lost or doubled step");
}

/// One primary, two replicas, three sentinels; two statehold replicas with
/// `min_replica_acks = acks`; the primary killed mid-traffic. Returns how
/// many answers showed a lost or doubled step.
fn failover(acks: u32) -> usize {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let mut set = SentinelSet::start(dir.path(), 2);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.backend = Some(set.backend_lines("sent"));
    base.store_extra = format!(
        "op_timeout = \"500ms\"\nlock_lease = \"2s\"\nlock_wait = \"5s\"\nmin_replica_acks = {acks}\n"
    );
    let replicas: Vec<Statehold> = (0..2).map(|_| Statehold::start(base.replica())).collect();
    assert!(
        replicas[0].logs().contains("redis reachable"),
        "{}",
        replicas[0].logs()
    );
    let targets: Vec<_> = replicas.iter().map(Statehold::addr).collect();

    let chats: Vec<i64> = (7000..7030).collect();
    let report = Report::default();
    let no_new = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(90);
    let progress = std::thread::scope(|s| {
        let traffic = s.spawn(|| drive(&targets, &chats, |_| 3, 6, deadline, &report, &no_new));
        support::wait_until("traffic flowing", || {
            report.acknowledged.load(Ordering::Relaxed) >= 40
        });
        let took = set.kill_primary();
        eprintln!("failover: replica promoted {took:?} after the kill");
        traffic.join().expect("traffic")
    });
    let violations = report.violations.lock().unwrap().clone();
    eprintln!(
        "sentinel failover, min_replica_acks = {acks}: {} conversations, {} steps acknowledged, {} redeliveries \
         (503: {}, 502: {}, 504: {}, no answer: {}), {} answers showing a lost or doubled step: {violations:?}, \
         overlapping turns in the bot: {}",
        chats.len(),
        report.acknowledged.load(Ordering::Relaxed),
        report.redeliveries.load(Ordering::Relaxed),
        report.status_503.load(Ordering::Relaxed),
        report.status_502.load(Ordering::Relaxed),
        report.status_504.load(Ordering::Relaxed),
        report.no_answer.load(Ordering::Relaxed),
        violations.len(),
        bot.overlaps(),
    );
    // Every conversation finished through the promoted replica, with no
    // restart of statehold.
    assert_eq!(progress.len(), chats.len());
    assert!(progress.iter().all(|(_, done)| *done == 4), "{progress:?}");
    assert!(replicas.iter().all(|r| r.proc.pid() > 0));
    violations.len()
}

/// A primary with one replica, a bot and a statehold with
/// `min_replica_acks = 1`, whose conversation `chat` took its first step.
struct OneReplica {
    dir: tempfile::TempDir,
    primary: RedisServer,
    replica: RedisServer,
    bot: Bot,
    sh: Statehold,
}

fn one_replica(op_timeout: &str, chat: i64) -> OneReplica {
    let dir = support::temp_dir();
    let primary = RedisServer::start(dir.path(), false);
    let replica = RedisServer::start_replica(dir.path(), primary.port);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(primary.port);
    config.store_extra = format!("min_replica_acks = 1\nop_timeout = \"{op_timeout}\"\n");
    let sh = Statehold::start(config);
    let r = sh.update(1, chat, "/start");
    assert_eq!(
        support::reply_text(&r),
        "Welcome! What's your name?",
        "{} {}\n{}",
        r.status,
        r.text(),
        sh.logs()
    );
    OneReplica {
        dir,
        primary,
        replica,
        bot,
        sh,
    }
}

/// `store.min_replica_acks = 1`: a commit no replica confirmed is not
/// acknowledged (503, the platform redelivers), instead of an answer a
/// failover could take back. Replica down: 503; replica back: the
/// redelivery is answered.
#[test]
fn min_replica_acks_refuses_to_acknowledge_an_unreplicated_write() {
    let _serial = support::serial(module_path!());
    let OneReplica {
        dir,
        primary,
        mut replica,
        bot: _bot,
        sh,
    } = one_replica("2s", 8100);

    replica.proc.kill9();
    let r = sh.update(2, 8100, "Ann");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(sh.logs().contains("too few replicas confirmed it"));

    let _replica = RedisServer::start_replica(dir.path(), primary.port);
    let r = sh.update(2, 8100, "Ann");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        support::reply_text(&r),
        "Nice to meet you, Ann. Your email?"
    );
    assert_eq!(
        support::reply_text(&sh.update(3, 8100, "ann@example.com")),
        "Which plan: basic or pro?"
    );
}

/// The redelivery of an update whose commit too few replicas confirmed is
/// not answered from that commit's dedupe record until the record is
/// confirmed: the first delivery got 503 while the record stayed on the
/// primary alone, and a replay of it would acknowledge a step that a
/// failover can still take back (how the Sentinel chaos soak lost
/// acknowledged steps: a redelivery reached a replica still talking to the
/// old primary). A frozen replica (SIGSTOP: connected, never confirming):
/// 503 for the delivery and for its redelivery, with a log line; thawed:
/// the redelivery is answered from the record, the bot not run again.
#[test]
fn a_redelivery_is_not_answered_from_an_unconfirmed_dedupe_record() {
    let _serial = support::serial(module_path!());
    let OneReplica {
        dir: _dir,
        primary: _primary,
        replica,
        bot: _bot,
        sh,
    } = one_replica("1s", 8200);
    support::signal(replica.proc.pid(), "STOP");
    let first = sh.update(2, 8200, "Ann");
    assert_eq!(first.status, 503, "{}", first.text());
    let again = sh.update(2, 8200, "Ann");
    assert_eq!(again.status, 503, "replayed unconfirmed: {}", again.text());
    assert!(
        sh.logs().contains("recorded answer not replayed"),
        "{}",
        sh.logs()
    );
    support::signal(replica.proc.pid(), "CONT");
    let thawed = sh.update(2, 8200, "Ann");
    assert_eq!(thawed.status, 200, "{}", thawed.text());
    assert_eq!(
        support::reply_text(&thawed),
        "Nice to meet you, Ann. Your email?"
    );
    assert_eq!(
        sh.metric("statehold_dedupe_hits_total"),
        1.0,
        "answered from the record"
    );
    assert_eq!(
        support::reply_text(&sh.update(3, 8200, "ann@example.com")),
        "Which plan: basic or pro?"
    );
}

/// Passwords on both sides, read from the environment: the primary's
/// (`requirepass`; `store.password_env`) and the Sentinel's own
/// (`requirepass` in sentinel.conf; `store.sentinel_password_env`). With a
/// wrong data password the store is unavailable, and the log says so
/// without printing either password.
#[test]
fn sentinel_and_primary_passwords_come_from_the_environment() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let port = support::free_port();
    let mut redis = std::process::Command::new("redis-server");
    redis
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--requirepass", "data-pw-123"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null());
    let _primary = Proc::from_child("redis-server", redis.spawn().expect("redis-server"));
    let authed = |port: u16, pw: &str| {
        let url = format!("redis://:{pw}@127.0.0.1:{port}/");
        let client = redis::Client::open(url).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()
    };
    support::wait_until("primary up", || authed(port, "data-pw-123").is_some());

    let sentinel_port = support::free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {}\nrequirepass sentinel-pw-456\n\
             sentinel monitor {MASTER} 127.0.0.1 {port} 1\nsentinel auth-pass {MASTER} data-pw-123\n",
            dir.path().display()
        ),
    )
    .expect("sentinel conf");
    let mut cmd = std::process::Command::new("redis-sentinel");
    cmd.arg(&conf).stdout(std::process::Stdio::null());
    let _sentinel = Proc::from_child("redis-sentinel", cmd.spawn().expect("redis-sentinel"));
    support::wait_until("sentinel up", || {
        authed(sentinel_port, "sentinel-pw-456").is_some()
    });

    let bot = Bot::start(0);
    let start = |data_pw: &str| {
        let mut config = Config::new(bot.port, dir.path());
        config.backend = Some(format!(
            "backend = \"redis\"\nsentinels = [\"127.0.0.1:{sentinel_port}\"]\nsentinel_master = \"{MASTER}\"\n\
             password_env = \"SH_REDIS_PW\"\nsentinel_password_env = \"SH_SENTINEL_PW\"\n"
        ));
        config.env = vec![
            ("SH_REDIS_PW".into(), data_pw.into()),
            ("SH_SENTINEL_PW".into(), "sentinel-pw-456".into()),
        ];
        Statehold::start(config)
    };
    let sh = start("data-pw-123");
    assert_eq!(
        support::reply_text(&sh.update(1, 8200, "/start")),
        "Welcome! What's your name?"
    );
    assert_eq!(
        support::reply_text(&sh.update(2, 8200, "Ann")),
        "Nice to meet you, Ann. Your email?"
    );

    let wrong = start("not-the-password");
    let r = wrong.update(3, 8200, "ann@example.com");
    assert_eq!(r.status, 503, "{}", r.text());
    let logs = wrong.logs();
    assert!(logs.contains("store unavailable"), "{logs}");
    for secret in ["not-the-password", "sentinel-pw-456", "data-pw-123"] {
        assert!(!logs.contains(secret), "a password in the log");
    }
}

/// A planned failover (`SENTINEL FAILOVER`): the old primary stays up,
/// demoted to a replica. statehold hears the Sentinels' `+switch-master`,
/// says so in its log, and the flow continues on the new primary.
#[test]
fn a_switch_announced_by_sentinel_is_followed() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let set = SentinelSet::start(dir.path(), 1);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.backend = Some(set.backend_lines("switch"));
    let sh = Statehold::start(config);
    assert_eq!(
        support::reply_text(&sh.update(1, 8300, "/start")),
        "Welcome! What's your name?"
    );
    let old = set.primary_port().expect("a primary");
    let sentinel = set.sentinels[0].1;
    let accepted: Option<String> = query(sentinel, &["SENTINEL", "FAILOVER", MASTER]);
    assert_eq!(accepted.as_deref(), Some("OK"));
    support::wait_until("the switch announced and heard", || {
        set.primary_port().is_some_and(|p| p != old)
            && sh.logs().contains("sentinel: the primary moved")
    });
    let r = sh.update(2, 8300, "Ann");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        support::reply_text(&r),
        "Nice to meet you, Ann. Your email?"
    );
}

/// A Sentinel that has not heard of the latest failover still names the
/// old primary's address; there, a server that is up and calls itself a
/// primary (the old primary restarted before the Sentinels demote it)
/// holds none of the conversations. statehold asks every Sentinel and
/// follows the newest configuration (the highest `config-epoch`), so a
/// lagging Sentinel listed first cannot send it there. The lagging
/// Sentinel is played by one watching a lone server under the same name,
/// still at configuration epoch 0 (the real set is at 1 after a failover).
#[test]
fn a_sentinel_that_missed_a_failover_cannot_send_statehold_to_a_stale_primary() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let mut set = SentinelSet::start(dir.path(), 1);
    set.kill_primary();
    set.restart_stopped();
    let stale = RedisServer::start(dir.path(), false);
    let (_lagging, lagging_port) = start_sentinel(dir.path(), stale.port);

    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.backend = Some(set.backend_lines("lag"));
    let informed = Statehold::start(base.replica());
    let mut lagging_first = base.replica();
    lagging_first.backend = Some(set.backend_lines("lag").replacen(
        "sentinels = [",
        &format!("sentinels = [\"127.0.0.1:{lagging_port}\", "),
        1,
    ));
    let misled = Statehold::start(lagging_first);

    assert_eq!(
        support::reply_text(&informed.update(1, 8400, "/start")),
        "Welcome! What's your name?"
    );
    let r = misled.update(2, 8400, "Ann");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        support::reply_text(&r),
        "Nice to meet you, Ann. Your email?"
    );
    assert_eq!(
        query::<i64>(stale.port, &["DBSIZE"]),
        Some(0),
        "nothing was written to the server the lagging Sentinel names"
    );
}
