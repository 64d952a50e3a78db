//! The backend-conformance suite on both backends, and what only the
//! embedded one does (its purge, its file lock).

#![recursion_limit = "256"]

mod support;

use std::sync::Arc;
use std::time::Duration;

use statehold::backend::embedded::EmbeddedBackend;
use statehold::backend::redis::{Access, RedisBackend, RedisConn, Timings, Topology};
use statehold::backend::{Backend, Commit, Held, RecordedResponse, StateChange};
use support::conformance::{history_suite, keeping, short_lifetimes, suite, ttl_suite, SHORT_TTL};
use support::deferral_conformance::deferral_suite;
use support::import_conformance::{audit_suite, import_suite};
use support::link_conformance::link_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_conforms() {
    let dir = support::temp_dir();
    let hour = Duration::from_secs(3600);
    let long =
        EmbeddedBackend::open(&dir.path().join("long.db"), hour, hour, 32 << 20).expect("open");
    let long = Arc::new(long);
    suite(Arc::clone(&long), "conf").await;
    import_suite(&*long, "imp").await;
    deferral_suite(&*long, None, "def").await;
    link_suite(long, "conf").await;
    let audited =
        EmbeddedBackend::open(&dir.path().join("audit.db"), audited(hour), hour, 32 << 20)
            .expect("open");
    audit_suite(&audited, "aud").await;
    let kept = EmbeddedBackend::open(&dir.path().join("kept.db"), keeping(hour), hour, 32 << 20)
        .expect("open");
    history_suite(&kept, "conf").await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let dir = support::temp_dir();
    let redis = support::RedisServer::start(dir.path(), false);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    redis_conforms(Topology::Single { url: &url }, &[redis.port]).await;
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

async fn redis_conforms(topology: Topology<'_>, ports: &[u16]) {
    let cluster = matches!(topology, Topology::Cluster { .. });
    let hour = Duration::from_secs(3600);
    let timings = |ttl| Timings {
        ttl,
        dedupe_window: ttl,
        lease: hour,
        max_wait: hour,
        min_replica_acks: 0,
    };
    let conn = |prefix| {
        let (timeout, breaker) = (Duration::from_secs(2), (3, Duration::from_secs(1)));
        RedisConn::open(topology, Access::default(), timeout, prefix, breaker).unwrap()
    };
    let long = RedisBackend::new(conn("long"), timings(hour));
    let short = RedisBackend::with_retention(
        conn("short"),
        timings(SHORT_TTL),
        &short_lifetimes("conf").into(),
    );
    let kept = RedisBackend::with_retention(conn("kept"), timings(hour), &keeping(hour));
    let long = Arc::new(long);
    suite(Arc::clone(&long), "conf").await;
    import_suite(&*long, "imp").await;
    // Two replicas of one deployment, with a lease short enough for a
    // holder to hear within the suite that its turn ended elsewhere.
    let replica = || {
        let lease = Duration::from_millis(900);
        RedisBackend::new(
            conn("def"),
            Timings {
                lease,
                ..timings(hour)
            },
        )
    };
    deferral_suite(&replica(), Some(&replica()), "def").await;
    if !cluster {
        // One audit stream: refused on a Cluster by the config.
        let audited = RedisBackend::with_retention(conn("aud"), timings(hour), &audited(hour));
        audit_suite(&audited, "aud").await;
    }
    if cluster {
        assert!(
            !long.can_link(),
            "a channel and its member live in different slots"
        );
    } else {
        link_suite(long, "conf").await;
    }
    ttl_suite(&short, "conf").await;
    history_suite(&kept, "conf").await;
    // Every key the suite wrote carries a TTL (never a key that lives forever).
    let mut seen = 0;
    for port in ports {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let names: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        seen += names.len();
        for name in names {
            // The audit stream is bounded by length (MAXLEN ~), not TTL.
            if name.ends_with(b":audit}") {
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
    assert!(seen > 0);
}

/// `[audit]` on, 100 events kept.
fn audited(ttl: Duration) -> statehold::backend::Retention {
    statehold::backend::Retention {
        lifetimes: ttl.into(),
        history: 0,
        audit: 100,
    }
}
