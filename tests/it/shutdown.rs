//! Graceful shutdown: a rolling restart of three replicas under load loses
//! nothing and answers no 5xx but the documented 503.

use crate::support;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use support::traffic::{drive, Report};
use support::{Bot, Config, RedisServer, Statehold};

#[test]
fn rolling_restart_under_load_loses_nothing() {
    let dir = support::temp_dir();
    let redis = RedisServer::start(dir.path(), false);
    let bot = Bot::start(0);
    let mut base = Config::new(bot.port, dir.path());
    base.redis = Some(redis.port);
    base.server_extra = "shutdown_grace = \"5s\"\n".into();
    let mut replicas: Vec<Statehold> = (0..3).map(|_| Statehold::start(base.replica())).collect();
    let targets: Vec<_> = replicas.iter().map(Statehold::addr).collect();
    let chats: Vec<i64> = (1000..1150).collect();
    let report = Report::default();
    let no_new = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(90);

    let progress = std::thread::scope(|s| {
        let traffic = s.spawn(|| drive(&targets, &chats, |_| 3, 6, deadline, &report, &no_new));
        for replica in replicas.iter_mut() {
            // Let traffic flow, then restart this replica.
            let before = report
                .acknowledged
                .load(std::sync::atomic::Ordering::Relaxed);
            support::wait_until("traffic flowing", || {
                report
                    .acknowledged
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= before + 40
            });
            let status = replica.stop_gracefully();
            assert_eq!(status.code(), Some(0), "{}", replica.logs());
            replica.start_again();
        }
        traffic.join().unwrap()
    });

    let violations = report.violations.lock().unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(progress.len(), chats.len());
    assert!(
        progress.iter().all(|&(_, done)| done == 4),
        "every flow completed"
    );
    let ordering = std::sync::atomic::Ordering::Relaxed;
    assert_eq!(report.status_502.load(ordering), 0);
    assert_eq!(report.status_504.load(ordering), 0);
    assert_eq!(bot.overlaps(), 0);
    for r in &replicas {
        assert!(r.logs().contains("stopped cleanly"));
    }
    eprintln!(
        "rolling restart: {} steps acknowledged, {} redeliveries, {} answered 503, {} unanswered",
        report.acknowledged.load(ordering),
        report.redeliveries.load(ordering),
        report.status_503.load(ordering),
        report.no_answer.load(ordering)
    );
}

/// `server.drain_delay`: after SIGTERM, `/readyz` answers 503 at once while
/// the proxy keeps serving, so load balancers can stop routing here before
/// the listener closes; then it exits 0.
#[test]
fn drain_delay_keeps_serving_while_readiness_says_leaving() {
    let dir = support::temp_dir();
    let bot = Bot::start(0);
    let mut config = Config::new(bot.port, dir.path());
    config.server_extra = "drain_delay = \"3s\"\n".into();
    let mut sh = Statehold::start(config);
    assert_eq!(sh.update(1, 1200, "/start").status, 200);
    support::signal(sh.proc.pid(), "TERM");
    support::wait_until("readiness says leaving", || {
        support::get(sh.admin(), "/readyz").is_ok_and(|r| r.status == 503)
    });
    let r = sh.update(2, 1200, "Ann");
    assert_eq!(r.status, 200, "still serving during the drain delay");
    assert_eq!(
        support::reply_text(&r),
        "Nice to meet you, Ann. Your email?"
    );
    let status = sh.proc.wait_exit();
    assert!(status.success(), "{status}");
    assert!(sh.logs().contains("shutdown requested"));
}
