//! Deferred turns, on every backend (issue 19): a deferred turn stays held
//! (later turns wait) with its answer's dedupe record written; its report
//! commits under the turn's fence; a timed-out (released) turn takes no
//! report; on a shared store another replica adopts the turn by its token,
//! once, and only with the right token.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use statehold::backend::{
    Adoption, Backend, Commit, CommitOutcome, Held, Origin, RecordedResponse, StateChange,
    TurnError, TurnToken,
};
use statehold::key::ConvKey;

const WAIT: Duration = Duration::from_secs(5);
const WITHIN: Duration = Duration::from_secs(30);

fn put(json: &str, expected: u64) -> Commit {
    Commit {
        expected_version: Some(expected),
        change: StateChange::Put(Bytes::copy_from_slice(json.as_bytes())),
        dedupe: None,
        origin: Origin::Bot,
        audit: None,
        link: None,
    }
}

fn answer() -> RecordedResponse {
    RecordedResponse {
        status: StatusCode::OK,
        headers: vec![],
        body: Bytes::from_static(b"{\"ok\":true}"),
        request_digest: Some([9; 32]),
    }
}

/// `other`: a second replica on the same store (`None` for a store only
/// one process uses: its turns are only ever reported to that process).
pub async fn deferral_suite<B: Backend>(b: &B, other: Option<&B>, ns: &str) {
    // A deferred turn holds; its dedupe record answers at once.
    let key = ConvKey::new(ns, "held");
    let (mut held, loaded) = b.begin(&key, WAIT, Some("u1")).await.expect("turn");
    assert_eq!(loaded.version, 0);
    let token = TurnToken::mint(0, 1, held.stored_key()).expect("token");
    assert_eq!(token.key(), &key);
    held.defer(&token, Some(("u1".into(), answer())), WITHIN)
        .await
        .expect("defer");
    let busy = b.begin(&key, Duration::from_millis(300), None).await;
    assert!(
        matches!(busy, Err(TurnError::WaitExceeded(_))),
        "a deferred turn is still held"
    );
    // The late report, on the holding replica: fenced like any commit.
    let saved = held.finish(put(r#"{"step":2}"#, 0)).await.expect("report");
    assert_eq!(saved, CommitOutcome::Committed { version: 1 });
    let (next, loaded) = b.begin(&key, WAIT, Some("u1")).await.expect("next");
    drop(next);
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state.as_deref(), Some(&br#"{"step":2}"#[..]));
    assert_eq!(
        loaded.duplicate.map(|d| d.body),
        Some(answer().body),
        "the deferred answer answers its redelivery"
    );

    // A turn released without a report (its timeout): nothing adopts it.
    let key = ConvKey::new(ns, "timeout");
    let (mut held, _) = b.begin(&key, WAIT, None).await.expect("turn");
    let token = TurnToken::mint(0, 1, held.stored_key()).expect("token");
    held.defer(&token, None, WITHIN).await.expect("defer");
    drop(held);
    let (next, loaded) = b.begin(&key, WAIT, None).await.expect("released");
    drop(next);
    assert_eq!(loaded.version, 0);
    let replica = other.unwrap_or(b);
    assert!(unknown(replica, &token).await);

    // A report that overtook its deferral: the turn is held, not deferred.
    let key = ConvKey::new(ns, "early");
    let (held, _) = b.begin(&key, WAIT, None).await.expect("turn");
    let token = TurnToken::mint(0, 1, held.stored_key()).expect("token");
    let early = replica.adopt(&token).await.expect("adopt");
    assert!(matches!(early, Adoption::Pending), "held, not deferred yet");
    drop(held);
    wait_for(|| async { unknown(replica, &token).await }).await;

    let Some(other) = other else {
        return; // in-process turns are reported to their own process
    };

    // Another replica adopts the turn by its token, once.
    let key = ConvKey::new(ns, "remote");
    let (mut held, _) = b.begin(&key, WAIT, Some("u7")).await.expect("turn");
    let token = TurnToken::mint(3, 1, held.stored_key()).expect("token");
    held.defer(&token, Some(("u7".into(), answer())), WITHIN)
        .await
        .expect("defer");
    let forged = TurnToken::mint(3, 1, &key).expect("token");
    assert!(
        unknown(other, &forged).await,
        "another secret for the same conversation is no token"
    );
    let Adoption::Adopted(adopted, loaded) = other.adopt(&token).await.expect("adopt") else {
        panic!("the deferred turn is adopted");
    };
    assert_eq!(loaded.version, 0);
    assert!(unknown(other, &token).await, "a token is adopted once");
    let saved = adopted
        .finish(put(r#"{"step":"remote"}"#, 0))
        .await
        .expect("report");
    assert_eq!(saved, CommitOutcome::Committed { version: 1 });
    // The holder learns the turn ended elsewhere, and lets go.
    tokio::time::timeout(Duration::from_secs(10), held.lost())
        .await
        .expect("the holder hears that its turn ended");
    drop(held);
    let (next, loaded) = b.begin(&key, WAIT, Some("u7")).await.expect("next");
    drop(next);
    assert_eq!(loaded.version, 1);
    assert!(loaded.duplicate.is_some());

    // An adopted turn dropped without a commit (the rules refused the
    // report) ends the turn all the same.
    let key = ConvKey::new(ns, "refused");
    let (mut held, _) = b.begin(&key, WAIT, None).await.expect("turn");
    let token = TurnToken::mint(0, 1, held.stored_key()).expect("token");
    held.defer(&token, None, WITHIN).await.expect("defer");
    let Adoption::Adopted(adopted, _) = other.adopt(&token).await.expect("adopt") else {
        panic!("adopted");
    };
    drop(adopted);
    let (next, loaded) = b.begin(&key, WAIT, None).await.expect("turn ended");
    drop(next);
    assert_eq!(loaded.version, 0);
    drop(held);
}

async fn unknown<B: Backend>(b: &B, token: &TurnToken) -> bool {
    matches!(b.adopt(token).await.expect("adopt"), Adoption::Unknown)
}

/// A released Redis turn reaches the store off the request path: polls.
async fn wait_for<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out");
}
