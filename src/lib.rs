//! # statehold
//!
//! A reverse proxy beside a webhook bot that keeps the bot's conversation
//! state across restarts, crashes and replicas. The external contract is
//! `docs/contract.md`; the trust boundary is `docs/security.md`.
//!
//! # Layout
//!
//! - [`config`]: typed `config.toml` (one struct per table in
//!   `config/tables.rs` and `config/route.rs`, whose `///` lines feed
//!   `check-config --explain`), cross-field validation naming the offending
//!   key, secrets (`*_env`), masked printout.
//! - [`presets`]: per-platform defaults for keys, dedupe ids, verification.
//! - [`contract`]: the wire contract: reserved headers, snapshot injection
//!   and capture, header and body mode. Pure functions.
//! - [`key`]: key sources (`json:`, `header:`, `query:`, `form:`) and the
//!   `<namespace>:<id>` conversation key with log masking.
//! - [`verify`]: platform webhook authenticity, from the head, then the body.
//! - [`path`]: request-path normalization before routes are matched.
//! - [`backend`]: where conversations live and how their turns are taken,
//!   each backend one unit: [`backend::embedded`] (a redb file, turns in
//!   process) and [`backend::redis`] (connection, breaker, key names, Lua
//!   scripts, leased and fenced turns across replicas). `Turns::begin`
//!   takes the turn and reads the record; `Held::finish` commits and
//!   releases, or dropping the `Held` releases. Per-route lifetimes, kept
//!   versions (`store.history`) and audit events are written in the
//!   commit's atomic step.
//! - [`rules`]: what a route requires of reported snapshots (schema,
//!   transitions) and what a clear keeps.
//! - [`maintenance`]: store-wide jobs in the background: `rekey` (reseal
//!   under the active key) and `migrate` (plaintext keys onto hashed keys).
//! - [`spool`]: degraded-mode snapshots kept on disk until the store returns.
//! - [`privacy`]: keyed-hash key names and sealed values at rest.
//! - [`private_file`]: data files created 0600 in 0700 directories.
//! - [`upstream`]: the pooled client to the bot and proxy header rules.
//! - [`pipeline`]: the request path, stage by stage, in order
//!   (`pipeline/mod.rs` reads them top to bottom, one file per stage).
//! - [`services`]: what the request path, the admin API and the
//!   background tasks share (backend, upstream, metrics, spool, store
//!   health, audit notes), and the background loops.
//! - [`server`]: listener, TLS, connection cap, graceful shutdown.
//! - [`framing`]: request-head scanning that refuses ambiguous framing.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/v1/state` (with
//!   history and rollback), `/v1/audit`, the maintenance jobs.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`outcome`]: how a request ended (the metrics' `outcome` label).
//! - [`secret`]: secret config values that print as `***`.
//! - [`error`]: what the error types share: the kept cause, the logged chain.
//! - [`app`]: wiring all of the above from a config; [`app::run`] serves on
//!   listeners the caller bound (the binary), [`app::run_over`] over a
//!   backend the caller built (the in-process tests).
//!
//! This list is the one place the layout is written (the README links
//! here); each folder's `mod.rs` lists its files, and every file starts
//! with a `//!` line saying what it owns. Modules import one another
//! without circles at every level, no file is over 400 lines and no
//! function over 60, errors are typed and keep their source, and no mutex
//! can be poisoned (`tests/structure.rs`).

pub mod admin;
pub mod app;
pub mod backend;
pub mod config;
pub mod contract;
pub mod error;
pub mod framing;
pub mod key;
pub mod maintenance;
pub mod metrics;
pub mod outcome;
pub mod path;
pub mod pipeline;
pub mod presets;
pub mod privacy;
pub mod private_file;
pub mod rules;
pub mod secret;
pub mod server;
pub mod services;
pub mod spool;
pub mod tracecontext;
pub mod upstream;
pub mod verify;
