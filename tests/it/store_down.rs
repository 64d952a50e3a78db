//! The store is down: `on_unavailable` decides, `/readyz` and
//! `statehold_store_up` say so, and statehold recovers by itself.

use crate::support;

use support::{reply_text, Bot, Config, RedisServer, Statehold};

/// A Redis with AOF (killed and restarted by the tests), a bot, and a
/// config on them with these `[store]` lines.
fn on_redis(store_extra: &str) -> (tempfile::TempDir, RedisServer, Bot, Config) {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), true);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    config.store_extra = store_extra.to_string();
    (dir, redis, bot, config)
}

fn setup(on_unavailable: &str) -> (tempfile::TempDir, RedisServer, Bot, Statehold) {
    let (dir, redis, bot, mut config) = on_redis(&format!(
        "on_unavailable = \"{on_unavailable}\"\nop_timeout = \"300ms\"\n"
    ));
    // Outages with the audit trail on: a write-back is audited too.
    config.extra = "[audit]\nmax_events = 1000\n".into();
    let sh = Statehold::start(config);
    (dir, redis, bot, sh)
}

#[test]
fn reject_answers_503_and_readyz_follows() {
    let _serial = support::serial(module_path!());
    let (_d, mut redis, bot, sh) = setup("reject");
    sh.update(1, 90, "/start");
    let before = sh.stored("tg", "90").unwrap();
    redis.proc.kill9();
    let r = sh.update(2, 90, "Xia");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "store_unavailable");
    assert_eq!(bot.handled().len(), 1, "bot not called");
    let ready = support::get(sh.admin(), "/readyz").unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "store unreachable");
    assert_eq!(sh.metric("statehold_store_up"), 0.0);
    assert!(sh.logs().contains("outcome=\"store_unavailable\""));

    redis.restart();
    support::wait_until("ready again", || {
        support::get(sh.admin(), "/readyz").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(
        sh.stored("tg", "90").unwrap(),
        before,
        "snapshot intact (AOF)"
    );
    assert_eq!(
        reply_text(&sh.update(2, 90, "Xia")),
        "Nice to meet you, Xia. Your email?"
    );
    assert_eq!(sh.metric("statehold_store_up"), 1.0);
}

#[test]
fn passthrough_forwards_degraded_and_spools_until_the_store_returns() {
    let _serial = support::serial(module_path!());
    let (_d, mut redis, bot, mut sh) = setup("passthrough");
    sh.update(1, 91, "/start");
    sh.update(1, 94, "/start");
    redis.proc.kill9();
    // The bot still has its dict; it is told the store is out.
    let r = sh.update(2, 91, "Yan");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(reply_text(&r), "Nice to meet you, Yan. Your email?");
    assert!(r.reserved_headers().is_empty());
    let last = bot.handled().pop().unwrap();
    assert_eq!(last["status_seen"], "degraded");
    assert!(last["reserved_seen"].get("x-statehold-state").is_none());
    assert_eq!(
        reply_text(&sh.update(3, 91, "yan@example.com")),
        "Which plan: basic or pro?"
    );
    sh.update(2, 94, "Zoe");
    assert!(sh.logs().contains("outcome=\"degraded\""));
    assert!(sh.logs().contains("snapshot spooled"));
    // Degraded service is what the operator chose: the replica stays in its
    // load balancer, and says the store is down.
    let ready = support::get(sh.admin(), "/readyz").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["store"], "down");
    assert_eq!(ready.json()["degraded"], true);
    assert_eq!(
        sh.metric("statehold_spool_depth"),
        2.0,
        "one entry per conversation"
    );

    // statehold itself restarts during the outage: the spool is on disk.
    sh.crash_and_restart();
    assert_eq!(sh.metric("statehold_spool_depth"), 2.0);

    // Redis returns: both conversations are written back by themselves.
    redis.restart();
    support::wait_until("spool written back", || {
        sh.metric("statehold_spool_depth") == 0.0
    });
    let stored = sh.stored("tg", "91").unwrap();
    assert_eq!(
        stored["state"]["step"], "plan",
        "the degraded steps were kept"
    );
    assert_eq!(stored["state"]["applied"], serde_json::json!([1, 2, 3]));
    assert_eq!(
        stored["version"], 2,
        "one write-back on top of the version seen before the outage"
    );
    assert_eq!(
        reply_text(&sh.update(4, 91, "pro")),
        "Registered Yan <yan@example.com> on the pro plan. Done!"
    );
    assert!(sh.logs().contains("spooled snapshot written back"));
    let (_, trail) = sh.admin_call("GET", "/v1/audit?key=tg:91", "");
    let trail: Vec<(String, u64, u64)> = trail
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let e = &e["event"];
            let v = |f: &str| e[f].as_u64().unwrap();
            (
                e["kind"].as_str().unwrap().to_string(),
                v("from_version"),
                v("to_version"),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("clear".to_string(), 2, 3),
            ("spool_write_back".to_string(), 1, 2),
            ("write".to_string(), 0, 1),
        ],
        "the write-back is in the trail"
    );
}

#[test]
fn a_spooled_snapshot_older_than_the_store_is_dropped_as_a_conflict() {
    let _serial = support::serial(module_path!());
    let (_dir, mut redis, _bot, config) =
        on_redis("on_unavailable = \"passthrough\"\nop_timeout = \"300ms\"\n");
    let mut a = Statehold::start(config.replica());
    let b = Statehold::start(config.replica());
    a.update(1, 97, "/start");
    // A loses Redis (as if partitioned): kill Redis, spool on A.
    redis.proc.kill9();
    assert_eq!(a.update(2, 97, "Old").status, 200);
    assert_eq!(a.metric("statehold_spool_depth"), 1.0);
    // Stop A before Redis returns, so B moves the conversation on first.
    a.proc.kill9();
    redis.restart();
    support::wait_until("B sees the store", || {
        support::get(b.admin(), "/readyz").is_ok_and(|r| r.json()["store"] == "up")
    });
    assert_eq!(
        reply_text(&b.update(2, 97, "New")),
        "Nice to meet you, New. Your email?"
    );
    a.start_again();
    support::wait_until("A's spool settled", || {
        a.metric("statehold_spool_depth") == 0.0
    });
    assert_eq!(a.metric("statehold_conflicts_total"), 1.0);
    assert!(a.logs().contains("spooled snapshot dropped"));
    assert_eq!(
        b.stored("tg", "97").unwrap()["state"]["name"],
        "New",
        "the newer state stays"
    );
}

#[test]
fn starts_while_redis_is_down_unless_required() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    let dead_port = support::free_port();
    config.redis = Some(dead_port);
    config.store_extra = "op_timeout = \"200ms\"\n".into();
    // Not required: it starts, answers 503, and is not ready.
    let sh = Statehold::start(config.clone());
    assert_eq!(sh.update(1, 92, "/start").status, 503);
    assert_eq!(support::get(sh.admin(), "/readyz").unwrap().status, 503);
    // Redis appears on that port: statehold recovers by itself.
    let redis_dir = dir.path().join("late");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let _redis = {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args([
            "--port",
            &dead_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(std::process::Stdio::null());
        support::Proc::from_child("redis-server", cmd.spawn().unwrap())
    };
    support::wait_until("ready once redis is up", || {
        support::get(sh.admin(), "/readyz").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(sh.update(1, 92, "/start").status, 200);
    drop(sh);

    // Required: a clear one-line reason and a non-zero exit.
    let mut required = config.replica();
    required.redis = Some(support::free_port());
    required.store_extra = "op_timeout = \"200ms\"\nrequire_at_startup = true\n".into();
    let path = dir.path().join("required.toml");
    std::fs::write(&path, required.render()).unwrap();
    let out = support::run_statehold(&["serve", "--config", path.to_str().unwrap()], &[]);
    support::assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("require_at_startup"), "{err}");
}

#[test]
fn a_hung_redis_trips_the_circuit_breaker_and_recovers() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    config.store_extra =
        "op_timeout = \"300ms\"\nbreaker_failures = 2\nbreaker_cooldown = \"1s\"\nlock_wait = \"2s\"\n".into();
    let sh = Statehold::start(config);
    sh.update(1, 93, "/start");
    // Redis hangs (not down: connections stay open, nothing answers).
    support::signal(redis.proc.pid(), "STOP");
    for id in 2..6 {
        let r = sh.update(id, 93, "Abe");
        assert_eq!(r.status, 503, "{}", r.text());
    }
    let logs = sh.logs();
    assert!(logs.contains("redis circuit open"), "{logs}");
    assert!(
        logs.contains("circuit open (redis failing)"),
        "later requests failed fast"
    );
    assert_eq!(
        bot.handled().len(),
        1,
        "bot not called while the store is out"
    );
    assert_eq!(sh.metric("statehold_store_up"), 0.0);
    support::signal(redis.proc.pid(), "CONT");
    support::wait_until("circuit closes after the cooldown", || {
        support::get(sh.admin(), "/readyz").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(
        reply_text(&sh.update(2, 93, "Abe")),
        "Nice to meet you, Abe. Your email?"
    );
}

#[test]
fn a_redis_that_turned_read_only_counts_as_down_not_as_damaged_data() {
    let _serial = support::serial(module_path!());
    let (_d, redis, bot, sh) = setup("reject");
    sh.update(1, 92, "/start");
    let before = sh.stored("tg", "92").unwrap();
    // What a failover leaves behind: the old primary is now a replica
    // (of a primary that does not answer) and refuses writes with READONLY.
    let dead = support::free_port();
    support::redis_cmd(redis.port, &format!("REPLICAOF 127.0.0.1 {dead}")).unwrap();
    for update in 2..6 {
        let r = sh.update(update, 92, "Ama");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"], "store_unavailable");
    }
    assert_eq!(bot.handled().len(), 1, "bot not called");
    assert_eq!(sh.metric("statehold_store_up"), 0.0);
    let logs = sh.logs();
    assert!(
        logs.contains("read only replica"),
        "the reason is logged: {logs}"
    );
    assert!(
        logs.contains("redis circuit open"),
        "READONLY counts as a failure: {logs}"
    );

    // Back to a primary: statehold recovers by itself, nothing was lost.
    support::redis_cmd(redis.port, "REPLICAOF NO ONE").unwrap();
    support::wait_until("serving again", || sh.update(6, 92, "Ama").status == 200);
    let after = sh.stored("tg", "92").unwrap();
    assert_eq!(after["version"], before["version"].as_u64().unwrap() + 1);
}

/// Outage defect 1: steps typed during an outage sit in this replica's
/// spool; right after the store returns, the next step must continue from
/// them, not from the pre-outage record (which the write-back would then
/// refuse to overwrite: the steps were lost). Six conversations type their
/// next step at once, the moment the replica sees the store again.
#[test]
fn steps_typed_during_an_outage_are_kept_when_the_store_returns() {
    let _serial = support::serial(module_path!());
    let (_d, mut redis, _bot, sh) = setup("passthrough");
    let chats: Vec<i64> = (300..306).collect();
    for &chat in &chats {
        sh.update(1, chat, "/start");
    }
    redis.proc.kill9();
    type_name_and_email(&sh, &chats);
    assert_eq!(sh.metric("statehold_spool_depth"), 6.0);
    redis.restart();
    support::wait_until("the store is back", || {
        support::get(sh.admin(), "/readyz").is_ok_and(|r| r.json()["store"] == "up")
    });
    let answers: Vec<String> = std::thread::scope(|s| {
        let sh = &sh;
        let typing: Vec<_> = chats
            .iter()
            .map(|&chat| s.spawn(move || reply_text(&sh.update(4, chat, "pro"))))
            .collect();
        typing.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for answer in answers {
        assert_eq!(
            answer,
            "Registered Ann <ann@example.com> on the pro plan. Done!"
        );
    }
    support::wait_until("spool settled", || {
        sh.metric("statehold_spool_depth") == 0.0
    });
    assert_eq!(
        sh.metric("statehold_conflicts_total"),
        0.0,
        "nothing dropped"
    );
}

/// Outage defect 2: with Redis gone, concurrent requests must not queue up
/// behind one another's reconnect attempts: each waits for the store at
/// most `op_timeout`, then goes on degraded. 50 conversations at once.
#[test]
fn a_dead_store_delays_each_request_by_op_timeout_at_most() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let mut redis = RedisServer::start(dir.path(), false);
    // A bot that reports no state: the degraded answers spool nothing, so
    // the time measured is the store's.
    let bot = support::recorder::Recorder::start();
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    config.store_extra = "on_unavailable = \"passthrough\"\nop_timeout = \"500ms\"\n".into();
    let sh = Statehold::start(config);
    assert_eq!(sh.update(1, 500, "/start").status, 200);
    // The same burst with the store up first: what this machine takes
    // anyway right now (CI runs builds beside the tests), so the bound is
    // on what the outage adds, not on the machine's load.
    let live = burst(&sh, 600);
    redis.proc.kill9();
    let dead = burst(&sh, 700);
    let p99 = |took: &[std::time::Duration]| took[took.len() * 99 / 100 - 1];
    eprintln!(
        "50 at once: store up p50 {:?} p99 {:?}; store dead (degraded) p50 {:?} p99 {:?}",
        live[live.len() / 2],
        p99(&live),
        dead[dead.len() / 2],
        p99(&dead)
    );
    let bound = p99(&live) + std::time::Duration::from_millis(500 + 100);
    assert!(
        p99(&dead) <= bound,
        "p99 of degraded answers {:?} over the live burst's p99 + op_timeout (500ms) + 100ms = {bound:?}; all: {dead:?}",
        p99(&dead)
    );
}

/// 50 requests at once, each from its own conversation (`first` on), each
/// answered 200: how long each took, sorted.
fn burst(sh: &Statehold, first: i64) -> Vec<std::time::Duration> {
    let start = std::sync::Barrier::new(50);
    let mut took: Vec<std::time::Duration> = std::thread::scope(|s| {
        let start = &start;
        let clients: Vec<_> = (0..50i64)
            .map(|i| {
                s.spawn(move || {
                    start.wait();
                    let began = std::time::Instant::now();
                    let r = sh.update((first + i) as u64, first + i, "hello");
                    assert_eq!(r.status, 200, "{}", r.text());
                    began.elapsed()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    took.sort();
    took
}

/// Outage defect 1, across replicas: steps typed through replica A during
/// an outage sit in A's spool; the conversation's next step, typed through
/// replica B right after B sees the store again, continues from them (B
/// settles for `store.recovery_settle` while A writes its spool back).
#[test]
fn steps_spooled_on_one_replica_are_kept_when_the_next_goes_through_another() {
    let _serial = support::serial(module_path!());
    let (_dir, mut redis, _bot, config) =
        on_redis("on_unavailable = \"passthrough\"\nop_timeout = \"300ms\"\n");
    let a = Statehold::start(config.replica());
    let b = Statehold::start(config.replica());
    let chats: Vec<i64> = (400..404).collect();
    for &chat in &chats {
        a.update(1, chat, "/start");
    }
    redis.proc.kill9();
    type_name_and_email(&a, &chats);
    // B sees the outage too (its readiness probe does).
    support::wait_until("B sees the store down", || {
        support::get(b.admin(), "/readyz").is_ok_and(|r| r.json()["store"] == "down")
    });
    redis.restart();
    support::wait_until("B sees the store again", || {
        support::get(b.admin(), "/readyz").is_ok_and(|r| r.json()["store"] == "up")
    });
    for &chat in &chats {
        assert_eq!(
            reply_text(&b.update(4, chat, "pro")),
            "Registered Ann <ann@example.com> on the pro plan. Done!",
            "chat {chat}"
        );
    }
    assert_eq!(
        a.metric("statehold_conflicts_total"),
        0.0,
        "nothing dropped"
    );
}

/// Steps 2 and 3 of each chat's flow (name, email) through `sh`.
fn type_name_and_email(sh: &Statehold, chats: &[i64]) {
    for &chat in chats {
        assert_eq!(
            reply_text(&sh.update(2, chat, "Ann")),
            "Nice to meet you, Ann. Your email?"
        );
        assert_eq!(
            reply_text(&sh.update(3, chat, "ann@example.com")),
            "Which plan: basic or pro?"
        );
    }
}

/// A TCP proxy in front of Redis that, once a command carrying `marker`
/// went through a connection, drops that connection's next reply and
/// closes it: the reply of a commit that ran.
fn reply_dropping_proxy(redis: u16, marker: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dropped_once = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", redis)) else {
                continue;
            };
            let armed = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (a, once) = (Arc::clone(&armed), Arc::clone(&dropped_once));
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = c_in.read(&mut buf) {
                    let chunk = &buf[..n];
                    // Armed before it reaches Redis, so before its reply.
                    if !once.load(Ordering::SeqCst)
                        && chunk.windows(marker.len()).any(|w| w == marker)
                    {
                        a.store(true, Ordering::SeqCst);
                    }
                    if s_out.write_all(chunk).is_err() {
                        break;
                    }
                }
            });
            let (mut s_in, mut c_out) = (server, client);
            let once = Arc::clone(&dropped_once);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = s_in.read(&mut buf) {
                    if armed.load(Ordering::SeqCst) && !once.swap(true, Ordering::SeqCst) {
                        let _ = c_out.shutdown(std::net::Shutdown::Both);
                        let _ = s_in.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Issue 21: a commit whose reply was lost after it ran (a proxy drops
/// exactly that reply) is sent again on a fresh connection; the replay is
/// recognised (the record names the turn that last wrote it) and the
/// answer acknowledged. Before: the fence refused the replay and the
/// platform got 503 `conflict` while Redis held the new version and the
/// dedupe record.
#[test]
fn a_commit_whose_reply_was_lost_is_acknowledged() {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = support::recorder::reporting_bot();
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(reply_dropping_proxy(redis.port, b"DROP-THE-REPLY"));
    let sh = Statehold::start(config);
    assert_eq!(sh.update(1, 61, r#"{"step":"name"}"#).status, 200);
    let update = support::tg_update(2, 61, r#"{"step":"DROP-THE-REPLY"}"#);
    let r = support::post_json(sh.addr(), "/telegram", &update, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = sh.stored("tg", "61").unwrap();
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["state"]["step"], "DROP-THE-REPLY");
    assert_eq!(sh.metric_or_zero("statehold_conflicts_total"), 0.0);
    // The redelivery is answered from the record the commit wrote.
    let handled = bot.requests().len();
    let again = support::post_json(sh.addr(), "/telegram", &update, &[]).unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(bot.requests().len(), handled);
}

/// Issue 21: a damaged record (one conversation's `{…}:s` overwritten with
/// garbage) is bad data, not an outage. Before: with `reject` it got 503
/// `store_unavailable` and `statehold_store_up` dropped to 0; with
/// `passthrough` the bot was handed `degraded`, the next healthy request
/// waited out `recovery_settle`, and the damaged conversation's spool entry
/// could never be written back. Now: 500 `store_error` (no Retry-After),
/// the bot not called, the store still up, other conversations served at
/// once, nothing spooled.
#[test]
fn a_damaged_record_is_bad_data_not_an_outage() {
    let _serial = support::serial(module_path!());
    for mode in ["reject", "passthrough"] {
        let (_d, redis, bot, sh) = setup(mode);
        sh.update(1, 77, "/start");
        sh.update(2, 78, "/start");
        let key = format!("{{{}:tg:77}}:s", sh.config.key_prefix());
        support::redis_cmd(redis.port, &format!("DEL {key}")).unwrap();
        support::redis_cmd(redis.port, &format!("SET {key} garbage")).unwrap();
        let handled = bot.handled().len();
        let r = sh.update(3, 77, "Ann");
        assert_eq!(r.status, 500, "{mode}: {}", r.text());
        assert_eq!(r.json()["error"], "store_error");
        assert_eq!(r.header("retry-after"), None);
        assert_eq!(bot.handled().len(), handled, "the bot is not called");
        assert_eq!(sh.metric("statehold_store_up"), 1.0, "{mode}");
        // Another conversation goes on at once, with its state.
        let r = sh.update(4, 78, "Bob");
        assert_eq!(reply_text(&r), "Nice to meet you, Bob. Your email?");
        assert_eq!(bot.handled().pop().unwrap()["status_seen"], "restored");
        assert_eq!(sh.metric_or_zero("statehold_spool_depth"), 0.0);
        assert!(sh.logs().contains("record cannot be used"));
        assert!(!sh.logs().contains("outcome=\"degraded\""));
    }
}

/// Issue 22, item 5: after an outage long enough to open the circuit
/// breaker, requests are served again as soon as Redis answers, not once
/// `breaker_cooldown` ran out (60 s here): a background probe reconnects
/// and closes the circuit. The conversation goes on from its stored step.
#[test]
fn requests_are_served_again_as_soon_as_redis_answers() {
    let _serial = support::serial(module_path!());
    let (_dir, mut redis, _bot, config) =
        on_redis("op_timeout = \"300ms\"\nbreaker_failures = 3\nbreaker_cooldown = \"60s\"\n");
    let sh = Statehold::start(config);
    assert_eq!(sh.update(1, 900, "/start").status, 200);
    redis.proc.kill9();
    // The readiness probe's pings fail and open the circuit (no request
    // leaves a queued token behind whose later release would close it).
    for _ in 0..6 {
        let ready = support::get(sh.admin(), "/readyz").expect("admin answers");
        assert_eq!(ready.status, 503, "Redis is down");
    }
    assert_eq!(sh.update(2, 900, "hello").status, 503, "failing fast");
    redis.restart();
    let answered = std::time::Instant::now();
    let next = std::sync::atomic::AtomicU64::new(100);
    support::wait_until("served again, well within breaker_cooldown", || {
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sh.update(id, 900, "hello").status == 200
    });
    eprintln!(
        "served again {:?} after Redis answered ({} tries)",
        answered.elapsed(),
        next.into_inner() - 100
    );
    assert_eq!(sh.metric("statehold_store_up"), 1.0);
    let stored = sh.stored("tg", "900").expect("the conversation is kept");
    let state = &stored["state"];
    assert_eq!(state["step"], "email", "it went on from /start: {stored}");
    assert_eq!(state["name"], "hello", "{stored}");
}
