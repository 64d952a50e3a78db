//! The backend-conformance suite: the record and turn semantics every
//! backend must show (see `src/backend/mod.rs`). Each backend's test file
//! calls [`suite`] with a backend with long TTLs and leases, and
//! [`ttl_suite`] with one whose TTLs are `SHORT_TTL` (on tokio's paused
//! clock where the backend's clock is tokio's, in real time on Redis).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use statehold::backend::{
    Backend, Commit, CommitOutcome, Held, Lifetimes, Loaded, Origin, RecordedResponse, Retention,
    StateChange, StoreError, TurnError,
};
use statehold::key::ConvKey;

/// TTL and dedupe window of the `short` store.
pub const SHORT_TTL: Duration = Duration::from_secs(2);

fn put(json: &str, expected: Option<u64>) -> Commit {
    Commit {
        expected_version: expected,
        change: StateChange::Put(Bytes::copy_from_slice(json.as_bytes())),
        dedupe: None,
        origin: Default::default(),
        audit: None,
        link: None,
    }
}

fn change(change: StateChange, expected: Option<u64>) -> Commit {
    Commit {
        expected_version: expected,
        change,
        dedupe: None,
        origin: Default::default(),
        audit: None,
        link: None,
    }
}

/// Long enough for any turn of the suite that is not meant to wait.
const WAIT: Duration = Duration::from_secs(5);

/// One turn that commits.
async fn commit<B: Backend>(b: &B, key: &ConvKey, c: Commit) -> Result<CommitOutcome, StoreError> {
    let (held, _) = b.begin(key, WAIT, None).await.expect("turn");
    held.finish(c).await
}

/// One turn that only reads (the record and a dedupe lookup).
async fn read<B: Backend>(
    b: &B,
    key: &ConvKey,
    dedupe_id: Option<&str>,
) -> Result<Loaded, TurnError> {
    let (held, loaded) = b.begin(key, WAIT, dedupe_id).await?;
    drop(held);
    Ok(loaded)
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

/// Runs every check in one go (a Cluster, too slow to start per check).
/// `ns` keeps runs against a shared server apart. The other backends run
/// each check as its own test (`tests/it/store_conformance.rs`).
pub async fn suite<B: Backend>(long: Arc<B>, ns: &str) {
    empty_conversation(&*long, ns).await;
    versions_increase(&*long, ns).await;
    stale_version_conflicts(&*long, ns).await;
    keep_refreshes_only(&*long, ns).await;
    clear_keeps_a_tombstone(&*long, ns).await;
    forget_removes_the_record(&*long, ns).await;
    dedupe_records(&*long, ns).await;
    unicode_roundtrip(&*long, ns).await;
    many_concurrent_commits(Arc::clone(&long), ns).await;
    turns_in_arrival_order(Arc::clone(&long), ns).await;
    turn_wait_is_bounded(&*long, ns).await;
    a_cancelled_waiter_gives_its_place_up(Arc::clone(&long), ns).await;
    every_end_of_a_turn_releases_it(&*long, ns).await;
    scan_finds_every_conversation(&*long, ns).await;
}

/// Paging through `scan` finds every stored conversation (for rekey).
pub async fn scan_finds_every_conversation<B: Backend>(s: &B, ns: &str) {
    let ns = format!("{ns}-scan");
    let written: Vec<ConvKey> = (0..120)
        .map(|i| ConvKey::new(&ns, &format!("u{i}}}%")))
        .collect();
    for key in &written {
        commit(s, key, put("{}", Some(0))).await.expect("commit");
    }
    let found = scan_all(s).await;
    for key in &written {
        // A store that hashes key names scans them hashed.
        let stored = s.stored_name(key);
        assert!(found.contains(&stored), "scan missed {key:?}");
    }
}

/// Every key `scan` pages through.
async fn scan_all<B: Backend>(s: &B) -> std::collections::HashSet<ConvKey> {
    let mut found = std::collections::HashSet::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let page = s.scan(cursor, 25).await.expect("scan");
        found.extend(page.keys);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    found
}

pub async fn empty_conversation<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "empty");
    let loaded = read(s, &key, Some("u1")).await.expect("load");
    assert_eq!(loaded.version, 0);
    assert_eq!(loaded.state, None);
    assert_eq!(loaded.duplicate, None);
    assert_eq!(loaded.visible_version(), 0);
    s.ping().await.expect("ping");
    assert_eq!(
        s.load(&key).await.expect("load outside a turn"),
        Loaded::default()
    );
}

pub async fn versions_increase<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "versions");
    assert_eq!(
        committed(
            commit(s, &key, put(r#"{"step":1}"#, Some(0)))
                .await
                .unwrap()
        ),
        1
    );
    assert_eq!(
        committed(
            commit(s, &key, put(r#"{"step":2}"#, Some(1)))
                .await
                .unwrap()
        ),
        2
    );
    let loaded = read(s, &key, None).await.unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.state.as_deref(), Some(&br#"{"step":2}"#[..]));
    // Unconditional writes (admin API) also bump the version.
    assert_eq!(
        committed(commit(s, &key, put(r#"{"step":3}"#, None)).await.unwrap()),
        3
    );
}

pub async fn stale_version_conflicts<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "conflict");
    committed(commit(s, &key, put(r#"{"a":1}"#, Some(0))).await.unwrap());
    committed(commit(s, &key, put(r#"{"a":2}"#, Some(1))).await.unwrap());
    // A writer that loaded version 1 is too late.
    let outcome = commit(s, &key, put(r#"{"a":"stale"}"#, Some(1)))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Conflict { current: 2 });
    let loaded = read(s, &key, None).await.unwrap();
    assert_eq!(
        loaded.state.as_deref(),
        Some(&br#"{"a":2}"#[..]),
        "the newer snapshot stays"
    );
}

pub async fn keep_refreshes_only<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "keep");
    committed(commit(s, &key, put(r#"{"k":1}"#, Some(0))).await.unwrap());
    assert_eq!(
        committed(
            commit(s, &key, change(StateChange::Keep, Some(1)))
                .await
                .unwrap()
        ),
        1
    );
    let loaded = read(s, &key, None).await.unwrap();
    assert_eq!(
        (loaded.version, loaded.state.as_deref()),
        (1, Some(&br#"{"k":1}"#[..]))
    );
    // Keep on nothing creates nothing.
    let none = ConvKey::new(ns, "keep-none");
    commit(s, &none, change(StateChange::Keep, Some(0)))
        .await
        .unwrap();
    assert_eq!(read(s, &none, None).await.unwrap().version, 0);
}

pub async fn clear_keeps_a_tombstone<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "clear");
    committed(commit(s, &key, put(r#"{"c":1}"#, Some(0))).await.unwrap());
    assert_eq!(
        committed(
            commit(s, &key, change(StateChange::Clear, Some(1)))
                .await
                .unwrap()
        ),
        2
    );
    let loaded = read(s, &key, None).await.unwrap();
    assert_eq!(loaded.state, None);
    assert_eq!(loaded.version, 2, "the version survives a clear");
    assert_eq!(loaded.visible_version(), 0);
    // A writer based on the pre-clear version conflicts.
    assert_eq!(
        commit(s, &key, put(r#"{"c":"late"}"#, Some(1)))
            .await
            .unwrap(),
        CommitOutcome::Conflict { current: 2 }
    );
    assert_eq!(
        committed(commit(s, &key, put(r#"{"c":2}"#, Some(2))).await.unwrap()),
        3
    );
    // Clearing nothing stores nothing.
    let none = ConvKey::new(ns, "clear-none");
    commit(s, &none, change(StateChange::Clear, Some(0)))
        .await
        .unwrap();
    assert_eq!(read(s, &none, None).await.unwrap().version, 0);
}

/// `Forget` (migrate's removal of a moved plaintext key): the record is
/// gone, version included, and the key no longer scans; a stale forget
/// conflicts.
pub async fn forget_removes_the_record<B: Backend>(s: &B, ns: &str) {
    let ns = format!("{ns}-forget");
    let key = ConvKey::new(&ns, "gone");
    committed(commit(s, &key, put(r#"{"f":1}"#, Some(0))).await.unwrap());
    assert_eq!(
        commit(s, &key, change(StateChange::Forget, Some(7)))
            .await
            .unwrap(),
        CommitOutcome::Conflict { current: 1 }
    );
    commit(s, &key, change(StateChange::Forget, Some(1)))
        .await
        .unwrap();
    assert_eq!(read(s, &key, None).await.unwrap(), Loaded::default());
    assert!(!scan_all(s).await.contains(&key), "a forgotten key scans");
    // Written again, it starts over at version 1.
    assert_eq!(
        committed(commit(s, &key, put(r#"{"f":2}"#, Some(0))).await.unwrap()),
        1
    );
}

pub async fn dedupe_records<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "dedupe");
    let mut c = put(r#"{"d":1}"#, Some(0));
    c.dedupe = Some(("upd-1".into(), recorded(r#"{"text":"first"}"#)));
    committed(commit(s, &key, c).await.unwrap());
    let loaded = read(s, &key, Some("upd-1")).await.unwrap();
    assert_eq!(loaded.duplicate, Some(recorded(r#"{"text":"first"}"#)));
    assert_eq!(loaded.state.as_deref(), Some(&br#"{"d":1}"#[..]));
    assert_eq!(read(s, &key, Some("upd-2")).await.unwrap().duplicate, None);
    // Records are per conversation.
    let other = ConvKey::new(ns, "dedupe-other");
    assert_eq!(
        read(s, &other, Some("upd-1")).await.unwrap().duplicate,
        None
    );
    // The first record is never overwritten.
    let mut again = change(StateChange::Keep, Some(1));
    again.dedupe = Some(("upd-1".into(), recorded(r#"{"text":"second"}"#)));
    committed(commit(s, &key, again).await.unwrap());
    let loaded = read(s, &key, Some("upd-1")).await.unwrap();
    assert_eq!(loaded.duplicate, Some(recorded(r#"{"text":"first"}"#)));
    // A conflicting commit writes no record either.
    let mut stale = put(r#"{"d":"stale"}"#, Some(0));
    stale.dedupe = Some(("upd-3".into(), recorded("{}")));
    assert!(matches!(
        commit(s, &key, stale).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    assert_eq!(read(s, &key, Some("upd-3")).await.unwrap().duplicate, None);
}

pub async fn unicode_roundtrip<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(ns, "üñí:cødé/with spaces");
    let json = r#"{"name":"Zoë 🚀","n":[1,2.5,null,true],"nested":{"a":"\u0000"}}"#;
    committed(commit(s, &key, put(json, Some(0))).await.unwrap());
    assert_eq!(
        read(s, &key, None).await.unwrap().state.as_deref(),
        Some(json.as_bytes())
    );
}

pub async fn many_concurrent_commits<B: Backend>(s: Arc<B>, ns: &str) {
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = Arc::clone(&s);
            let key = ConvKey::new(ns, &format!("many-{i}"));
            tokio::spawn(
                async move { commit(&*s, &key, put(&format!("{{\"i\":{i}}}"), Some(0))).await },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(committed(t.await.unwrap().unwrap()), 1);
    }
    for i in (0..200).step_by(37) {
        let key = ConvKey::new(ns, &format!("many-{i}"));
        let state = read(&*s, &key, None).await.unwrap().state.unwrap();
        assert_eq!(state, format!("{{\"i\":{i}}}").as_bytes());
    }
}

/// Expiry, sliding TTLs, dedupe windows. Both a read and a commit of the
/// conversation slide its TTL; dedupe records do not slide.
pub async fn ttl_suite<B: Backend>(short: &B, ns: &str) {
    let own = own_lifetime_written(short, ns).await;
    expiry_and_sliding_ttl(short, ns).await;
    own_lifetime_kept(short, &own).await;
}

/// What [`history_suite`]'s backend keeps: 3 versions of each
/// conversation, living `ttl`.
pub fn keeping(ttl: Duration) -> Retention {
    Retention {
        lifetimes: ttl.into(),
        history: 3,
        audit: 0,
    }
}

/// `store.history = 3`: the last three versions, newest first, each with
/// its kind and snapshot (a clear has none); a `Keep` adds none; a
/// forgotten conversation has no history left.
pub async fn history_suite<B: Backend>(s: &B, ns: &str) {
    let key = ConvKey::new(&format!("{ns}-hist"), "h");
    let steps: [(StateChange, Origin); 5] = [
        (
            StateChange::Put(Bytes::from_static(b"{\"h\":1}")),
            Origin::Bot,
        ),
        (
            StateChange::Put(Bytes::from_static(b"{\"h\":2}")),
            Origin::Admin,
        ),
        (StateChange::Clear, Origin::Bot),
        (
            StateChange::Put(Bytes::from_static(b"{\"h\":2}")),
            Origin::Rollback,
        ),
        (
            StateChange::Put(Bytes::from_static(b"{\"h\":5}")),
            Origin::Bot,
        ),
    ];
    for (i, (step, origin)) in steps.into_iter().enumerate() {
        let mut c = change(step, Some(i as u64));
        c.origin = origin;
        assert_eq!(committed(commit(s, &key, c).await.unwrap()), i as u64 + 1);
    }
    committed(
        commit(s, &key, change(StateChange::Keep, Some(5)))
            .await
            .unwrap(),
    );
    let kept = s.history(&key).await.expect("history");
    let seen: Vec<(u64, &str, Option<&[u8]>)> = kept
        .iter()
        .map(|v| (v.version, v.kind.as_str(), v.state.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (5, "write", Some(&b"{\"h\":5}"[..])),
            (4, "rollback", Some(&b"{\"h\":2}"[..])),
            (3, "clear", None),
        ]
    );
    let now = statehold::backend::now_ms();
    assert!(kept
        .iter()
        .all(|v| v.at_ms <= now && now - v.at_ms < 60_000));
    assert!(s
        .history(&ConvKey::new(ns, "never"))
        .await
        .unwrap()
        .is_empty());
    committed(
        commit(s, &key, change(StateChange::Forget, Some(5)))
            .await
            .unwrap(),
    );
    assert!(s.history(&key).await.unwrap().is_empty(), "forgotten");
}

/// `SHORT_TTL` for every conversation but those of the route (namespace)
/// `<ns>-own`, which live an hour (`route.ttl`).
pub fn short_lifetimes(ns: &str) -> Lifetimes {
    let own = [(format!("{ns}-own"), Duration::from_secs(3600))];
    Lifetimes::new(SHORT_TTL, own.into_iter().collect())
}

/// Conversations of a route with its own lifetime, plain and hashed
/// (`ns#`), written before the short-TTL checks run...
async fn own_lifetime_written<B: Backend>(s: &B, ns: &str) -> Vec<ConvKey> {
    let own = vec![
        ConvKey::new(&format!("{ns}-own"), "long-lived"),
        ConvKey::new(&format!("{ns}-own#"), "Vh3kAbC"),
    ];
    for key in &own {
        committed(commit(s, key, put(r#"{"own":1}"#, Some(0))).await.unwrap());
    }
    own
}

/// ...and still there after them (2.4 short TTLs untouched).
async fn own_lifetime_kept<B: Backend>(s: &B, own: &[ConvKey]) {
    for key in own {
        let loaded = read(s, key, None).await.unwrap();
        assert_eq!(loaded.version, 1, "{key:?} lives its route's ttl");
    }
}

/// Both a load and a commit of the conversation slide its TTL.
async fn expiry_and_sliding_ttl<B: Backend>(s: &B, ns: &str) {
    let ttl = SHORT_TTL;
    let loaded = ConvKey::new(ns, "slides-by-load");
    let kept = ConvKey::new(ns, "slides-by-commit");
    let fixed = ConvKey::new(ns, "fixed");
    let mut c = put(r#"{"s":1}"#, Some(0));
    c.dedupe = Some(("upd-x".into(), recorded("{}")));
    committed(commit(s, &loaded, c).await.unwrap());
    committed(commit(s, &kept, put(r#"{"k":1}"#, Some(0))).await.unwrap());
    committed(commit(s, &fixed, put(r#"{"f":1}"#, Some(0))).await.unwrap());

    tokio::time::sleep(ttl * 6 / 10).await;
    read(s, &loaded, None).await.unwrap();
    committed(
        commit(s, &kept, change(StateChange::Keep, Some(1)))
            .await
            .unwrap(),
    );
    // 0.6 TTL later the ones never touched since their write are gone.
    tokio::time::sleep(ttl * 6 / 10).await;
    let f = read(s, &fixed, None).await.unwrap();
    assert_eq!(
        (f.version, f.state),
        (0, None),
        "expired snapshot must not be returned"
    );
    let l = read(s, &loaded, Some("upd-x")).await.unwrap();
    assert_eq!(
        l.state.as_deref(),
        Some(&br#"{"s":1}"#[..]),
        "a load slides the TTL"
    );
    assert_eq!(l.duplicate, None, "dedupe records do not slide");
    let k = read(s, &kept, None).await.unwrap();
    assert_eq!(
        k.state.as_deref(),
        Some(&br#"{"k":1}"#[..]),
        "a commit slides the TTL"
    );
    // An expired record does not come back through a Keep.
    commit(s, &fixed, change(StateChange::Keep, Some(0)))
        .await
        .unwrap();
    assert_eq!(read(s, &fixed, None).await.unwrap().state, None);

    // Untouched for 1.2 TTL: gone, version included.
    tokio::time::sleep(ttl * 12 / 10).await;
    s.purge_expired().await.expect("purge");
    let l = read(s, &loaded, None).await.unwrap();
    assert_eq!((l.version, l.state), (0, None));
}

/// One turn at a time per conversation, granted in arrival order; other
/// conversations never wait.
pub async fn turns_in_arrival_order<B: Backend>(b: Arc<B>, ns: &str) {
    let key = ConvKey::new(ns, "order");
    let (first, _) = b.begin(&key, WAIT, None).await.expect("turn");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let (mine, key2, order) = (Arc::clone(&b), key.clone(), Arc::clone(&order));
        waiters.push(tokio::spawn(async move {
            let (held, loaded) = mine.begin(&key2, WAIT, None).await.expect("turn");
            order.lock().unwrap().push(i);
            let c = put(&format!("{{\"i\":{i}}}"), Some(loaded.version));
            committed(held.finish(c).await.expect("commit"));
        }));
        // Each waiter queues before the next one starts (arrival order).
        wait_until_queued(&*b, &key).await;
    }
    let other = ConvKey::new(ns, "order-other");
    let (not_blocked, _) = b
        .begin(&other, Duration::from_millis(200), None)
        .await
        .expect("another conversation does not wait");
    drop(not_blocked);
    drop(first);
    for w in waiters {
        w.await.expect("waiter");
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    let last = read(&*b, &key, None).await.unwrap();
    assert_eq!(
        (last.version, last.state.as_deref()),
        (4, Some(&br#"{"i":3}"#[..]))
    );
}

/// Lets a just-spawned waiter reach the backend's queue: a turn attempt
/// with a tiny wait is queued behind it and times out, so once it returned
/// every earlier waiter was queued (both backends serve in arrival order).
async fn wait_until_queued<B: Backend>(b: &B, key: &ConvKey) {
    tokio::task::yield_now().await;
    let probe = b.begin(key, Duration::from_millis(200), None).await;
    assert!(
        matches!(probe, Err(TurnError::WaitExceeded(_))),
        "the conversation is busy"
    );
}

pub async fn turn_wait_is_bounded<B: Backend>(b: &B, ns: &str) {
    let key = ConvKey::new(ns, "bounded");
    let (held, _) = b.begin(&key, WAIT, None).await.expect("turn");
    let waited = b.begin(&key, Duration::from_millis(100), None).await;
    assert!(matches!(waited, Err(TurnError::WaitExceeded(_))));
    drop(held);
    b.begin(&key, WAIT, None).await.expect("free again");
}

/// A request dropped while waiting (its client went away) leaves the queue
/// at once: the next request gets the turn without waiting out a lease.
pub async fn a_cancelled_waiter_gives_its_place_up<B: Backend>(b: Arc<B>, ns: &str) {
    let key = ConvKey::new(ns, "cancelled");
    let (held, _) = b.begin(&key, WAIT, None).await.expect("turn");
    let waiter = {
        let (b, key) = (Arc::clone(&b), key.clone());
        tokio::spawn(async move {
            b.begin(&key, Duration::from_secs(3600), None)
                .await
                .map(|_| ())
        })
    };
    wait_until_queued(&*b, &key).await;
    waiter.abort();
    assert!(waiter.await.is_err_and(|e| e.is_cancelled()));
    drop(held);
    // The long backend's lease is an hour: only a released place lets this in.
    b.begin(&key, WAIT, None)
        .await
        .expect("the cancelled waiter's place was given up");
}

/// A finished turn, a dropped one and one whose commit conflicted all
/// release the conversation.
pub async fn every_end_of_a_turn_releases_it<B: Backend>(b: &B, ns: &str) {
    let key = ConvKey::new(ns, "ends");
    let short = Duration::from_secs(2);
    let (held, _) = b.begin(&key, short, None).await.expect("turn");
    committed(held.finish(put("{}", Some(0))).await.unwrap());
    let (held, _) = b
        .begin(&key, short, None)
        .await
        .expect("free after a commit");
    let outcome = held.finish(put("{}", Some(0))).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Conflict { current: 1 });
    let (held, loaded) = b
        .begin(&key, short, None)
        .await
        .expect("free after a conflict");
    assert_eq!(loaded.version, 1);
    drop(held);
    b.begin(&key, short, None).await.expect("free after a drop");
}
