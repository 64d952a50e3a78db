//! The key marks on Redis ([`crate::privacy::marks`]): one hash,
//! `<prefix>:keymarks` (no hash tag, so no conversation's key and no scan
//! of conversations ever names it), read with `HMGET` and written by
//! `marks.lua`, which records a hashing mark only over the one the writer
//! read.

use std::sync::LazyLock;

use redis::Script;

use super::records::RedisRecords;
use crate::backend::StoreError;
use crate::privacy::marks::{MarkWrites, Recorded};

static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("marks.lua")));

impl RedisRecords {
    fn marks_key(&self) -> String {
        format!("{}:keymarks", self.conn.prefix())
    }

    pub(super) async fn recorded_marks(&self) -> Result<Recorded, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.marks_key()).arg("hash").arg("seal");
        let (hash, seal): (Option<String>, Option<String>) = self.conn.query(&cmd).await?;
        Ok(Recorded { hash, seal })
    }

    pub(super) async fn record_marks(
        &self,
        expected: Option<&str>,
        writes: &MarkWrites,
    ) -> Result<bool, StoreError> {
        let mut inv = RECORD.prepare_invoke();
        inv.key(self.marks_key())
            .arg(expected.unwrap_or(""))
            .arg(writes.hash.as_deref().unwrap_or(""))
            .arg(writes.seal.as_deref().unwrap_or(""));
        let written: i64 = self.conn.eval(&inv).await?;
        Ok(written == 1)
    }
}
