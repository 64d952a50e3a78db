//! Links (`src/backend/link.rs`) as every backend that can link must keep
//! them: a channel resolved to its member atomically with the turn, one
//! level only, shared dedupe records, unlinking, waiters that re-resolve,
//! and links that go with their member's record.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use statehold::backend::{
    Backend, Commit, CommitOutcome, Held, LinkChange, Loaded, RecordedResponse, StateChange,
};
use statehold::key::ConvKey;

const WAIT: Duration = Duration::from_secs(5);

fn commit(json: Option<&str>, expected: u64, link: Option<LinkChange>) -> Commit {
    Commit {
        expected_version: Some(expected),
        change: json.map_or(StateChange::Keep, |j| {
            StateChange::Put(Bytes::copy_from_slice(j.as_bytes()))
        }),
        dedupe: None,
        origin: Default::default(),
        audit: None,
        link: link.map(Box::new),
    }
}

async fn read<B: Backend>(b: &B, key: &ConvKey, dedupe: Option<&str>) -> Loaded {
    let (held, loaded) = b.begin(key, WAIT, dedupe).await.expect("turn");
    drop(held);
    loaded
}

/// Links `channel` to `member` the way the request path does: holding the
/// channel's turn, then the member's, committing on the member.
async fn link<B: Backend>(b: &B, channel: &ConvKey, member: &ConvKey) -> CommitOutcome {
    let (channel_turn, _) = b.begin(channel, WAIT, None).await.expect("channel turn");
    let (held, loaded) = b.begin(member, WAIT, None).await.expect("member turn");
    let link = LinkChange::Link(channel.clone());
    let outcome = held
        .finish(commit(None, loaded.version, Some(link)))
        .await
        .expect("commit");
    drop(channel_turn);
    outcome
}

pub async fn link_suite<B: Backend>(b: Arc<B>, ns: &str) {
    let member = ConvKey::new(&format!("{ns}-member"), "42");
    let (wa, web) = (ConvKey::new(ns, "wa-1"), ConvKey::new(ns, "web-1"));
    // A member without a record yet, linked from two channels.
    assert!(matches!(
        link(&*b, &wa, &member).await,
        CommitOutcome::Committed { version: 0 }
    ));
    assert!(matches!(
        link(&*b, &web, &member).await,
        CommitOutcome::Committed { .. }
    ));
    let links = b.links(&member).await.expect("links");
    assert_eq!(links.member, None);
    assert_eq!(links.channels, vec![wa.clone(), web.clone()]);
    assert_eq!(b.links(&wa).await.unwrap().member, Some(member.clone()));

    // Either channel reaches the member's record, and writes it.
    let (held, loaded) = b.begin(&wa, WAIT, None).await.expect("turn");
    assert_eq!(loaded.member, Some(member.clone()));
    assert_eq!(loaded.version, 0);
    let dedupe = Some(("u-1".to_string(), recorded()));
    let mut c = commit(Some(r#"{"stage":"AUTH"}"#), 0, None);
    c.dedupe = dedupe;
    assert_eq!(
        held.finish(c).await.unwrap(),
        CommitOutcome::Committed { version: 1 }
    );
    let via_web = read(&*b, &web, Some("u-1")).await;
    assert_eq!(via_web.member, Some(member.clone()));
    assert_eq!(via_web.state.as_deref(), Some(&br#"{"stage":"AUTH"}"#[..]));
    assert!(
        via_web.duplicate.is_some(),
        "dedupe records are the member's"
    );
    let direct = read(&*b, &member, Some("u-1")).await;
    assert_eq!(
        (direct.member, direct.version, direct.linked),
        (None, 1, true)
    );
    assert!(direct.duplicate.is_some());

    // One turn for all: a channel waits while the member is held.
    let (held, _) = b.begin(&member, WAIT, None).await.unwrap();
    let busy = b.begin(&web, Duration::from_millis(200), None).await;
    assert!(busy.is_err(), "the channel waits for its member's turn");
    drop(held);

    one_level_only(&*b, ns, &member, &wa).await;
    waiters_re_resolve(Arc::clone(&b), ns).await;

    // Unlinked (through the channel, under the member's turn): the channel
    // is its own conversation again; the other stays linked.
    let (held, loaded) = b.begin(&wa, WAIT, None).await.unwrap();
    let c = commit(None, loaded.version, Some(LinkChange::Unlink(wa.clone())));
    assert!(matches!(
        held.finish(c).await.unwrap(),
        CommitOutcome::Committed { .. }
    ));
    let own = read(&*b, &wa, None).await;
    assert_eq!((own.member, own.version), (None, 0));
    assert_eq!(read(&*b, &web, None).await.member, Some(member.clone()));
    assert_eq!(b.links(&member).await.unwrap().channels, vec![web.clone()]);
}

/// A member is never a channel, and a channel never gets channels.
async fn one_level_only<B: Backend>(b: &B, ns: &str, member: &ConvKey, channel: &ConvKey) {
    let other = ConvKey::new(ns, "other-member");
    // The member as someone's channel: refused.
    let (held, loaded) = b.begin(&other, WAIT, None).await.unwrap();
    let c = commit(None, loaded.version, Some(LinkChange::Link(member.clone())));
    assert!(matches!(
        held.finish(c).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    // A linked channel relinked elsewhere: refused.
    let (held, loaded) = b.begin(&other, WAIT, None).await.unwrap();
    let c = commit(
        None,
        loaded.version,
        Some(LinkChange::Link(channel.clone())),
    );
    assert!(matches!(
        held.finish(c).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    assert_eq!(
        b.links(&other).await.unwrap().channels,
        Vec::<ConvKey>::new()
    );
    assert_eq!(read(b, channel, None).await.member.as_ref(), Some(member));
}

/// A request queued on a channel's own turn while the channel is linked
/// moves to the member's turn once its turn comes.
async fn waiters_re_resolve<B: Backend>(b: Arc<B>, ns: &str) {
    let member = ConvKey::new(&format!("{ns}-member"), "77");
    let channel = ConvKey::new(ns, "sms-7");
    let (channel_turn, _) = b.begin(&channel, WAIT, None).await.unwrap();
    let waiter = {
        let (b, channel) = (Arc::clone(&b), channel.clone());
        tokio::spawn(async move { read(&*b, &channel, None).await })
    };
    // Queued behind the waiter, a probe times out: the waiter is queued.
    tokio::task::yield_now().await;
    let probe = b.begin(&channel, Duration::from_millis(200), None).await;
    assert!(probe.is_err(), "the channel is busy");
    let (held, loaded) = b.begin(&member, WAIT, None).await.unwrap();
    let c = commit(
        Some(r#"{"m":1}"#),
        loaded.version,
        Some(LinkChange::Link(channel.clone())),
    );
    assert!(matches!(
        held.finish(c).await.unwrap(),
        CommitOutcome::Committed { version: 1 }
    ));
    drop(channel_turn);
    let seen = waiter.await.unwrap();
    assert_eq!(seen.member, Some(member));
    assert_eq!(seen.state.as_deref(), Some(&br#"{"m":1}"#[..]));
}

fn recorded() -> RecordedResponse {
    RecordedResponse {
        status: http::StatusCode::OK,
        headers: vec![],
        body: Bytes::from_static(b"ok"),
        request_digest: Some([7; 32]),
    }
}
