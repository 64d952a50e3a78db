//! Replicas sharing one Redis, or one Redis Cluster: three statehold
//! processes in front of one bot, real `redis-server`s started by the test.
//! Each test checks the bot's own record (what it handled, whether one
//! user's requests ever overlapped) and the stored snapshot's `applied`
//! list: nothing lost, nothing applied twice. The scenarios the Cluster
//! must pass unchanged run on both.

use crate::support;

use support::redis_cluster::RedisCluster;
use support::{reply_text, Bot, Config, RedisServer, Statehold};

/// Where the replicas keep conversations.
enum Redis {
    Single(RedisServer),
    /// Three primaries, no replicas.
    Cluster(RedisCluster),
}

struct Deployment {
    _dir: tempfile::TempDir,
    redis: Redis,
    bot: Bot,
    replicas: Vec<Statehold>,
}

impl Redis {
    /// The one server of a single-server scenario.
    fn single(&mut self) -> &mut RedisServer {
        match self {
            Redis::Single(r) => r,
            Redis::Cluster(_) => unreachable!("a single-server scenario"),
        }
    }
}

/// `n` replicas on one redis-server (with AOF when `aof`).
fn on_redis(n: usize, aof: bool, edit: impl Fn(&mut Config)) -> Deployment {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), aof);
    deploy(dir, Redis::Single(redis), n, edit)
}

/// `n` replicas on a three-primary Redis Cluster.
fn on_cluster(n: usize, edit: impl Fn(&mut Config)) -> Deployment {
    let dir = support::temp_dir();
    let cluster = RedisCluster::start(dir.path(), 3, 0);
    deploy(dir, Redis::Cluster(cluster), n, edit)
}

fn deploy(
    dir: tempfile::TempDir,
    redis: Redis,
    n: usize,
    edit: impl Fn(&mut Config),
) -> Deployment {
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    match &redis {
        Redis::Single(r) => base.redis = Some(r.port),
        Redis::Cluster(c) => base.redis_cluster = c.seeds(),
    }
    edit(&mut base);
    let replicas = (0..n).map(|_| Statehold::start(base.replica())).collect();
    Deployment {
        _dir: dir,
        redis,
        bot,
        replicas,
    }
}

fn applied(sh: &Statehold, chat: i64) -> Vec<u64> {
    let stored = sh.stored("tg", &chat.to_string()).expect("snapshot");
    stored["state"]["applied"]
        .as_array()
        .expect("applied list")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn handled_ids(bot: &Bot, chat: i64) -> Vec<u64> {
    bot.handled()
        .iter()
        .filter(|h| h["key"] == format!("tg:{chat}"))
        .map(|h| h["update_id"].as_u64().unwrap())
        .collect()
}

fn in_flight(bot: &Bot) -> u64 {
    support::get(support::addr(bot.port), "/_stats")
        .map(|r| r.json()["in_flight"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

#[test]
fn double_clicks_on_two_replicas_are_serialized() {
    let _serial = support::serial(module_path!());
    double_clicks(on_redis(3, false, |_| {}));
}

#[test]
fn double_clicks_on_a_redis_cluster_are_serialized() {
    let _serial = support::serial(module_path!());
    double_clicks(on_cluster(3, |_| {}));
}

fn double_clicks(c: Deployment) {
    let [a, b, third] = &c.replicas[..] else {
        unreachable!()
    };
    third.update(1, 80, "/start");
    // The same button twice: two updates of one user at once, via two replicas.
    let slow = [("x-demo-delay-ms", "200")];
    std::thread::scope(|s| {
        let x = s.spawn(|| a.update_with(2, 80, "Quin", &slow));
        let y = s.spawn(|| b.update_with(3, 80, "quin@example.com", &slow));
        assert_eq!(x.join().unwrap().status, 200);
        assert_eq!(y.join().unwrap().status, 200);
    });
    assert_eq!(
        c.bot.overlaps(),
        0,
        "one user's requests never overlapped in the bot"
    );
    let mut got = applied(third, 80);
    got.sort();
    assert_eq!(
        got,
        vec![1, 2, 3],
        "both clicks landed, none lost, none twice"
    );
    assert_eq!(third.stored("tg", "80").unwrap()["version"], 3);
}

#[test]
fn fast_typers_land_in_arrival_order_across_replicas() {
    let _serial = support::serial(module_path!());
    fast_typers(on_redis(3, false, |_| {}));
}

#[test]
fn fast_typers_on_a_redis_cluster_land_in_arrival_order() {
    let _serial = support::serial(module_path!());
    fast_typers(on_cluster(3, |_| {}));
}

fn fast_typers(c: Deployment) {
    let [a, b, _] = &c.replicas[..] else {
        unreachable!()
    };
    for chat in 810..816i64 {
        let first = chat as u64 * 10;
        // "/start" then the name, through two replicas: the name is sent
        // once the start is inside the (slow) bot, so it arrives while the
        // first is handled; out of order, it would meet "Session expired".
        std::thread::scope(|s| {
            let x = s.spawn(|| a.update_with(first, chat, "/start", &[("x-demo-delay-ms", "300")]));
            support::wait_until("the start inside the bot", || c.bot.in_flight() == 1);
            let y = s.spawn(|| b.update(first + 1, chat, "Vic"));
            assert_eq!(x.join().unwrap().status, 200);
            assert_eq!(
                reply_text(&y.join().unwrap()),
                "Nice to meet you, Vic. Your email?"
            );
        });
        assert_eq!(
            handled_ids(&c.bot, chat),
            vec![first, first + 1],
            "arrival order in the bot"
        );
        assert_eq!(
            applied(a, chat),
            vec![first, first + 1],
            "and in the snapshot"
        );
    }
    assert_eq!(c.bot.overlaps(), 0);
}

#[test]
fn redelivery_to_two_replicas_at_once_runs_the_bot_once() {
    let _serial = support::serial(module_path!());
    redelivery_to_all(on_redis(3, false, |_| {}));
}

#[test]
fn redelivery_to_all_replicas_on_a_redis_cluster_runs_the_bot_once() {
    let _serial = support::serial(module_path!());
    redelivery_to_all(on_cluster(3, |_| {}));
}

fn redelivery_to_all(c: Deployment) {
    c.replicas[0].update(1, 82, "/start");
    let slow = [("x-demo-delay-ms", "150")];
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = c
            .replicas
            .iter()
            .map(|r| s.spawn(|| r.update_with(2, 82, "Rae", &slow)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &answers {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, answers[0].body, "every caller gets the same answer");
    }
    assert_eq!(
        reply_text(&answers[0]),
        "Nice to meet you, Rae. Your email?"
    );
    assert_eq!(
        handled_ids(&c.bot, 82),
        vec![1, 2],
        "the bot ran update 2 once"
    );
    assert_eq!(applied(&c.replicas[1], 82), vec![1, 2]);
    let hits: f64 = c
        .replicas
        .iter()
        .map(|r| r.metric("statehold_dedupe_hits_total"))
        .sum();
    assert_eq!(hits, 2.0);
}

#[test]
fn a_replica_killed_mid_request_is_taken_over_after_its_lease() {
    let _serial = support::serial(module_path!());
    replica_kill(on_redis(3, false, short_lease));
}

#[test]
fn a_replica_killed_on_a_redis_cluster_is_taken_over_after_its_lease() {
    let _serial = support::serial(module_path!());
    replica_kill(on_cluster(3, short_lease));
}

fn short_lease(cfg: &mut Config) {
    cfg.store_extra = "lock_lease = \"1s\"\n".into()
}

fn replica_kill(mut c: Deployment) {
    c.replicas[1].update(1, 83, "/start");
    std::thread::scope(|s| {
        let doomed = &c.replicas[0];
        let body = support::tg_update(2, 83, "Sol");
        let lost = s.spawn(move || {
            // The connection dies with the replica: no answer.
            support::post_json(
                doomed.addr(),
                "/telegram",
                &body,
                &[("x-demo-delay-ms", "300")],
            )
        });
        support::wait_until("update 2 in the bot", || in_flight(&c.bot) == 1);
        // SIGKILL while holding the turn: no release, no commit.
        let pid = doomed.proc.pid();
        support::signal(pid, "KILL");
        assert!(
            lost.join().unwrap().is_err(),
            "the killed replica never answered"
        );
    });
    // The platform redelivers through another replica; it waits out the
    // dead holder's lease, then runs the update.
    let r = c.replicas[2].update(2, 83, "Sol");
    assert_eq!(r.status, 200);
    assert_eq!(reply_text(&r), "Nice to meet you, Sol. Your email?");
    assert_eq!(applied(&c.replicas[2], 83), vec![1, 2], "applied once");
    assert_eq!(c.bot.overlaps(), 0);
    c.replicas[0].proc.kill9();
}

#[test]
fn redis_restart_with_aof_mid_flow_loses_nothing() {
    let _serial = support::serial(module_path!());
    let mut c = on_redis(2, true, |_| {});
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    a.update(1, 84, "/start");
    b.update(2, 84, "Tia");
    c.redis.single().proc.kill9();
    // While Redis is down: on_unavailable = "reject" answers 503, bot not called.
    let handled = c.bot.handled().len();
    let down = a.update(3, 84, "tia@example.com");
    assert_eq!(down.status, 503);
    assert_eq!(down.header("retry-after"), Some("1"));
    assert_eq!(c.bot.handled().len(), handled);
    assert!(a.logs().contains("store unavailable"));
    c.redis.single().restart();
    // No statehold restart: the redelivery goes through once Redis is back.
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    support::wait_until("statehold reconnects", || {
        support::get(a.admin(), "/readyz").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(
        reply_text(&a.update(3, 84, "tia@example.com")),
        "Which plan: basic or pro?"
    );
    assert_eq!(
        reply_text(&b.update(4, 84, "pro")),
        "Registered Tia <tia@example.com> on the pro plan. Done!"
    );
    assert_eq!(handled_ids(&c.bot, 84), vec![1, 2, 3, 4]);
}

#[test]
fn a_frozen_holder_past_its_lease_is_fenced_off() {
    let _serial = support::serial(module_path!());
    let c = on_redis(2, false, |cfg| {
        cfg.store_extra = "lock_lease = \"600ms\"\n".into()
    });
    let (a, b) = (&c.replicas[0], &c.replicas[1]);
    a.update(1, 85, "/start");
    std::thread::scope(|s| {
        // A's request sits in a bot slower than the lease...
        let stale = s.spawn(|| a.update_with(2, 85, "Uma", &[("x-demo-delay-ms", "1500")]));
        support::wait_until("update 2 in the bot", || in_flight(&c.bot) == 1);
        // ...and A freezes (a GC pause, a stopped VM): it cannot extend its lease.
        support::signal(a.proc.pid(), "STOP");
        // B takes the turn once the lease runs out and handles update 3.
        let r = b.update(3, 85, "Uma B");
        assert_eq!(r.status, 200);
        support::signal(a.proc.pid(), "CONT");
        // A wakes up with the bot's answer to update 2: its write is refused
        // and the platform is asked to redeliver.
        let r = stale.join().unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"], "conflict");
        // The bot already acted: no Retry-After invites a retry (issue 21).
        assert_eq!(r.header("retry-after"), None);
    });
    assert_eq!(a.metric("statehold_conflicts_total"), 1.0);
    assert_eq!(applied(b, 85), vec![1, 3], "the fenced write left no trace");
    let stored = b.stored("tg", "85").unwrap();
    assert_eq!(stored["state"]["name"], "Uma B");
    // The redelivery of update 2 then applies it, once.
    assert_eq!(b.update(2, 85, "Uma").status, 200);
    assert_eq!(applied(b, 85), vec![1, 3, 2]);
    assert_eq!(
        handled_ids(&c.bot, 85),
        vec![1, 3, 2, 2],
        "update 2 ran twice in the bot (A's fenced run, the redelivery); A sent nothing more"
    );
}

#[test]
fn a_request_costs_two_redis_round_trips() {
    two_round_trips(|_| {});
}

/// Kept versions and audit events are written by the commit script
/// itself: still two round trips.
#[test]
fn with_history_and_audit_on_a_request_still_costs_two_round_trips() {
    two_round_trips(|c| {
        c.store_extra.push_str("history = 5\n");
        c.extra.push_str("[audit]\nmax_events = 1000\n");
    });
}

fn two_round_trips(edit: impl Fn(&mut Config)) {
    let _serial = support::serial(module_path!());
    let mut c = on_redis(1, false, edit);
    let port = c.redis.single().port;
    let sh = &c.replicas[0];
    let calls = || support::redis_script_runs(port);
    // The start's key marks (docs/operations.md) are not a request's.
    let started = calls();
    sh.update(1, 86, "/start");
    // The first request's release lands just after its answer.
    support::wait_until("first request's two scripts", || calls() - started == 2);
    let before = calls();
    for id in 2..12u64 {
        assert_eq!(
            sh.update(id, 86, if id == 2 { "Wes" } else { "x" }).status,
            200
        );
    }
    // The release runs after the answer; wait for the last one to land.
    support::wait_until("all scripts counted", || calls() - before >= 20);
    // acquire + load (+ TTL + dedupe lookup), then commit + release: one script each.
    assert_eq!(calls() - before, 20);
}

#[test]
fn a_waiter_whose_client_left_gives_its_turn_up_at_once() {
    let _serial = support::serial(module_path!());
    // A long lease and a short wait: had the departed waiter kept its place,
    // the turn would pass to it and sit unused for 30 s, and the next
    // request would be refused busy after 4 s.
    let c = on_redis(1, false, |cfg| {
        cfg.store_extra = "lock_lease = \"30s\"\nlock_wait = \"4s\"".into();
    });
    let sh = &c.replicas[0];
    let chat = 901;
    let first = {
        let addr = sh.addr();
        std::thread::spawn(move || {
            support::post_json(
                addr,
                "/telegram",
                &support::tg_update(1, chat, "/start"),
                &[("x-demo-delay-ms", "1500")],
            )
            .expect("first answered")
        })
    };
    support::wait_until("the first request is with the bot", || {
        in_flight(&c.bot) == 1
    });

    // The second request waits for the turn; then its client goes away.
    let body = support::tg_update(2, chat, "Ana");
    let raw = format!(
        "POST /telegram HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut gone = std::net::TcpStream::connect(sh.addr()).unwrap();
    std::io::Write::write_all(&mut gone, raw.as_bytes()).unwrap();
    support::wait_until("the second request waits", || {
        sh.metric("statehold_turns_waiting") == 1.0
    });
    drop(gone);
    support::wait_until("the departed waiter is cancelled", || {
        sh.metric("statehold_turns_waiting") == 0.0
    });

    assert_eq!(first.join().unwrap().status, 200);
    let third = sh.update(3, chat, "Ana");
    assert_eq!(third.status, 200, "{}", third.text());
    assert_eq!(reply_text(&third), "Nice to meet you, Ana. Your email?");
    assert_eq!(
        handled_ids(&c.bot, chat),
        vec![1, 3],
        "the departed request never ran"
    );
    assert_eq!(applied(sh, chat), vec![1, 3]);
}

/// Issue 20, item 12: replicas of one Redis with other keys (separate
/// containers, each with its own `./data/keys`) refuse to serve instead of
/// silently splitting the data. Before: the second replica served, every
/// load through it a miss, and flows alternated between working and
/// "Session expired". Now: another `store.key_secret` or a missing sealing
/// key stops it at start (exit 2, naming the config key); the same keys
/// serve the same conversations; and a replica started with a new sealing
/// key the others lack makes them not ready (`/readyz` 503, naming
/// `store.encryption.keys`).
#[test]
fn replicas_with_other_keys_refuse_to_serve() {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    base.private_at_rest();
    let first = Statehold::start(base.clone());
    assert_eq!(first.update(1, 42, "/start").status, 200);
    assert!(first.stored("tg", "42").is_some());

    let with_env = |name: &str, value: &str| {
        let mut c = base.replica();
        c.env.retain(|(k, _)| k != name);
        c.env.push((name.into(), value.into()));
        c
    };
    let other_secret = with_env(
        "SH_KEY_SECRET",
        "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
    );
    let (code, log) = Statehold::start_refused(other_secret);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("store.key_secret"), "{log}");
    let other_seal = with_env("SH_KEY_K1", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=");
    let (code, log) = Statehold::start_refused(other_seal);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("store.encryption.keys"), "{log}");
    assert!(!log.contains("ICEiIyQl"), "no secret in the log");

    // The same keys: the same conversations.
    let second = Statehold::start(base.replica());
    assert!(second.stored("tg", "42").is_some());
    let ready = |sh: &Statehold| support::get(sh.admin(), "/readyz").unwrap();
    assert_eq!(ready(&first).status, 200);

    // A replica sealing with a new key k2 (and still opening k1) starts;
    // the others, which cannot open k2, are no longer ready.
    let mut rotated = base.replica();
    rotated.store_extra = "key_secret_env = \"SH_KEY_SECRET\"\n\
        encryption = { keys = [{ id = \"k2\", secret_env = \"SH_KEY_K2\" }, { id = \"k1\", secret_env = \"SH_KEY_K1\" }] }\n"
        .into();
    rotated.env.push((
        "SH_KEY_K2".into(),
        "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=".into(),
    ));
    let third = Statehold::start(rotated);
    assert_eq!(ready(&third).status, 200);
    let r = ready(&first);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("store.encryption.keys"), "{}", r.text());
    assert_eq!(ready(&second).status, 503);
}
