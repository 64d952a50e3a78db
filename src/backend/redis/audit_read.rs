//! Reading the Redis audit trail for the admin API (`GET /v1/audit`): one
//! conversation's events from the stream they were written to, and the
//! feed of every event in order. On one server the feed is the one
//! stream (`XRANGE`); on a Cluster it merges the slots' streams
//! (`audit_streams.rs`) in the order (event id, slot), and each event's id
//! is `<ms>-<seq>-<slot>`: a feed position that names the slot too.

use super::audit_streams::{slot_of, SLOTS};
use super::records::{bad_reply, RedisRecords};
use crate::backend::audit::{AuditEntry, AuditQuery};
use crate::backend::StoreError;

/// A position in the Cluster feed: after the event `ms-seq` of `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    ms: u64,
    seq: u64,
    slot: u16,
}

impl Position {
    /// `0` (from the start), `<ms>-<seq>-<slot>` as the feed gives it;
    /// `<ms>` or `<ms>-<seq>` (one stream's ids) mean after that id in
    /// every slot. `None`: the start.
    /// The admin API checked the form (`admin/audit.rs`): anything else
    /// here is our own bug, reported as such.
    fn parse(text: &str) -> Result<Option<Position>, StoreError> {
        let bad = || bad_reply("audit feed position");
        let mut parts = text.split('-');
        let ms: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let seq: u64 = match parts.next() {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 0,
        };
        let slot: u16 = match parts.next() {
            Some(p) => p.parse().ok().filter(|s| *s < SLOTS).ok_or_else(bad)?,
            None => SLOTS - 1,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok((text != "0").then_some(Position { ms, seq, slot }))
    }

    /// The `XRANGE` start in `slot`'s stream for what follows.
    fn start_in(after: Option<Position>, slot: u16) -> String {
        match after {
            None => "-".to_string(),
            Some(p) if slot > p.slot => format!("{}-{}", p.ms, p.seq),
            Some(p) => format!("({}-{}", p.ms, p.seq),
        }
    }
}

fn feed_slot_script() -> &'static redis::Script {
    static FEED_SLOT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    FEED_SLOT.get_or_init(|| redis::Script::new(include_str!("feed_slot.lua")))
}

pub(super) type Rows = Vec<(String, Vec<(String, String)>)>;

/// An entry's event (its `e` field).
pub(super) fn event_of(fields: Vec<(String, String)>) -> Result<serde_json::Value, StoreError> {
    let (_, text) = fields
        .into_iter()
        .find(|(f, _)| f == "e")
        .ok_or_else(|| bad_reply("audit"))?;
    serde_json::from_str(&text).map_err(|_| bad_reply("audit"))
}

/// `ms-seq` of a stream id.
pub(super) fn id_parts(id: &str) -> Result<(u64, u64), StoreError> {
    let (ms, seq) = id.split_once('-').ok_or_else(|| bad_reply("audit id"))?;
    let parse = |s: &str| s.parse::<u64>().map_err(|_| bad_reply("audit id"));
    Ok((parse(ms)?, parse(seq)?))
}

impl RedisRecords {
    /// Audit events: one conversation's, newest first (`XREVRANGE` of its
    /// stream, filtered by key: bounded by the stream's length), the feed
    /// after a position, oldest first, or the newest of all
    /// (`audit_view.rs`).
    pub(super) async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        if self.audit == 0 {
            return Ok(Vec::new());
        }
        let streams = self.conn.audit_streams();
        match (&query.key, &query.since) {
            (Some(key), _) => {
                let stream = streams.of(&self.conn.keys(key));
                let slot = streams.per_slot().then(|| slot_of(&stream));
                let mut cmd = redis::cmd("XREVRANGE");
                cmd.arg(&stream).arg("+").arg("-");
                let rows: Rows = self.conn.query(&cmd).await?;
                let mut out = Vec::new();
                for (id, fields) in rows {
                    let event = event_of(fields)?;
                    if event["key"] == key.as_str() {
                        let id = match slot {
                            Some(slot) => format!("{id}-{slot}"),
                            None => id,
                        };
                        out.push(AuditEntry { id, event });
                        if out.len() >= query.limit {
                            break;
                        }
                    }
                }
                Ok(out)
            }
            (None, Some(since)) if streams.per_slot() => {
                self.cluster_feed(since, query.limit).await
            }
            (None, None) => self.newest(query.limit).await,
            (None, Some(since)) => {
                let start = match Position::parse(since)? {
                    None => "-".to_string(),
                    Some(p) => format!("({}-{}", p.ms, p.seq),
                };
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(streams.of_slot(0))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(query.limit);
                let rows: Rows = self.conn.query(&cmd).await?;
                rows.into_iter()
                    .map(|(id, fields)| {
                        Ok(AuditEntry {
                            id,
                            event: event_of(fields)?,
                        })
                    })
                    .collect()
            }
        }
    }

    /// The Cluster feed: up to `limit` events of every slot's stream after
    /// `since`, merged in (id, slot) order, up to one millisecond before
    /// the oldest clock among the nodes read (so no event can later
    /// appear below a position already given out, as long as the nodes'
    /// clocks do not go back, e.g. a promoted replica's clock behind its
    /// old primary's). One script per primary (`feed.lua`), and one per
    /// slot that primary could not read because it is being moved
    /// (`feed_slot.lua`); a page whose map was out of date (a node's
    /// script failed whole) is read again, a few times.
    async fn cluster_feed(&self, since: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let after = Position::parse(since)?;
        let mut attempt = 0;
        loop {
            match self.cluster_feed_once(after, limit).await {
                Err(StoreError::Script(e)) if attempt < FEED_ATTEMPTS => {
                    tracing::debug!(error = %e, "audit feed: a slot moved while read; reading again");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn cluster_feed_once(
        &self,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let streams = self.conn.audit_streams();
        let replies = self
            .on_each_primary(include_str!("feed.lua"), limit, |slot, cmd| {
                cmd.arg(streams.of_slot(slot))
                    .arg(Position::start_in(after, slot));
            })
            .await?;
        let mut page = Page::default();
        for (slots, reply) in replies {
            page.add_node(&slots, reply)?;
        }
        // Slots on the move: each on its own, where the client's redirects
        // lead (`feed_slot.lua`); few at a time, since a reshard moves one
        // slot after another.
        for slot in std::mem::take(&mut page.elsewhere) {
            let mut inv = feed_slot_script().prepare_invoke();
            inv.key(streams.of_slot(slot))
                .arg(Position::start_in(after, slot))
                .arg(limit);
            let (clock, rows): (u64, Rows) = self.conn.eval(&inv).await?;
            page.add_slot(slot, clock, rows);
        }
        page.merged(limit)
    }
}

/// A Cluster feed page as the nodes answer it.
struct Page {
    /// The oldest clock among the nodes read.
    oldest_clock: u64,
    found: Vec<(u16, Rows)>,
    /// Slots a node could not read (on the move).
    elsewhere: Vec<u16>,
}

impl Default for Page {
    fn default() -> Page {
        Page {
            oldest_clock: u64::MAX,
            found: Vec::new(),
            elsewhere: Vec::new(),
        }
    }
}

impl Page {
    /// One node's `feed.lua` answer for `slots` (its pairs, in order).
    fn add_node(&mut self, slots: &[u16], reply: Vec<redis::Value>) -> Result<(), StoreError> {
        let mut items = reply.into_iter();
        let clock = items.next().as_ref().and_then(super::records::u64_of);
        self.oldest_clock = self
            .oldest_clock
            .min(clock.ok_or_else(|| bad_reply("audit feed"))?);
        while let (Some(pair), Some(rows)) = (items.next(), items.next()) {
            let slot = super::records::u64_of(&pair)
                .and_then(|n| slots.get(usize::try_from(n).ok()?.checked_sub(1)?).copied())
                .ok_or_else(|| bad_reply("audit feed"))?;
            if matches!(&rows, redis::Value::BulkString(b) if b == b"elsewhere") {
                self.elsewhere.push(slot);
                continue;
            }
            let rows: Rows = redis::FromRedisValue::from_redis_value(rows)
                .map_err(|_| bad_reply("audit feed"))?;
            self.found.push((slot, rows));
        }
        Ok(())
    }

    fn add_slot(&mut self, slot: u16, clock: u64, rows: Rows) {
        self.oldest_clock = self.oldest_clock.min(clock);
        self.found.push((slot, rows));
    }

    /// The first `limit` events below the oldest clock, in (id, slot) order.
    fn merged(self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut merged = Vec::new();
        for (slot, rows) in self.found {
            for (id, fields) in rows {
                let (ms, seq) = id_parts(&id)?;
                if ms < self.oldest_clock {
                    merged.push((Position { ms, seq, slot }, fields));
                }
            }
        }
        merged.sort_unstable_by_key(|(position, _)| *position);
        merged
            .into_iter()
            .take(limit)
            .map(|(p, fields)| {
                Ok(AuditEntry {
                    id: format!("{}-{}-{}", p.ms, p.seq, p.slot),
                    event: event_of(fields)?,
                })
            })
            .collect()
    }
}

impl RedisRecords {
    /// Runs `script` (`EVAL`, no declared keys: it reads the streams of
    /// its node's slots with `allow-cross-slot-keys`) on every primary at
    /// once, its arguments `count` and then `args(slot)` for each slot that
    /// primary serves; each primary's slots and reply.
    pub(super) async fn on_each_primary(
        &self,
        script: &'static str,
        count: usize,
        args: impl Fn(u16, &mut redis::Cmd),
    ) -> Result<Vec<(Vec<u16>, Vec<redis::Value>)>, StoreError> {
        let mut slots_cmd = redis::cmd("CLUSTER");
        slots_cmd.arg("SLOTS");
        let map: redis::Value = self.conn.query(&slots_cmd).await?;
        let args = &args;
        let reads = slots_per_primary(&map)?.into_iter().map(|slots| {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script).arg(0).arg(count);
            for slot in &slots {
                args(*slot, &mut cmd);
            }
            async move {
                let first = slots.first().copied().unwrap_or(0);
                let reply: Vec<redis::Value> = self.conn.query_slot(&cmd, first).await?;
                Ok::<_, StoreError>((slots, reply))
            }
        });
        futures_util::future::try_join_all(reads).await
    }
}

/// Times a Cluster feed page is read again after a slot moved under it.
const FEED_ATTEMPTS: u32 = 4;

/// `CLUSTER SLOTS` as each primary's slots (`[[start, end, [host, port,
/// ..], replicas..], ..]`).
fn slots_per_primary(map: &redis::Value) -> Result<Vec<Vec<u16>>, StoreError> {
    let bad = || bad_reply("CLUSTER SLOTS");
    let redis::Value::Array(ranges) = map else {
        return Err(bad());
    };
    let mut primaries: Vec<(String, Vec<u16>)> = Vec::new();
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            return Err(bad());
        };
        let number = |v: Option<&redis::Value>| {
            v.and_then(super::records::u64_of)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n < SLOTS)
        };
        let (Some(start), Some(end)) = (number(fields.first()), number(fields.get(1))) else {
            return Err(bad());
        };
        let Some(redis::Value::Array(node)) = fields.get(2) else {
            return Err(bad());
        };
        let address = format!("{:?}", node.get(..2));
        match primaries.iter_mut().find(|(a, _)| *a == address) {
            Some((_, slots)) => slots.extend(start..=end),
            None => primaries.push((address, (start..=end).collect())),
        }
    }
    Ok(primaries.into_iter().map(|(_, slots)| slots).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_positions() {
        assert_eq!(Position::parse("0").unwrap(), None);
        let p = Position::parse("1733094000000-3-77").unwrap().unwrap();
        assert_eq!((p.ms, p.seq, p.slot), (1733094000000, 3, 77));
        let one_stream = Position::parse("1733094000000-3").unwrap().unwrap();
        assert_eq!(one_stream.slot, SLOTS - 1);
        for bad in ["", "x", "1-2-3-4", "1-2-16384", "1--2", "-1"] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
        // At the position's own id: slots after it from the id on, the
        // slot itself and those before it strictly after.
        assert_eq!(Position::start_in(Some(p), 78), "1733094000000-3");
        assert_eq!(Position::start_in(Some(p), 77), "(1733094000000-3");
        assert_eq!(Position::start_in(Some(p), 5), "(1733094000000-3");
        assert_eq!(Position::start_in(None, 5), "-");
    }
}
