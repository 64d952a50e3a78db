//! The backend-conformance suite on the embedded store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use statehold::store::embedded::EmbeddedStore;
use statehold::store::Store;
use support::conformance::{suite, SHORT_TTL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_conforms() {
    let dir = support::temp_dir();
    let hour = Duration::from_secs(3600);
    let long =
        EmbeddedStore::open(&dir.path().join("long.db"), hour, hour, 32 << 20).expect("open");
    let short = EmbeddedStore::open(&dir.path().join("short.db"), SHORT_TTL, SHORT_TTL, 32 << 20)
        .expect("open");
    suite(Arc::new(long), Arc::new(short), "conf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_purge_deletes_what_expired() {
    let dir = support::temp_dir();
    let ttl = Duration::from_millis(300);
    let store = EmbeddedStore::open(&dir.path().join("p.db"), ttl, ttl, 32 << 20).expect("open");
    for i in 0..50 {
        let key = statehold::key::ConvKey::new("p", &i.to_string());
        let commit = statehold::store::Commit {
            expected_version: Some(0),
            fence: 0,
            change: statehold::store::StateChange::Put(bytes::Bytes::from_static(b"{}")),
            dedupe: Some((
                format!("u{i}"),
                statehold::store::RecordedResponse {
                    status: http::StatusCode::OK,
                    headers: vec![],
                    body: bytes::Bytes::new(),
                    request_digest: None,
                },
            )),
            ends_turn: false,
        };
        store.commit(&key, commit).await.expect("commit");
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
    let _first = EmbeddedStore::open(&path, hour, hour, 32 << 20).expect("open");
    let second = EmbeddedStore::open(&path, hour, hour, 32 << 20);
    let msg = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("already opened"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    use statehold::redis_conn::RedisConn;
    use statehold::store::redis::RedisStore;
    let dir = support::temp_dir();
    let redis = support::RedisServer::start(dir.path(), false);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let timeout = Duration::from_secs(2);
    let hour = Duration::from_secs(3600);
    let long = RedisStore::new(
        RedisConn::new(&url, None, timeout, "long", (3, Duration::from_secs(1))).unwrap(),
        hour,
        hour,
        hour,
    );
    let short = RedisStore::new(
        RedisConn::new(&url, None, timeout, "short", (3, Duration::from_secs(1))).unwrap(),
        SHORT_TTL,
        SHORT_TTL,
        hour,
    );
    suite(Arc::new(long), Arc::new(short), "conf").await;
    // Every key the suite wrote carries a TTL (never a key that lives forever).
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let names: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(!names.is_empty());
    for name in names {
        let ttl: i64 = redis::cmd("PTTL").arg(&name).query(&mut con).unwrap();
        assert!(
            ttl > 0,
            "{} has no TTL ({ttl})",
            String::from_utf8_lossy(&name)
        );
    }
}
