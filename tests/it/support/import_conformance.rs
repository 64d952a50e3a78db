//! `statehold import`'s writes and `export`'s reads as every backend must
//! do them (`Origin::Import`, `Backend::dump`): exactly the exported
//! version and lifetime, only over an older record, tombstones too; and,
//! with `[audit]` on, the event each change appends in its atomic step.

use std::time::Duration;

use bytes::Bytes;
use statehold::backend::audit::{AuditNote, AuditQuery};
use statehold::backend::{Backend, Commit, CommitOutcome, Held, LinkChange, Origin, StateChange};
use statehold::key::ConvKey;

const WAIT: Duration = Duration::from_secs(5);

async fn write<B: Backend>(
    b: &B,
    key: &ConvKey,
    change: StateChange,
    origin: Origin,
) -> CommitOutcome {
    let (held, _) = b.begin(key, WAIT, None).await.expect("turn");
    let commit = Commit {
        expected_version: None,
        change,
        dedupe: None,
        origin,
        audit: None,
        link: None,
    };
    held.finish(commit).await.expect("commit")
}

fn import(version: u64) -> Origin {
    Origin::Import {
        version,
        ttl_ms: 60_000,
    }
}

pub async fn import_suite<B: Backend>(b: &B, ns: &str) {
    let key = ConvKey::new(ns, "imported");
    assert_eq!(b.dump(&key).await.unwrap(), None);
    let state = || StateChange::Put(Bytes::from_static(b"{\"i\":1}"));
    assert_eq!(
        write(b, &key, state(), import(5)).await,
        CommitOutcome::Committed { version: 5 }
    );
    let dumped = b.dump(&key).await.unwrap().expect("a record");
    assert_eq!(
        (dumped.version, dumped.state.as_deref()),
        (5, Some(&b"{\"i\":1}"[..]))
    );
    assert!(
        dumped.ttl_ms <= 60_000 && dumped.ttl_ms > 50_000,
        "{}",
        dumped.ttl_ms
    );
    // Again, or an older version: nothing changes.
    for version in [5, 3] {
        let again = write(b, &key, StateChange::Clear, import(version)).await;
        assert_eq!(again, CommitOutcome::Conflict { current: 5 });
    }
    // A write since: the import of the old dump does not undo it.
    let newer = StateChange::Put(Bytes::from_static(b"{\"i\":2}"));
    assert_eq!(
        write(b, &key, newer, Origin::Bot).await,
        CommitOutcome::Committed { version: 6 }
    );
    assert!(matches!(
        write(b, &key, state(), import(5)).await,
        CommitOutcome::Conflict { .. }
    ));
    assert_eq!(b.dump(&key).await.unwrap().unwrap().version, 6);
    // A tombstone comes across as one.
    let finished = ConvKey::new(ns, "finished");
    write(b, &finished, StateChange::Clear, import(2)).await;
    let dumped = b.dump(&finished).await.unwrap().expect("a tombstone");
    assert_eq!((dumped.version, dumped.state), (2, None));
}

/// With `[audit]` on: a write, a link and an import each append their event.
pub async fn audit_suite<B: Backend>(b: &B, ns: &str) {
    let member = ConvKey::new(ns, "audited");
    let note = || {
        Some(Box::new(AuditNote {
            route: ns.into(),
            request_id: Some("r-1".into()),
            bytes: 7,
            changed: vec!["a".into()],
        }))
    };
    let (held, _) = b.begin(&member, WAIT, None).await.unwrap();
    let mut c = Commit {
        expected_version: Some(0),
        change: StateChange::Put(Bytes::from_static(b"{\"a\":1}")),
        dedupe: None,
        origin: Origin::Bot,
        audit: note(),
        link: None,
    };
    assert_eq!(
        held.finish(c.clone()).await.unwrap(),
        CommitOutcome::Committed { version: 1 }
    );
    {
        // As the request path links: under the channel's turn too.
        let channel = ConvKey::new(ns, "channel");
        let (channel_turn, _) = b.begin(&channel, WAIT, None).await.unwrap();
        let (held, _) = b.begin(&member, WAIT, None).await.unwrap();
        c.expected_version = Some(1);
        c.change = StateChange::Keep;
        c.link = Some(Box::new(LinkChange::Link(channel)));
        assert!(matches!(
            held.finish(c).await.unwrap(),
            CommitOutcome::Committed { .. }
        ));
        drop(channel_turn);
    }
    let query = AuditQuery {
        key: Some(member.clone()),
        limit: 10,
        ..AuditQuery::default()
    };
    let events = b.audit(&query).await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e.event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["link", "write"]);
    let write = &events.last().unwrap().event;
    assert_eq!(
        (write["from_version"].as_u64(), write["to_version"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(write["request_id"], "r-1");
    assert_eq!(write["changed"], serde_json::json!(["a"]));
    assert_eq!(events[0].event["channel"], format!("{ns}:channel"));
}
