//! The Redis backend's Lua scripts, built once per process with the
//! deployment's constants (TTLs, lease, queue TTL, hand-over channel)
//! written into their source as `${NAME}`s, so only per-request values
//! travel as arguments: each argument costs Redis a string to parse, hand
//! to Lua and collect (about 1,000 instructions; measured with callgrind,
//! see docs/operations.md). Replicas with the same config run the same
//! scripts (same SHA); a replica with another config runs its own.
//! redis-rs sends EVALSHA and falls back to EVAL after a Redis restart
//! emptied the script cache. Scripts that share helpers are built from a
//! `*_lib.lua` and their body (Redis scripts cannot include one another).
//!
//! A route with its own `route.ttl` gets its own build of the scripts that
//! write a record's TTL (its lifetime written in), chosen by the key's
//! namespace: still no per-request argument.

use std::time::Duration;

use redis::Script;

use crate::backend::Lifetimes;
use crate::key::ConvKey;

/// What every script of one deployment shares.
#[derive(Clone)]
pub(super) struct Constants {
    pub ttl: Duration,
    pub dedupe_window: Duration,
    pub lease: Duration,
    /// How long a waiting token may sit in a queue.
    pub queue_ttl: Duration,
    /// The stem of the pub/sub channels hand-overs are announced on (the
    /// scripts append the waiting token's notice tag).
    pub channel: String,
    /// `store.key_prefix`: scripts that name a conversation from its keys.
    pub prefix: String,
    /// Versions kept per conversation (`store.history`).
    pub history: u32,
    /// Audit events kept (`audit.max_events`; per slot stream on a Cluster).
    pub audit: u64,
    /// A Redis Cluster: links keep each side in its own slot.
    pub cluster: bool,
}

/// One build of every script.
pub(super) struct ScriptSet {
    pub acquire: Script,
    /// A Cluster: a linked channel's request at its member.
    pub member_acquire: Script,
    /// A Cluster: a channel's alias, in the channel's slot.
    pub alias: Script,
    pub load: Script,
    pub commit: Script,
    pub check: Script,
    pub release: Script,
    pub extend: Script,
    pub dump: Script,
    pub restore: Script,
    pub defer: Script,
    pub adopt: Script,
}

/// The scripts of one deployment: a build per record lifetime in use.
pub(super) struct Scripts {
    lifetimes: Lifetimes,
    /// The build for the default lifetime.
    default: ScriptSet,
    /// Builds for the routes' other lifetimes.
    others: Vec<(Duration, ScriptSet)>,
}

impl Scripts {
    /// `c.ttl` is replaced by each lifetime of `lifetimes`.
    pub fn new(c: &Constants, lifetimes: &Lifetimes) -> Scripts {
        let build = |ttl| ScriptSet::new(&Constants { ttl, ..c.clone() });
        let default_ttl = lifetimes.default_ttl();
        let others = lifetimes
            .distinct()
            .into_iter()
            .filter(|ttl| *ttl != default_ttl)
            .map(|ttl| (ttl, build(ttl)))
            .collect();
        Scripts {
            lifetimes: lifetimes.clone(),
            default: build(default_ttl),
            others,
        }
    }

    /// The build for `key`'s record (a stored key, hashed or not).
    pub fn of(&self, key: &ConvKey) -> &ScriptSet {
        let ttl = self.lifetimes.of(key);
        let other = self.others.iter().find(|(d, _)| *d == ttl);
        other.map_or(&self.default, |(_, set)| set)
    }

    /// The lifetime of `key`'s record.
    pub fn lifetime_of(&self, key: &ConvKey) -> Duration {
        self.lifetimes.of(key)
    }

    /// The build for scripts that write no record TTL (turns' check,
    /// release, extend): the same in every build.
    pub fn any(&self) -> &ScriptSet {
        &self.default
    }
}

impl ScriptSet {
    fn new(c: &Constants) -> ScriptSet {
        let turn_lib = include_str!("turn_lib.lua");
        let build = |parts: &[&str]| Script::new(&fill(&included(parts), c));
        ScriptSet {
            acquire: build(&[include_str!("acquire.lua")]),
            member_acquire: build(&[include_str!("member_acquire.lua")]),
            alias: build(&[include_str!("alias.lua")]),
            load: build(&[include_str!("load.lua")]),
            commit: build(&[include_str!("commit.lua")]),
            check: build(&[turn_lib, include_str!("check.lua")]),
            release: build(&[turn_lib, include_str!("release.lua")]),
            extend: build(&[include_str!("extend.lua")]),
            dump: build(&[include_str!("dump.lua")]),
            restore: build(&[turn_lib, include_str!("restore.lua")]),
            defer: build(&[include_str!("defer.lua")]),
            adopt: build(&[include_str!("adopt.lua")]),
        }
    }
}

/// The parts of a script as one text, with the read that comes with a turn
/// written in where it says `${READ_RECORD}` (acquire.lua, load.lua), and
/// the taking of a turn where it says `${TAKE_TURN}`: one
/// text for both, and no function call on the hot path.
fn included(parts: &[&str]) -> String {
    parts
        .concat()
        .replace("${READ_RECORD}", include_str!("read_record.lua"))
        .replace("${TAKE_TURN}", include_str!("take_turn.lua"))
}

/// `source` with each `${NAME}` replaced by its constant, as a Lua string
/// literal (Redis takes numbers as strings; the channel is escaped).
fn fill(source: &str, c: &Constants) -> String {
    let ms = |d: Duration| lua_string(&d.as_millis().to_string());
    source
        .replace("${TTL_MS}", &ms(c.ttl))
        .replace("${DEDUPE_MS}", &ms(c.dedupe_window))
        .replace("${LEASE_MS}", &ms(c.lease))
        .replace("${QUEUE_TTL_MS}", &ms(c.queue_ttl))
        .replace("${CHANNEL}", &lua_string(&c.channel))
        .replace("${PREFIX}", &lua_string(&c.prefix))
        .replace("${HISTORY}", &c.history.to_string())
        .replace("${AUDIT}", &c.audit.to_string())
        .replace("${CLUSTER}", if c.cluster { "1" } else { "0" })
        .replace("${EXPIRY_MARK_MS}", &ms(c.ttl * 2))
}

/// A single-quoted Lua string literal holding `s` exactly.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\\' | '\'' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            ch => out.push(ch),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constant_is_filled_and_quoted() {
        let c = Constants {
            ttl: Duration::from_secs(86_400),
            dedupe_window: Duration::from_secs(3600),
            lease: Duration::from_secs(5),
            queue_ttl: Duration::from_secs(20),
            channel: "a'b\\c:turns".into(),
            prefix: "sh".into(),
            history: 3,
            audit: 100,
            cluster: true,
        };
        for source in [
            include_str!("acquire.lua"),
            include_str!("member_acquire.lua"),
            include_str!("alias.lua"),
            include_str!("load.lua"),
            include_str!("commit.lua"),
            include_str!("turn_lib.lua"),
            include_str!("check.lua"),
            include_str!("release.lua"),
            include_str!("extend.lua"),
            include_str!("dump.lua"),
            include_str!("restore.lua"),
            include_str!("read_record.lua"),
            include_str!("take_turn.lua"),
            include_str!("defer.lua"),
            include_str!("adopt.lua"),
        ] {
            let filled = fill(&included(&[source]), &c);
            assert!(!filled.contains("${"), "{filled}");
        }
        let commit = fill(include_str!("commit.lua"), &c);
        assert!(commit.contains("'PX', '3600000', 'NX'"));
        assert!(commit.contains(
            r"redis.call('PUBLISH', 'a\'b\\c:turns' .. ':' .. string.sub(head, -4), head)"
        ));
    }
}
