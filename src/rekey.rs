//! `statehold rekey`: reseals every stored snapshot under the active
//! encryption key, in the background of the running server (the only
//! process that may open an embedded file), bounded in rate, resumable
//! (a new run continues from the last page, and values already under the
//! active key are skipped), reporting progress. Driven through the admin
//! API: `POST /v1/rekey` starts it, `GET /v1/rekey` reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::backend::private::{Private, Resealed};
use crate::backend::Backend;
use crate::pipeline::Pipeline;

/// How far a rekey run got.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    pub running: bool,
    /// The last run went through every stored conversation.
    pub done: bool,
    pub scanned: u64,
    pub resealed: u64,
    pub unchanged: u64,
    pub undecryptable: u64,
    pub errors: u64,
    /// Conversations per second at most.
    pub rate: u32,
    /// Where the next run continues (`None`: from the start).
    #[serde(skip)]
    cursor: Option<String>,
}

#[derive(Default)]
pub struct Rekey {
    progress: Mutex<Progress>,
}

impl Rekey {
    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Starts a run at `rate` conversations per second; `false` when one
    /// is already running.
    pub fn start<B: Backend>(
        self: &Arc<Self>,
        pipeline: Arc<Pipeline<Private<B>>>,
        rate: u32,
    ) -> bool {
        {
            let Ok(mut p) = self.progress.lock() else {
                return false;
            };
            if p.running {
                return false;
            }
            let cursor = if p.done { None } else { p.cursor.take() };
            *p = Progress {
                running: true,
                rate: rate.max(1),
                cursor: cursor.clone(),
                ..Progress::default()
            };
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(pipeline.backend(), rate.max(1)).await });
        true
    }

    async fn run<B: Backend>(&self, backend: &Private<B>, rate: u32) {
        let page_size = rate.min(100) as usize;
        let mut cursor = self.progress().cursor;
        info!(rate, "rekey started");
        loop {
            let started = tokio::time::Instant::now();
            let page = match backend.scan(cursor.clone(), page_size).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(error = %e, "rekey stopped: the store cannot be scanned");
                    return self.finish(cursor, false);
                }
            };
            for stored in &page.keys {
                let outcome = backend.reseal(stored, Duration::from_secs(10)).await;
                self.count(outcome);
            }
            cursor = page.next;
            if let Ok(mut p) = self.progress.lock() {
                p.cursor = cursor.clone();
            }
            let p = self.progress();
            info!(
                scanned = p.scanned,
                resealed = p.resealed,
                undecryptable = p.undecryptable,
                errors = p.errors,
                "rekey progress"
            );
            if cursor.is_none() {
                return self.finish(None, true);
            }
            // At most `rate` conversations per second.
            let budget = Duration::from_secs_f64(page.keys.len() as f64 / rate as f64);
            tokio::time::sleep_until(started + budget).await;
        }
    }

    fn count(&self, outcome: Result<Resealed, crate::backend::StoreError>) {
        let Ok(mut p) = self.progress.lock() else {
            return;
        };
        p.scanned += 1;
        match outcome {
            Ok(Resealed::Resealed) => p.resealed += 1,
            Ok(Resealed::Unchanged) => p.unchanged += 1,
            Ok(Resealed::Undecryptable) => p.undecryptable += 1,
            Err(e) => {
                p.errors += 1;
                warn!(error = %e, "rekey: a conversation could not be resealed (the next run retries it)");
            }
        }
    }

    fn finish(&self, cursor: Option<String>, done: bool) {
        if let Ok(mut p) = self.progress.lock() {
            p.running = false;
            p.done = done && p.errors == 0;
            p.cursor = cursor;
            info!(
                scanned = p.scanned,
                resealed = p.resealed,
                undecryptable = p.undecryptable,
                errors = p.errors,
                done = p.done,
                "rekey finished"
            );
        }
    }
}
