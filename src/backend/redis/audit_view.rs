//! The audit trail's side for the operator's console: a `view` event (an
//! operator was shown a snapshot) appended to the stream the
//! conversation's changes go to, and the newest events of the whole
//! store, newest first (the console's recent conversations): one
//! `XREVRANGE` on one server, `recent.lua` on each primary of a Cluster.

use super::audit_read::{event_of, id_parts, Rows};
use super::records::{bad_reply, RedisRecords};
use crate::backend::audit::{AuditEntry, AuditNote};
use crate::backend::{now_ms, StoreError};
use crate::key::ConvKey;

/// An event read: its id (`ms`, `seq`), its slot on a Cluster, its fields.
type Found = (u64, u64, Option<u16>, Vec<(String, String)>);

impl RedisRecords {
    /// `XADD` of a `view` event, trimmed like every append (`MAXLEN ~`).
    /// Not in the conversation's slot's script: it changes no record.
    pub(super) async fn note_view(
        &self,
        key: &ConvKey,
        note: &AuditNote,
        version: u64,
    ) -> Result<(), StoreError> {
        if self.audit == 0 {
            return Ok(());
        }
        let stream = self.conn.audit_stream(&self.conn.keys(key));
        let event = note.event(key, ("view", None), now_ms(), (version, version));
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.audit)
            .arg("*")
            .arg("e")
            .arg(event);
        let _id: String = self.conn.query(&cmd).await?;
        Ok(())
    }

    /// Up to `limit` of the newest events, newest first.
    pub(super) async fn newest(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let streams = self.conn.audit_streams();
        let mut found: Vec<Found> = Vec::new();
        if !streams.per_slot() {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(streams.of_slot(0))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(limit);
            let rows: Rows = self.conn.query(&cmd).await?;
            for (id, fields) in rows {
                let (ms, seq) = id_parts(&id)?;
                found.push((ms, seq, None, fields));
            }
        } else {
            let replies = self
                .on_each_primary(include_str!("recent.lua"), limit, |slot, cmd| {
                    cmd.arg(streams.of_slot(slot));
                })
                .await?;
            let bad = || bad_reply("recent audit events");
            for (slots, reply) in replies {
                let mut reply = reply.into_iter();
                while let (Some(number), Some(rows)) = (reply.next(), reply.next()) {
                    let slot = super::records::u64_of(&number)
                        .and_then(|n| slots.get((n as usize).checked_sub(1)?).copied())
                        .ok_or_else(bad)?;
                    let rows: Rows = redis::from_redis_value(rows).map_err(|_| bad())?;
                    for (id, fields) in rows {
                        let (ms, seq) = id_parts(&id)?;
                        found.push((ms, seq, Some(slot), fields));
                    }
                }
            }
        }
        found.sort_unstable_by_key(|f| std::cmp::Reverse((f.0, f.1, f.2)));
        found
            .into_iter()
            .take(limit)
            .map(|(ms, seq, slot, fields)| {
                Ok(AuditEntry {
                    id: match slot {
                        Some(slot) => format!("{ms}-{seq}-{slot}"),
                        None => format!("{ms}-{seq}"),
                    },
                    event: event_of(fields)?,
                })
            })
            .collect()
    }
}
