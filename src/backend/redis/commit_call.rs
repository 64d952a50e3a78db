//! `commit.lua`'s KEYS and ARGV, laid out in one place. The script reads
//! them by position: KEYS[1..4] and ARGV[1..6] always, then the optional
//! ones (history, audit, link). An optional slot left empty before a
//! filled one is sent as an empty string; nothing after the last filled
//! slot is sent. The positions are named here and in the script's header.

use redis::{Script, ScriptInvocation};

/// KEYS positions (0-based here, 1-based in Lua).
mod key {
    pub const SNAPSHOT: usize = 0;
    pub const LEASE: usize = 1;
    pub const DEDUPE: usize = 2;
    pub const QUEUE: usize = 3;
    pub const HISTORY: usize = 4;
    pub const AUDIT_STREAM: usize = 5;
    pub const EXPIRY_MARK: usize = 6;
    pub const COUNT: usize = 7;
}

/// ARGV positions (0-based here, 1-based in Lua).
mod arg {
    pub const FENCE: usize = 0;
    pub const EXPECTED_VERSION: usize = 1;
    pub const CHANGE: usize = 2;
    pub const SNAPSHOT: usize = 3;
    pub const WRITE_DEDUPE: usize = 4;
    pub const RECORDED: usize = 5;
    pub const HISTORY_ENTRY: usize = 6;
    pub const AUDIT_MEMBERS: usize = 7;
    pub const LINK_OP: usize = 8;
    pub const LINK_CHANNEL: usize = 9;
    /// A Cluster's link id (the member's link hash keeps it).
    pub const LINK_ID: usize = 10;
    pub const COUNT: usize = 11;
}

/// One commit's keys and arguments.
pub(super) struct CommitCall {
    keys: [Option<String>; key::COUNT],
    args: [Option<Vec<u8>>; arg::COUNT],
}

/// What every commit names: its conversation's keys and the turn.
pub(super) struct Required<'a> {
    pub snapshot: String,
    pub lease: String,
    pub dedupe: String,
    pub queue: String,
    pub fence: u64,
    pub expected_version: Option<u64>,
    /// `p` put, `c` clear, `k` keep, `f` forget.
    pub change: &'static str,
    pub snapshot_json: &'a [u8],
    /// The recorded answer, when the commit writes the dedupe record.
    pub recorded: Option<&'a [u8]>,
}

impl CommitCall {
    pub(super) fn new(r: Required<'_>) -> CommitCall {
        let mut call = CommitCall {
            keys: Default::default(),
            args: Default::default(),
        };
        call.keys[key::SNAPSHOT] = Some(r.snapshot);
        call.keys[key::LEASE] = Some(r.lease);
        call.keys[key::DEDUPE] = Some(r.dedupe);
        call.keys[key::QUEUE] = Some(r.queue);
        let version = r
            .expected_version
            .map(|v| v.to_string())
            .unwrap_or_default();
        call.args[arg::FENCE] = Some(r.fence.to_string().into_bytes());
        call.args[arg::EXPECTED_VERSION] = Some(version.into_bytes());
        call.args[arg::CHANGE] = Some(r.change.as_bytes().to_vec());
        call.args[arg::SNAPSHOT] = Some(r.snapshot_json.to_vec());
        let write = if r.recorded.is_some() { "1" } else { "0" };
        call.args[arg::WRITE_DEDUPE] = Some(write.as_bytes().to_vec());
        call.args[arg::RECORDED] = Some(r.recorded.unwrap_or_default().to_vec());
        call
    }

    /// With history kept or the audit trail on: the history key and the
    /// new version's `kind at_ms`.
    pub(super) fn history(&mut self, history_key: String, entry: String) {
        self.keys[key::HISTORY] = Some(history_key);
        self.args[arg::HISTORY_ENTRY] = Some(entry.into_bytes());
    }

    /// With the audit trail on: its stream, the expiry mark and the event's
    /// members (empty: no event).
    pub(super) fn audit(&mut self, stream: String, expiry_mark: String, members: String) {
        self.keys[key::AUDIT_STREAM] = Some(stream);
        self.keys[key::EXPIRY_MARK] = Some(expiry_mark);
        self.args[arg::AUDIT_MEMBERS] = Some(members.into_bytes());
    }

    /// A link change: `l` link or `u` unlink, the channel's tag, and on a
    /// Cluster the link's id.
    pub(super) fn link(&mut self, op: &'static str, channel_tag: String, id: Option<String>) {
        self.args[arg::LINK_OP] = Some(op.as_bytes().to_vec());
        self.args[arg::LINK_CHANNEL] = Some(channel_tag.into_bytes());
        self.args[arg::LINK_ID] = id.map(String::into_bytes);
    }

    /// The invocation: every slot up to the last filled one, in order.
    pub(super) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        for k in up_to_last(&self.keys) {
            inv.key(k.as_deref().unwrap_or(""));
        }
        for a in up_to_last(&self.args) {
            inv.arg(a.as_deref().unwrap_or_default());
        }
        inv
    }
}

/// The slots up to and including the last filled one.
fn up_to_last<T>(slots: &[Option<T>]) -> &[Option<T>] {
    let end = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    &slots[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CommitCall {
        CommitCall::new(Required {
            snapshot: "{t}:s".into(),
            lease: "{t}:l".into(),
            dedupe: "{t}:d:".into(),
            queue: "{t}:q".into(),
            fence: 7,
            expected_version: Some(3),
            change: "p",
            snapshot_json: b"{}",
            recorded: None,
        })
    }

    #[test]
    fn a_plain_commit_sends_four_keys_and_six_arguments() {
        let c = call();
        assert_eq!(up_to_last(&c.keys).len(), 4);
        assert_eq!(up_to_last(&c.args).len(), 6);
        assert_eq!(c.args[arg::WRITE_DEDUPE].as_deref(), Some(&b"0"[..]));
    }

    #[test]
    fn a_link_without_history_pads_the_slots_before_it() {
        let mut c = call();
        c.link("l", "{c}".into(), None);
        let args = up_to_last(&c.args);
        assert_eq!(args.len(), 10);
        assert!(args[arg::HISTORY_ENTRY].is_none() && args[arg::AUDIT_MEMBERS].is_none());
        assert_eq!(up_to_last(&c.keys).len(), 4, "links name no extra key");
    }
}
