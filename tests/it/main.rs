//! The integration tests, in one test binary (one link instead of thirty;
//! `scripts/run_tests.py` still runs the slow modules beside the rest).
//! Each module is one area, as its `//!` header says; they start real
//! processes on loopback (the statehold binary, bots, `redis-server`,
//! Sentinels, Cluster nodes) through `support`, or serve in process
//! through `statehold::app::run` (`in_process.rs`).

// The conformance macro expands deeply.
#![recursion_limit = "256"]

mod support;

mod admin;
mod adoption;
mod audit;
mod cli;
mod cluster;
mod console;
mod contract;
mod dedupe;
mod deferred;
mod deploy;
mod export;
mod failures;
mod fleet;
mod history;
mod hostile;
mod image;
mod in_process;
mod links;
mod migration;
mod notices;
mod observability;
mod privacy;
mod replicas;
mod restart;
mod rotation;
mod rules;
mod sentinel;
mod shutdown;
mod soak;
mod store_conformance;
mod store_down;
mod tls;
mod turns;
