//! Store-wide maintenance jobs in the running server's background (the
//! only process that may open an embedded file), each bounded in rate,
//! resumable (a new run continues from the last page; conversations
//! already done are skipped) and reporting progress. Driven through the
//! admin API:
//!
//! - `statehold rekey` (`POST/GET /v1/rekey`): reseals every stored
//!   snapshot under the active encryption key.
//! - `statehold migrate` (`POST/GET /v1/migrate`, `dry_run=1` to count
//!   first): moves conversations stored under plaintext keys onto hashed
//!   keys ([`crate::backend::migrate`]).
//!
//! Every conversation is handled under its turn, like a request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tracing::{info, warn};

use crate::backend::fallback::PlaintextFallback;
use crate::backend::migrate::Migrated;
use crate::backend::private::Private;
use crate::backend::reseal::Resealed;
use crate::backend::Lifecycle;
use crate::backend::{Backend, StoreError};
use crate::key::ConvKey;
use crate::services::Services;

/// How long a job waits for one conversation's turn.
const TURN_WAIT: Duration = Duration::from_secs(10);

/// What a job does to each stored conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Rekey,
    Migrate { dry_run: bool },
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Rekey => "rekey",
            Job::Migrate { dry_run: false } => "migrate",
            Job::Migrate { dry_run: true } => "migrate (dry run)",
        }
    }

    /// The outcomes this job counts, all shown from the start (at 0). A
    /// dry run counts what it would do under the same names.
    fn outcomes(self) -> Vec<&'static str> {
        match self {
            Job::Rekey => vec!["resealed", "unchanged", "undecryptable"],
            Job::Migrate { .. } => Migrated::ALL.iter().map(|m| m.name()).collect(),
        }
    }

    async fn apply<B: Backend>(
        self,
        backend: &Private<B>,
        stored: &ConvKey,
    ) -> Result<&'static str, StoreError> {
        Ok(match self {
            Job::Rekey => match backend.reseal(stored, TURN_WAIT).await? {
                Resealed::Resealed => "resealed",
                Resealed::Unchanged => "unchanged",
                Resealed::Undecryptable => "undecryptable",
            },
            Job::Migrate { dry_run } => backend.migrate(stored, TURN_WAIT, dry_run).await?.name(),
        })
    }
}

/// How far a run got.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    pub job: &'static str,
    pub running: bool,
    /// The last run went through every stored conversation.
    pub done: bool,
    pub scanned: u64,
    /// Conversations by outcome (`resealed`, `moved`, …).
    #[serde(flatten)]
    pub outcomes: BTreeMap<&'static str, u64>,
    pub errors: u64,
    /// Conversations per second at most.
    pub rate: u32,
    /// Where the next run continues (`None`: from the start).
    #[serde(skip)]
    cursor: Option<String>,
}

/// One kind of job's runner: at most one run at a time.
#[derive(Default)]
pub struct Runner {
    progress: Mutex<Progress>,
}

impl Runner {
    pub fn progress(&self) -> Progress {
        self.progress.lock().clone()
    }

    /// Starts `job` at `rate` conversations per second; `false` when a run
    /// is already going. A run after an unfinished run of the same job
    /// continues where it stopped.
    pub fn start<B: Backend>(
        self: &Arc<Self>,
        svc: Arc<Services<PlaintextFallback<B>>>,
        job: Job,
        rate: u32,
    ) -> bool {
        let rate = rate.max(1);
        {
            let mut p = self.progress.lock();
            if p.running {
                return false;
            }
            let resume = !p.done && p.job == job.name();
            let cursor = if resume { p.cursor.take() } else { None };
            *p = Progress {
                job: job.name(),
                running: true,
                rate,
                cursor,
                outcomes: job.outcomes().into_iter().map(|o| (o, 0)).collect(),
                ..Progress::default()
            };
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(svc.backend.private(), job, rate).await });
        true
    }

    async fn run<B: Backend>(&self, backend: &Private<B>, job: Job, rate: u32) {
        let page_size = rate.min(100) as usize;
        let mut cursor = self.progress().cursor;
        info!(job = job.name(), rate, "maintenance job started");
        loop {
            let started = tokio::time::Instant::now();
            let page = match backend.scan(cursor.clone(), page_size).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(job = job.name(), error = %e, "maintenance job stopped: the store cannot be scanned");
                    return self.finish(cursor, false);
                }
            };
            for stored in &page.keys {
                let outcome = job.apply(backend, stored).await;
                self.count(job, outcome);
            }
            cursor = page.next;
            self.progress.lock().cursor = cursor.clone();
            let p = self.progress();
            info!(job = job.name(), scanned = p.scanned, errors = p.errors, outcomes = ?p.outcomes, "maintenance progress");
            if cursor.is_none() {
                return self.finish(None, true);
            }
            // At most `rate` conversations per second.
            let budget = Duration::from_secs_f64(page.keys.len() as f64 / rate as f64);
            tokio::time::sleep_until(started + budget).await;
        }
    }

    fn count(&self, job: Job, outcome: Result<&'static str, StoreError>) {
        let mut p = self.progress.lock();
        p.scanned += 1;
        match outcome {
            Ok(name) => *p.outcomes.entry(name).or_default() += 1,
            Err(e) => {
                p.errors += 1;
                warn!(job = job.name(), error = %e, "maintenance: a conversation was skipped (the next run retries it)");
            }
        }
    }

    fn finish(&self, cursor: Option<String>, done: bool) {
        {
            let mut p = self.progress.lock();
            p.running = false;
            p.done = done && p.errors == 0;
            p.cursor = cursor;
            info!(job = p.job, scanned = p.scanned, errors = p.errors, done = p.done, outcomes = ?p.outcomes, "maintenance job finished");
        }
    }
}
