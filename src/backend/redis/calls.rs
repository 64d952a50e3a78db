//! The KEYS and ARGV of the turn and record scripts, one type per script,
//! laid out in the order the script's header lists them (`acquire.lua`,
//! `load.lua`, `restore.lua`, `defer.lua`, `adopt.lua`). The commit's own,
//! with its optional slots, is `commit_call.rs`; the lease scripts
//! (`check`, `release`, `extend`) all take the lease and queue keys and the
//! token (`shared.rs`).

use redis::{Script, ScriptInvocation};

/// `'1'` or `'0'`, as the scripts read a flag.
fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

/// With the audit trail on, the scripts that may find a record expired
/// write its `expire` event: the expiry mark and the stream.
pub(super) struct Expiry {
    pub mark: String,
    pub stream: String,
}

/// `acquire.lua`: queue a token; a turn granted at once reads the record.
pub(super) struct AcquireCall<'a> {
    pub lease: &'a str,
    pub queue: &'a str,
    pub snapshot: String,
    /// The dedupe record's key (`{t}:d:` with no id when none is asked).
    pub dedupe: String,
    pub alias: String,
    pub token: u64,
    pub look_up_dedupe: bool,
    pub expiry: Option<Expiry>,
    /// On a Cluster, an alias the member disowned (dropped if unchanged).
    pub disowned: Option<&'a str>,
}

impl AcquireCall<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(self.lease)
            .key(self.queue)
            .key(&self.snapshot)
            .key(&self.dedupe)
            .key(&self.alias);
        inv.arg(self.token).arg(flag(self.look_up_dedupe));
        if let Some(disowned) = self.disowned {
            inv.arg(disowned);
        }
        if let Some(e) = &self.expiry {
            inv.key(&e.mark).key(&e.stream);
        }
        inv
    }
}

/// `member_acquire.lua` (a Cluster): a linked channel's request at its
/// member, the member's link hash checked for the channel's link.
pub(super) struct MemberAcquireCall<'a> {
    pub lease: &'a str,
    pub queue: &'a str,
    pub snapshot: String,
    pub dedupe: String,
    pub links: String,
    pub token: u64,
    pub look_up_dedupe: bool,
    pub channel_tag: &'a str,
    pub link_id: &'a str,
}

impl MemberAcquireCall<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(self.lease)
            .key(self.queue)
            .key(&self.snapshot)
            .key(&self.dedupe)
            .key(&self.links);
        inv.arg(self.token)
            .arg(flag(self.look_up_dedupe))
            .arg(self.channel_tag)
            .arg(self.link_id);
        inv
    }
}

/// `load.lua`: a record and its dedupe lookup; after a wait for the turn,
/// checked against the alias the request was queued by.
pub(super) struct LoadCall {
    pub snapshot: String,
    pub dedupe: String,
    pub look_up_dedupe: bool,
    pub granted: Option<Granted>,
}

/// A turn granted after a wait: the alias of the key the request named,
/// the member tag it was queued for (`None`: its own), and with the trail
/// on, where an expiry is written. On a Cluster, for a channel's request
/// at its member: the member's link hash in place of the alias, the
/// channel's tag in place of the member's, and the link id.
pub(super) struct Granted {
    pub alias: String,
    pub member_tag: Option<String>,
    pub link_id: Option<String>,
    pub expiry: Option<Expiry>,
}

impl LoadCall {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.snapshot)
            .key(&self.dedupe)
            .arg(flag(self.look_up_dedupe));
        if let Some(g) = &self.granted {
            inv.key(&g.alias)
                .arg(g.member_tag.as_deref().unwrap_or_default());
            if let Some(id) = &g.link_id {
                inv.arg(id);
            }
            if let Some(e) = &g.expiry {
                inv.key(&e.mark).key(&e.stream);
            }
        }
        inv
    }
}

/// `restore.lua`: an imported record, over an older one only, under the
/// turn (its fence); with the trail on, its audit event.
pub(super) struct RestoreCall<'a> {
    pub snapshot: String,
    pub lease: String,
    pub queue: String,
    pub fence: u64,
    pub version: u64,
    /// `p` put, `c` clear.
    pub change: &'static str,
    pub data: &'a [u8],
    pub ttl_ms: u64,
    /// The audit stream and the event's fields.
    pub audit: Option<(String, String)>,
}

impl RestoreCall<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.snapshot)
            .key(&self.lease)
            .key(&self.queue)
            .arg(self.fence.to_string())
            .arg(self.version.to_string())
            .arg(self.change)
            .arg(self.data)
            .arg(self.ttl_ms.max(1).to_string());
        if let Some((stream, members)) = &self.audit {
            inv.key(stream).arg(members);
        }
        inv
    }
}

/// `defer.lua`: keep a held turn for its late report.
pub(super) struct DeferCall<'a> {
    pub lease: &'a str,
    pub deferral: String,
    pub dedupe: String,
    pub fence: u64,
    /// The turn token's digest (the token itself never reaches Redis).
    pub digest: String,
    pub within_ms: u128,
    pub write_dedupe: bool,
    pub recorded: &'a [u8],
    pub replica: u64,
}

impl DeferCall<'_> {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(self.lease)
            .key(&self.deferral)
            .key(&self.dedupe)
            .arg(self.fence.to_string())
            .arg(&self.digest)
            .arg(self.within_ms.to_string())
            .arg(flag(self.write_dedupe))
            .arg(self.recorded)
            .arg(self.replica);
        inv
    }
}

/// `adopt.lua`: take over a deferred turn by its token's digest.
pub(super) struct AdoptCall {
    pub lease: String,
    pub deferral: String,
    pub snapshot: String,
    pub digest: String,
    pub replica: u64,
}

impl AdoptCall {
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.lease)
            .key(&self.deferral)
            .key(&self.snapshot)
            .arg(&self.digest)
            .arg(self.replica);
        inv
    }
}
