//! The backend-conformance suite, one test per property and backend: the
//! embedded store and a real `redis-server`, each bare and behind the
//! privacy wrapper (hashed keys, sealed values), so a failure names the
//! property and the backend (`redis_private::dedupe_records`). The Redis
//! Cluster runs the whole suite in one test (a cluster is slow to start),
//! and the embedded store's own behaviour (its purge, its file lock, its
//! TTLs on a paused clock) has tests of its own.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use statehold::backend::audit_log::AuditLog;
use statehold::backend::embedded::EmbeddedBackend;
use statehold::backend::fallback::PlaintextFallback;
use statehold::backend::private::Private;
use statehold::backend::redis::{Access, RedisBackend, RedisConn, Timings, Topology};
use statehold::backend::{
    Backend, Commit, Held, Lifecycle, RecordedResponse, Retention, StateChange, Turns,
};
use statehold::privacy::Privacy;
use support::conformance::{history_suite, keeping, short_lifetimes, suite, ttl_suite, SHORT_TTL};
use support::deferral_conformance::deferral_suite;
use support::import_conformance::{audit_suite, import_suite};
use support::link_conformance::link_suite;

/// The embedded backend's expiry follows tokio's clock, so its TTLs are
/// checked on a paused clock: no real waiting.
#[tokio::test(start_paused = true)]
async fn embedded_ttls_on_a_paused_clock() {
    let dir = support::temp_dir();
    let path = dir.path().join("short.db");
    let short =
        EmbeddedBackend::open(&path, short_lifetimes("conf"), SHORT_TTL, 32 << 20).expect("open");
    let started = std::time::Instant::now();
    ttl_suite(&short, "conf").await;
    assert!(
        started.elapsed() < SHORT_TTL,
        "the TTL checks waited on the paused clock, not in real time"
    );
}

#[tokio::test(start_paused = true)]
async fn embedded_purge_deletes_what_expired() {
    let dir = support::temp_dir();
    let ttl = Duration::from_millis(300);
    let store = EmbeddedBackend::open(&dir.path().join("p.db"), ttl, ttl, 32 << 20).expect("open");
    for i in 0..50 {
        let key = statehold::key::ConvKey::new("p", &i.to_string());
        let commit = Commit {
            expected_version: Some(0),
            change: StateChange::Put(bytes::Bytes::from_static(b"{}")),
            dedupe: Some((
                format!("u{i}"),
                RecordedResponse {
                    status: http::StatusCode::OK,
                    headers: vec![],
                    body: bytes::Bytes::new(),
                    request_digest: None,
                },
            )),
            origin: Default::default(),
            audit: None,
            link: None,
        };
        let (held, _) = store
            .begin(&key, Duration::from_secs(1), None)
            .await
            .expect("turn");
        held.finish(commit).await.expect("commit");
    }
    assert_eq!(
        store.purge_expired().await.expect("purge"),
        0,
        "nothing expired yet"
    );
    tokio::time::sleep(ttl * 2).await;
    // 50 snapshots + 50 dedupe records.
    assert_eq!(store.purge_expired().await.expect("purge"), 100);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
}

#[test]
fn embedded_store_is_exclusive_to_one_process() {
    let dir = support::temp_dir();
    let path = dir.path().join("x.db");
    let hour = Duration::from_secs(3600);
    let _first = EmbeddedBackend::open(&path, hour, hour, 32 << 20).expect("open");
    let second = EmbeddedBackend::open(&path, hour, hour, 32 << 20);
    let msg = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("already opened"), "{msg}");
}

/// The same suite on a three-primary Redis Cluster: every script lands on
/// its conversation's slot, and hand-overs are heard across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_conforms() {
    let dir = support::temp_dir();
    let cluster = support::redis_cluster::RedisCluster::start(dir.path(), 3, 0);
    let nodes: Vec<String> = cluster
        .seeds()
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    redis_conforms(Topology::Cluster { nodes: &nodes }, &cluster.seeds()).await;
}

/// The same suite through Sentinel: the primary a Sentinel set names (a
/// replica beside it), links, the audit trail and hand-overs included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_store_conforms() {
    let dir = support::temp_dir();
    let set = support::sentinel::SentinelSet::start(dir.path(), 1);
    let sentinels: Vec<String> = set
        .sentinels
        .iter()
        .map(|(_, p)| format!("127.0.0.1:{p}"))
        .collect();
    let primary = set.primary_port().expect("a primary");
    let topology = Topology::Sentinel {
        sentinels: &sentinels,
        master: support::sentinel::MASTER,
    };
    redis_conforms(topology, &[primary]).await;
}

async fn redis_conforms(topology: Topology<'_>, ports: &[u16]) {
    let conn = |prefix| redis_conn(topology, prefix);
    let long = RedisBackend::new(conn("long"), redis_timings(HOUR));
    let short = RedisBackend::with_retention(
        conn("short"),
        redis_timings(SHORT_TTL),
        &short_lifetimes("conf").into(),
    );
    let kept = RedisBackend::with_retention(conn("kept"), redis_timings(HOUR), &keeping(HOUR));
    let long = Arc::new(long);
    suite(Arc::clone(&long), "conf").await;
    import_suite(&*long, "imp").await;
    // Two replicas of one deployment, with a lease short enough for a
    // holder to hear within the suite that its turn ended elsewhere.
    let replica = || {
        let lease = Duration::from_millis(900);
        let timings = Timings {
            lease,
            ..redis_timings(HOUR)
        };
        RedisBackend::new(conn("def"), timings)
    };
    deferral_suite(&replica(), Some(&replica()), "def").await;
    // One stream, or one per slot on a Cluster.
    let audited = RedisBackend::with_retention(conn("aud"), redis_timings(HOUR), &audited(HOUR));
    audit_suite(&audited, "aud").await;
    // On a Cluster a channel and its member live in different slots.
    link_suite(long, "conf").await;
    ttl_suite(&short, "conf").await;
    history_suite(&kept, "conf").await;
    every_key_has_a_ttl(ports);
}

fn redis_timings(ttl: Duration) -> Timings {
    Timings {
        ttl,
        dedupe_window: ttl,
        lease: HOUR,
        max_wait: HOUR,
        min_replica_acks: 0,
    }
}

fn redis_conn(topology: Topology<'_>, prefix: &str) -> RedisConn {
    let (timeout, breaker) = (Duration::from_secs(2), (3, Duration::from_secs(1)));
    RedisConn::open(topology, Access::default(), timeout, prefix, breaker).unwrap()
}

/// Every key the servers hold carries a TTL (never a key that lives
/// forever), but the audit streams, bounded by length.
fn every_key_has_a_ttl(ports: &[u16]) {
    for port in ports {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let names: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        for name in names {
            // `{prefix:audit}`, or a Cluster slot's `{prefix:audit:<n>}`.
            let text = String::from_utf8_lossy(&name);
            let audit_stream = text.strip_suffix('}').is_some_and(|t| {
                t.ends_with(":audit")
                    || t.rsplit_once(":audit:").is_some_and(|(_, n)| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    })
            });
            if audit_stream {
                continue;
            }
            let ttl: i64 = redis::cmd("PTTL").arg(&name).query(&mut con).unwrap();
            // -2: gone meanwhile (a turn's release still landing); -1: no TTL.
            assert!(
                ttl > 0 || ttl == -2,
                "{} has no TTL ({ttl})",
                String::from_utf8_lossy(&name)
            );
        }
    }
}

/// `[audit]` on, 100 events kept.
fn audited(ttl: Duration) -> statehold::backend::Retention {
    statehold::backend::Retention {
        lifetimes: ttl.into(),
        history: 0,
        audit: 100,
    }
}

// ------------------------------------------------- one test per property

/// A backend for one test, and what must live as long as it.
struct Fixture<B> {
    backend: B,
    guard: Guard,
}

struct Guard {
    _dir: tempfile::TempDir,
    redis: Option<support::RedisServer>,
}

impl Guard {
    /// After a test: on Redis, every key it wrote carries a TTL.
    fn check(&self) {
        if let Some(redis) = &self.redis {
            every_key_has_a_ttl(&[redis.port]);
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

async fn on_embedded(retention: Retention) -> Fixture<EmbeddedBackend> {
    let dir = support::temp_dir();
    let path = dir.path().join("conf.db");
    let backend = EmbeddedBackend::open(&path, retention, HOUR, 32 << 20).expect("open");
    Fixture {
        backend,
        guard: Guard {
            _dir: dir,
            redis: None,
        },
    }
}

async fn on_redis(retention: Retention) -> Fixture<RedisBackend> {
    let dir = support::temp_dir();
    let server = support::RedisServer::start(dir.path(), false);
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let conn = redis_conn(Topology::Single { url: &url }, "conf");
    let timings = redis_timings(retention.lifetimes.default_ttl());
    let backend = RedisBackend::with_retention(conn, timings, &retention);
    Fixture {
        backend,
        guard: Guard {
            _dir: dir,
            redis: Some(server),
        },
    }
}

/// Hashed key names and sealed values, as `store.key_secret` and
/// `[store.encryption]` make them.
fn private<B: Backend>(f: Fixture<B>) -> Fixture<Private<B>> {
    let privacy = Privacy::new(
        Some(b"conformance-key-secret-0123456789"),
        vec![("k1".to_string(), [7u8; 32])],
    );
    Fixture {
        backend: Private::new(f.backend, Arc::new(privacy)),
        guard: f.guard,
    }
}

/// The whole stack statehold serves: the plaintext fallback (on) over the
/// privacy wrapper over the audit-log mirror (on) over the store.
fn served<B: Backend>(f: Fixture<B>) -> Fixture<PlaintextFallback<AuditLog<B>>> {
    let privacy = Privacy::new(
        Some(b"conformance-key-secret-0123456789"),
        vec![("k1".to_string(), [7u8; 32])],
    )
    .with_plaintext_fallback(true);
    let store = AuditLog::new(f.backend, true);
    Fixture {
        backend: PlaintextFallback::new(Private::new(store, Arc::new(privacy))),
        guard: f.guard,
    }
}

async fn on_embedded_served(
    retention: Retention,
) -> Fixture<PlaintextFallback<AuditLog<EmbeddedBackend>>> {
    served(on_embedded(retention).await)
}

async fn on_redis_served(
    retention: Retention,
) -> Fixture<PlaintextFallback<AuditLog<RedisBackend>>> {
    served(on_redis(retention).await)
}

async fn on_embedded_private(retention: Retention) -> Fixture<Private<EmbeddedBackend>> {
    private(on_embedded(retention).await)
}

async fn on_redis_private(retention: Retention) -> Fixture<Private<RedisBackend>> {
    private(on_redis(retention).await)
}

/// One `#[tokio::test]` per property of `support::conformance` (by
/// reference: `&B`; shared: `Arc<B>`) and per listed suite, in a module
/// per backend.
macro_rules! conformance {
    ($($backend:ident => $open:ident, [$($suite:ident),*];)+) => {$(
        mod $backend {
            use super::*;
            conformance!(@by_ref $open; empty_conversation, versions_increase,
                stale_version_conflicts, keep_refreshes_only, clear_keeps_a_tombstone,
                forget_removes_the_record, dedupe_records, unicode_roundtrip,
                turn_wait_is_bounded, every_end_of_a_turn_releases_it,
                scan_finds_every_conversation);
            conformance!(@shared $open; many_concurrent_commits, turns_in_arrival_order,
                a_cancelled_waiter_gives_its_place_up);
            $(conformance!(@suite $suite $open);)*
        }
    )+};
    // One test: the backend opened with `$retention`, `$call` run on it,
    // then the guard's checks.
    (@test $open:ident, $name:ident, $retention:expr, |$b:ident| $call:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Fixture { backend: $b, guard } = $open($retention).await;
            $call.await;
            guard.check();
        }
    };
    (@by_ref $open:ident; $($name:ident),+) => {$(
        conformance!(@test $open, $name, HOUR.into(),
            |b| support::conformance::$name(&b, "conf"));
    )+};
    (@shared $open:ident; $($name:ident),+) => {$(
        conformance!(@test $open, $name, HOUR.into(),
            |b| support::conformance::$name(Arc::new(b), "conf"));
    )+};
    (@suite history_and_rollback $open:ident) => {
        conformance!(@test $open, history_and_rollback, keeping(HOUR),
            |b| history_suite(&b, "conf"));
    };
    (@suite dump_and_import $open:ident) => {
        conformance!(@test $open, dump_and_import, HOUR.into(), |b| import_suite(&b, "imp"));
    };
    (@suite audit_events $open:ident) => {
        conformance!(@test $open, audit_events, audited(HOUR), |b| audit_suite(&b, "aud"));
    };
    (@suite links $open:ident) => {
        conformance!(@test $open, links, HOUR.into(), |b| link_suite(Arc::new(b), "conf"));
    };
}

// Behind the privacy wrapper, dumps name stored keys and carry sealed
// values, audit events carry pseudonyms and links name hashed members:
// those suites assert plain names, and `tests/it/privacy.rs`, `export.rs`,
// `audit.rs` and `links.rs` check the private forms end to end.
conformance! {
    embedded_store => on_embedded, [history_and_rollback, dump_and_import, audit_events, links];
    embedded_private => on_embedded_private, [history_and_rollback];
    redis_store => on_redis, [history_and_rollback, dump_and_import, audit_events, links];
    redis_private => on_redis_private, [history_and_rollback];
    embedded_served => on_embedded_served, [history_and_rollback];
    redis_served => on_redis_served, [history_and_rollback];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_deferrals_conform() {
    let f = on_embedded(HOUR.into()).await;
    deferral_suite(&f.backend, None, "def").await;
}

/// Two replicas of one deployment, with a lease short enough for a holder
/// to hear within the suite that its turn ended elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_deferrals_conform() {
    let dir = support::temp_dir();
    let server = support::RedisServer::start(dir.path(), false);
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let replica = || {
        let timings = Timings {
            lease: Duration::from_millis(900),
            ..redis_timings(HOUR)
        };
        RedisBackend::new(redis_conn(Topology::Single { url: &url }, "def"), timings)
    };
    deferral_suite(&replica(), Some(&replica()), "def").await;
    every_key_has_a_ttl(&[server.port]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ttls_conform() {
    let f = on_redis(short_lifetimes("conf").into()).await;
    ttl_suite(&f.backend, "conf").await;
    f.guard.check();
}
