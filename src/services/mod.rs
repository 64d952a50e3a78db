//! What the request path, the admin API and the background tasks share,
//! built once at start (`app.rs`) and held behind one `Arc`: the
//! backend, the bot's client, the metrics, the degraded-mode spool, the
//! store's health and the audit settings.
//!
//! The pipeline owns only what requests use (routes, the buffer budget,
//! parked turns); the admin API and the background tasks take a
//! `Services`, never the pipeline.
//!
//! - `health.rs`: whether the store answers (the `statehold_store_up`
//!   gauge) and the settle window after an outage.
//! - `audit.rs`: the audit note a change carries, with `[audit]` on.
//! - `tasks.rs`: the spool's write-back and the purge, in the background.

mod audit;
mod health;
pub mod tasks;

use std::sync::Arc;

pub use audit::{request_id, AuditNotes};
pub use health::StoreHealth;

use crate::backend::fallback::PlaintextFallback;
use crate::backend::Backend;
use crate::config::{BackendKind, Config, OnUnavailable};
use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolOpenError};
use crate::upstream::Upstream;

pub struct Services<B> {
    pub backend: B,
    /// The pooled client to the bot.
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    /// Degraded-mode spool (passthrough on a shared store), if any.
    pub spool: Option<Arc<Spool>>,
    pub health: StoreHealth,
    pub audit: AuditNotes,
}

impl<B: Backend> Services<PlaintextFallback<B>> {
    /// The services of `config` over `backend`; the spool is opened where
    /// the store is remote and requests pass through while it is out.
    pub fn new(
        config: &Config,
        backend: PlaintextFallback<B>,
        upstream: Upstream,
        metrics: Arc<Metrics>,
    ) -> Result<Services<PlaintextFallback<B>>, SpoolOpenError> {
        let audit_on = config.audit.max_events > 0;
        let spool = match (config.store.backend, config.store.on_unavailable) {
            (BackendKind::Redis, OnUnavailable::Passthrough) => Some(Arc::new(Spool::open(
                &config.store.spool_path,
                config.store.spool_max,
                (Arc::clone(backend.privacy()), audit_on),
            )?)),
            _ => None,
        };
        if let Some(spool) = &spool {
            metrics.set_spool_depth(spool.depth());
        }
        Ok(Services {
            health: StoreHealth::new(config, Arc::clone(&metrics)),
            audit: AuditNotes::new(audit_on),
            backend,
            upstream,
            metrics,
            spool,
        })
    }
}
