//! The embedded backend's turns: in-process, one fair (FIFO) async mutex
//! per busy conversation (the database's file lock keeps a second process
//! away, so in-process is enough).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use crate::backend::TurnError;
use crate::key::ConvKey;

const SHARDS: usize = 16;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// In-process turns: one fair (FIFO) async mutex per busy conversation,
/// created on first use and dropped when its last waiter leaves, so memory
/// follows the number of conversations in flight, not of conversations seen.
pub struct LocalTurns {
    shards: Arc<[Mutex<HashMap<String, Slot>>; SHARDS]>,
    hasher: RandomState,
}

impl Default for LocalTurns {
    fn default() -> Self {
        LocalTurns {
            shards: Arc::new(std::array::from_fn(|_| Mutex::new(HashMap::new()))),
            hasher: RandomState::new(),
        }
    }
}

impl LocalTurns {
    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Whether a request holds (or waits for) this conversation's turn.
    pub fn is_busy(&self, key: &ConvKey) -> bool {
        let shard = self.shard(key.as_str());
        self.shards[shard].lock().contains_key(key.as_str())
    }

    /// Conversations currently holding or waiting for a turn (the tests
    /// check that idle conversations leave nothing behind).
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// Drops the conversation's slot once nobody holds or waits on it.
fn release_slot(shards: &[Mutex<HashMap<String, Slot>>; SHARDS], shard: usize, key: &str) {
    let mut map = shards[shard].lock();
    // Waiters and the holder keep clones; only the map's own is left when
    // the conversation is idle. Checked under the shard lock, which every
    // new waiter takes to clone the slot, so this cannot race.
    if map
        .get(key)
        .is_some_and(|slot| Arc::strong_count(slot) == 1)
    {
        map.remove(key);
    }
}

pub struct LocalTurn {
    guard: Option<OwnedMutexGuard<()>>,
    shards: Arc<[Mutex<HashMap<String, Slot>>; SHARDS]>,
    shard: usize,
    key: String,
}

impl Drop for LocalTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        release_slot(&self.shards, self.shard, &self.key);
    }
}

impl LocalTurns {
    /// Waits (at most `wait`) for the conversation's turn, in arrival order.
    pub async fn acquire(&self, key: &ConvKey, wait: Duration) -> Result<LocalTurn, TurnError> {
        let shard = self.shard(key.as_str());
        let slot = {
            let mut map = self.shards[shard].lock();
            Arc::clone(
                map.entry(key.as_str().to_string())
                    .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
            )
        };
        match tokio::time::timeout(wait, slot.lock_owned()).await {
            Ok(guard) => Ok(LocalTurn {
                guard: Some(guard),
                shards: Arc::clone(&self.shards),
                shard,
                key: key.as_str().to_string(),
            }),
            Err(_) => {
                release_slot(&self.shards, shard, key.as_str());
                Err(TurnError::WaitExceeded(wait))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_turn_at_a_time_in_order() {
        let turns = Arc::new(LocalTurns::default());
        let key = ConvKey::new("t", "1");
        let first = turns.acquire(&key, Duration::from_secs(1)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (turns, key, order) = (turns.clone(), key.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let t = turns.acquire(&key, Duration::from_secs(5)).await.unwrap();
                order.lock().push(i);
                drop(t);
            }));
            // Let each waiter enqueue before the next one (arrival order).
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        }
        // Another conversation is not blocked.
        let other = turns
            .acquire(&ConvKey::new("t", "2"), Duration::from_millis(10))
            .await
            .unwrap();
        drop(other);
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
        assert_eq!(turns.busy(), 0, "idle conversations leave no slot behind");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_is_bounded() {
        let turns = LocalTurns::default();
        let key = ConvKey::new("t", "1");
        let held = turns.acquire(&key, Duration::from_secs(1)).await.unwrap();
        let err = turns.acquire(&key, Duration::from_millis(20)).await;
        assert!(matches!(err, Err(TurnError::WaitExceeded(_))));
        drop(held);
        let again = turns
            .acquire(&key, Duration::from_millis(20))
            .await
            .unwrap();
        drop(again);
        assert_eq!(turns.busy(), 0);
    }
}
