//! The backend-conformance suite: the `Store` semantics every backend must
//! show (see `src/store/mod.rs`). Each backend's test file calls [`suite`]
//! with two stores: one with long TTLs and one with `SHORT_TTL` TTLs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use statehold::key::ConvKey;
use statehold::store::{Commit, CommitOutcome, RecordedResponse, StateChange, Store};

/// TTL and dedupe window of the `short` store.
pub const SHORT_TTL: Duration = Duration::from_secs(2);

fn put(json: &str, expected: Option<u64>) -> Commit {
    Commit {
        expected_version: expected,
        fence: 0,
        change: StateChange::Put(Bytes::copy_from_slice(json.as_bytes())),
        dedupe: None,
        ends_turn: false,
    }
}

fn change(change: StateChange, expected: Option<u64>) -> Commit {
    Commit {
        expected_version: expected,
        fence: 0,
        change,
        dedupe: None,
        ends_turn: false,
    }
}

fn recorded(body: &str) -> RecordedResponse {
    RecordedResponse {
        status: StatusCode::OK,
        headers: vec![(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        )],
        body: Bytes::copy_from_slice(body.as_bytes()),
        request_digest: Some([1; 32]),
    }
}

fn committed(outcome: CommitOutcome) -> u64 {
    match outcome {
        CommitOutcome::Committed { version } => version,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Runs every check. `ns` keeps runs against a shared server apart.
pub async fn suite<S: Store>(long: Arc<S>, short: Arc<S>, ns: &str) {
    empty_conversation(&*long, ns).await;
    versions_increase(&*long, ns).await;
    stale_version_conflicts(&*long, ns).await;
    keep_refreshes_only(&*long, ns).await;
    clear_keeps_a_tombstone(&*long, ns).await;
    dedupe_records(&*long, ns).await;
    unicode_roundtrip(&*long, ns).await;
    many_concurrent_commits(Arc::clone(&long), ns).await;
    expiry_and_sliding_ttl(&*short, ns).await;
}

async fn empty_conversation<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "empty");
    let loaded = s.load(&key, Some("u1")).await.expect("load");
    assert_eq!(loaded.version, 0);
    assert_eq!(loaded.state, None);
    assert_eq!(loaded.duplicate, None);
    assert_eq!(loaded.visible_version(), 0);
    s.ping().await.expect("ping");
}

async fn versions_increase<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "versions");
    assert_eq!(
        committed(s.commit(&key, put(r#"{"step":1}"#, Some(0))).await.unwrap()),
        1
    );
    assert_eq!(
        committed(s.commit(&key, put(r#"{"step":2}"#, Some(1))).await.unwrap()),
        2
    );
    let loaded = s.load(&key, None).await.unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.state.as_deref(), Some(&br#"{"step":2}"#[..]));
    // Unconditional writes (admin API) also bump the version.
    assert_eq!(
        committed(s.commit(&key, put(r#"{"step":3}"#, None)).await.unwrap()),
        3
    );
}

async fn stale_version_conflicts<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "conflict");
    committed(s.commit(&key, put(r#"{"a":1}"#, Some(0))).await.unwrap());
    committed(s.commit(&key, put(r#"{"a":2}"#, Some(1))).await.unwrap());
    // A writer that loaded version 1 is too late.
    let outcome = s
        .commit(&key, put(r#"{"a":"stale"}"#, Some(1)))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Conflict { current: 2 });
    let loaded = s.load(&key, None).await.unwrap();
    assert_eq!(
        loaded.state.as_deref(),
        Some(&br#"{"a":2}"#[..]),
        "the newer snapshot stays"
    );
}

async fn keep_refreshes_only<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "keep");
    committed(s.commit(&key, put(r#"{"k":1}"#, Some(0))).await.unwrap());
    assert_eq!(
        committed(
            s.commit(&key, change(StateChange::Keep, Some(1)))
                .await
                .unwrap()
        ),
        1
    );
    let loaded = s.load(&key, None).await.unwrap();
    assert_eq!(
        (loaded.version, loaded.state.as_deref()),
        (1, Some(&br#"{"k":1}"#[..]))
    );
    // Keep on nothing creates nothing.
    let none = ConvKey::new(ns, "keep-none");
    s.commit(&none, change(StateChange::Keep, Some(0)))
        .await
        .unwrap();
    assert_eq!(s.load(&none, None).await.unwrap().version, 0);
}

async fn clear_keeps_a_tombstone<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "clear");
    committed(s.commit(&key, put(r#"{"c":1}"#, Some(0))).await.unwrap());
    assert_eq!(
        committed(
            s.commit(&key, change(StateChange::Clear, Some(1)))
                .await
                .unwrap()
        ),
        2
    );
    let loaded = s.load(&key, None).await.unwrap();
    assert_eq!(loaded.state, None);
    assert_eq!(loaded.version, 2, "the version survives a clear");
    assert_eq!(loaded.visible_version(), 0);
    // A writer based on the pre-clear version conflicts.
    assert_eq!(
        s.commit(&key, put(r#"{"c":"late"}"#, Some(1)))
            .await
            .unwrap(),
        CommitOutcome::Conflict { current: 2 }
    );
    assert_eq!(
        committed(s.commit(&key, put(r#"{"c":2}"#, Some(2))).await.unwrap()),
        3
    );
    // Clearing nothing stores nothing.
    let none = ConvKey::new(ns, "clear-none");
    s.commit(&none, change(StateChange::Clear, Some(0)))
        .await
        .unwrap();
    assert_eq!(s.load(&none, None).await.unwrap().version, 0);
}

async fn dedupe_records<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "dedupe");
    let mut c = put(r#"{"d":1}"#, Some(0));
    c.dedupe = Some(("upd-1".into(), recorded(r#"{"text":"first"}"#)));
    committed(s.commit(&key, c).await.unwrap());
    let loaded = s.load(&key, Some("upd-1")).await.unwrap();
    assert_eq!(loaded.duplicate, Some(recorded(r#"{"text":"first"}"#)));
    assert_eq!(loaded.state.as_deref(), Some(&br#"{"d":1}"#[..]));
    assert_eq!(s.load(&key, Some("upd-2")).await.unwrap().duplicate, None);
    // Records are per conversation.
    let other = ConvKey::new(ns, "dedupe-other");
    assert_eq!(s.load(&other, Some("upd-1")).await.unwrap().duplicate, None);
    // The first record is never overwritten.
    let mut again = change(StateChange::Keep, Some(1));
    again.dedupe = Some(("upd-1".into(), recorded(r#"{"text":"second"}"#)));
    committed(s.commit(&key, again).await.unwrap());
    let loaded = s.load(&key, Some("upd-1")).await.unwrap();
    assert_eq!(loaded.duplicate, Some(recorded(r#"{"text":"first"}"#)));
    // A conflicting commit writes no record either.
    let mut stale = put(r#"{"d":"stale"}"#, Some(0));
    stale.dedupe = Some(("upd-3".into(), recorded("{}")));
    assert!(matches!(
        s.commit(&key, stale).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    assert_eq!(s.load(&key, Some("upd-3")).await.unwrap().duplicate, None);
}

async fn unicode_roundtrip<S: Store>(s: &S, ns: &str) {
    let key = ConvKey::new(ns, "üñí:cødé/with spaces");
    let json = r#"{"name":"Zoë 🚀","n":[1,2.5,null,true],"nested":{"a":"\u0000"}}"#;
    committed(s.commit(&key, put(json, Some(0))).await.unwrap());
    assert_eq!(
        s.load(&key, None).await.unwrap().state.as_deref(),
        Some(json.as_bytes())
    );
}

async fn many_concurrent_commits<S: Store>(s: Arc<S>, ns: &str) {
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = Arc::clone(&s);
            let key = ConvKey::new(ns, &format!("many-{i}"));
            tokio::spawn(async move {
                s.commit(&key, put(&format!("{{\"i\":{i}}}"), Some(0)))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(committed(t.await.unwrap().unwrap()), 1);
    }
    for i in (0..200).step_by(37) {
        let key = ConvKey::new(ns, &format!("many-{i}"));
        let state = s.load(&key, None).await.unwrap().state.unwrap();
        assert_eq!(state, format!("{{\"i\":{i}}}").as_bytes());
    }
}

/// Uses real time: the TTL under test is wall-clock by nature. Both a load
/// and a commit of the conversation slide its TTL.
async fn expiry_and_sliding_ttl<S: Store>(s: &S, ns: &str) {
    let ttl = SHORT_TTL;
    let loaded = ConvKey::new(ns, "slides-by-load");
    let kept = ConvKey::new(ns, "slides-by-commit");
    let fixed = ConvKey::new(ns, "fixed");
    let mut c = put(r#"{"s":1}"#, Some(0));
    c.dedupe = Some(("upd-x".into(), recorded("{}")));
    committed(s.commit(&loaded, c).await.unwrap());
    committed(s.commit(&kept, put(r#"{"k":1}"#, Some(0))).await.unwrap());
    committed(s.commit(&fixed, put(r#"{"f":1}"#, Some(0))).await.unwrap());

    tokio::time::sleep(ttl * 6 / 10).await;
    s.load(&loaded, None).await.unwrap();
    committed(
        s.commit(&kept, change(StateChange::Keep, Some(1)))
            .await
            .unwrap(),
    );
    // 0.6 TTL later the ones never touched since their write are gone.
    tokio::time::sleep(ttl * 6 / 10).await;
    let f = s.load(&fixed, None).await.unwrap();
    assert_eq!(
        (f.version, f.state),
        (0, None),
        "expired snapshot must not be returned"
    );
    let l = s.load(&loaded, Some("upd-x")).await.unwrap();
    assert_eq!(
        l.state.as_deref(),
        Some(&br#"{"s":1}"#[..]),
        "a load slides the TTL"
    );
    assert_eq!(l.duplicate, None, "dedupe records do not slide");
    let k = s.load(&kept, None).await.unwrap();
    assert_eq!(
        k.state.as_deref(),
        Some(&br#"{"k":1}"#[..]),
        "a commit slides the TTL"
    );
    // An expired record does not come back through a Keep.
    s.commit(&fixed, change(StateChange::Keep, Some(0)))
        .await
        .unwrap();
    assert_eq!(s.load(&fixed, None).await.unwrap().state, None);

    // Untouched for 1.2 TTL: gone, version included.
    tokio::time::sleep(ttl * 12 / 10).await;
    s.purge_expired().await.expect("purge");
    let l = s.load(&loaded, None).await.unwrap();
    assert_eq!((l.version, l.state), (0, None));
}
