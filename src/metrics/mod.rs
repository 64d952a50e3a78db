//! Prometheus metrics with the contract's names (docs/contract.md §6), kept in
//! fixed arrays of atomics: recording is a few relaxed adds, no locks, no
//! allocation, and every label set is bounded by construction (routes come
//! from the config, outcomes and results are enums).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::outcome::Outcome;

mod deferred;
mod histogram;
mod process;
pub use deferred::{AwaitingGuard, Deferred, DeferredResult};
pub use histogram::Histogram;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadResult {
    Hit,
    Miss,
    Error,
    /// A stored snapshot that could not be opened (its key is gone).
    Undecryptable,
    /// Header mode: a snapshot over `contract.max_header_bytes` that a
    /// request which is not a JSON object cannot carry.
    Oversized,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveResult {
    Ok,
    /// The bot reported a snapshot that could not be decoded or was too big.
    Rejected,
    Error,
    /// The snapshot broke the route's rules (`route.schema`, `[route.transitions]`).
    Invalid,
}

/// What became of a bot's link report (`statehold_links_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkResult {
    Linked,
    Unlinked,
    /// Not made: it would chain links, the key is linked elsewhere, or the
    /// store cannot link (a Redis Cluster).
    Refused,
    /// Not a `<namespace>:<id>` key.
    Invalid,
    /// The store failed or the member stayed busy.
    Error,
}

/// See [`Metrics::turn_waiting`].
pub struct WaitingGuard<'a>(&'a AtomicU64);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Load,
    Commit,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct Metrics {
    /// Route labels: each route's namespace, then "unmatched".
    routes: Vec<String>,
    /// [route][outcome][status class]
    requests: Vec<Vec<[AtomicU64; 5]>>,
    request_duration: Vec<Histogram>,
    /// [route]: fast 2xx answers without a state report.
    unreported: Vec<AtomicU64>,
    upstream_duration: Histogram,
    store_duration: [Histogram; 2],
    state_loads: [AtomicU64; 5],
    state_saves: [AtomicU64; 4],
    links: [AtomicU64; 5],
    dedupe_hits: AtomicU64,
    dedupe_mismatches: AtomicU64,
    buffered_bytes: AtomicU64,
    lock_wait: Histogram,
    conflicts: AtomicU64,
    store_up: AtomicU64,
    turns_waiting: AtomicU64,
    spool_depth: AtomicU64,
    deferred: Deferred,
}

impl Metrics {
    /// `route_labels` are the configured routes' labels, in route order.
    pub fn new(route_labels: impl IntoIterator<Item = String>) -> Metrics {
        let mut routes: Vec<String> = route_labels.into_iter().collect();
        routes.push("unmatched".into());
        let n = routes.len();
        Metrics {
            requests: (0..n)
                .map(|_| {
                    (0..Outcome::ALL.len())
                        .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                        .collect()
                })
                .collect(),
            request_duration: (0..n).map(|_| Histogram::default()).collect(),
            unreported: (0..n).map(|_| AtomicU64::new(0)).collect(),
            deferred: Deferred::new(n),
            routes,
            upstream_duration: Histogram::default(),
            store_duration: Default::default(),
            state_loads: Default::default(),
            state_saves: Default::default(),
            links: Default::default(),
            dedupe_hits: AtomicU64::new(0),
            dedupe_mismatches: AtomicU64::new(0),
            buffered_bytes: AtomicU64::new(0),
            lock_wait: Histogram::default(),
            conflicts: AtomicU64::new(0),
            store_up: AtomicU64::new(1),
            turns_waiting: AtomicU64::new(0),
            spool_depth: AtomicU64::new(0),
        }
    }

    /// Index of the "unmatched" route label.
    pub fn unmatched(&self) -> usize {
        self.routes.len() - 1
    }

    pub fn request(&self, route: usize, outcome: Outcome, status: u16, took: Duration) {
        let route = route.min(self.unmatched());
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[route][outcome as usize][class].fetch_add(1, Ordering::Relaxed);
        self.request_duration[route].observe(took);
    }

    /// A keyed request the bot answered 2xx within a few milliseconds
    /// without reporting state (see `pipeline/unreported.rs`).
    pub fn unreported(&self, route: usize) {
        let route = route.min(self.unmatched());
        self.unreported[route].fetch_add(1, Ordering::Relaxed);
    }

    /// Deferred turns and their late reports.
    pub fn deferred(&self) -> &Deferred {
        &self.deferred
    }
    pub fn upstream(&self, took: Duration) {
        self.upstream_duration.observe(took);
    }
    pub fn store(&self, op: StoreOp, took: Duration) {
        self.store_duration[op as usize].observe(took);
    }
    pub fn load(&self, r: LoadResult) {
        self.state_loads[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn save(&self, r: SaveResult) {
        self.state_saves[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn link(&self, r: LinkResult) {
        self.links[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn dedupe_hit(&self) {
        self.dedupe_hits.fetch_add(1, Ordering::Relaxed);
    }
    /// A known dedupe id arrived with a different body (answered 409).
    pub fn dedupe_mismatch(&self) {
        self.dedupe_mismatches.fetch_add(1, Ordering::Relaxed);
    }
    /// Request body bytes buffered right now, across all requests.
    pub fn set_buffered_bytes(&self, bytes: u64) {
        self.buffered_bytes.store(bytes, Ordering::Relaxed);
    }
    pub fn lock_wait(&self, took: Duration) {
        self.lock_wait.observe(took);
    }
    /// Counts a request as waiting for its turn until the guard is dropped
    /// (also when the request is cancelled mid-wait).
    pub fn turn_waiting(&self) -> WaitingGuard<'_> {
        self.turns_waiting.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(&self.turns_waiting)
    }
    pub fn set_spool_depth(&self, depth: u64) {
        self.spool_depth.store(depth, Ordering::Relaxed);
    }
    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(u64::from(up), Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_requests(&mut out);
        self.render_unreported(&mut out);
        self.deferred.render(&self.routes, &mut out);
        self.render_durations(&mut out);
        self.render_results(&mut out);
        self.render_scalars(&mut out);
        process::render_build_info(&mut out);
        process::render_process(&mut out);
        out
    }

    fn render_requests(&self, out: &mut String) {
        help(
            out,
            "statehold_requests_total",
            "counter",
            "Requests by route, outcome and status class.",
        );
        for (r, route) in self.routes.iter().enumerate() {
            for outcome in Outcome::ALL {
                for (c, class) in STATUS_CLASSES.iter().enumerate() {
                    let n = self.requests[r][outcome as usize][c].load(Ordering::Relaxed);
                    if n > 0 {
                        line(out, format_args!(
                            "statehold_requests_total{{route=\"{route}\",outcome=\"{}\",code=\"{class}\"}} {n}",
                            outcome.as_str()
                        ));
                    }
                }
            }
        }
    }

    fn render_unreported(&self, out: &mut String) {
        let name = "statehold_unreported_total";
        help(
            out,
            name,
            "counter",
            "Keyed requests answered 2xx within 10 ms without a state report (a bot answering before its handlers run).",
        );
        let configured = &self.routes[..self.unmatched()];
        for (route, n) in configured.iter().zip(&self.unreported) {
            let n = n.load(Ordering::Relaxed);
            line(out, format_args!("{name}{{route=\"{route}\"}} {n}"));
        }
    }

    fn render_durations(&self, out: &mut String) {
        let name = "statehold_request_duration_seconds";
        help(
            out,
            name,
            "histogram",
            "Whole request time inside statehold, bot included.",
        );
        for (r, route) in self.routes.iter().enumerate() {
            self.request_duration[r].render(out, name, &format!("route=\"{route}\""));
        }
        let name = "statehold_upstream_duration_seconds";
        help(out, name, "histogram", "Time the bot took to answer.");
        self.upstream_duration.render(out, name, "");
        let name = "statehold_store_duration_seconds";
        help(
            out,
            name,
            "histogram",
            "Store operation time: the record read with a turn (load), the end-of-turn commit.",
        );
        for (i, op) in ["load", "commit"].iter().enumerate() {
            self.store_duration[i].render(out, name, &format!("op=\"{op}\""));
        }
        let name = "statehold_lock_wait_seconds";
        help(
            out,
            name,
            "histogram",
            "Time spent waiting for a conversation's turn.",
        );
        self.lock_wait.render(out, name, "");
    }

    fn render_results(&self, out: &mut String) {
        for (name, text, labels, values) in [
            (
                "statehold_state_loads_total",
                "Snapshot loads by result.",
                &["hit", "miss", "error", "undecryptable", "oversized"][..],
                &self.state_loads[..],
            ),
            (
                "statehold_state_saves_total",
                "Snapshot saves by result.",
                &["ok", "rejected", "error", "invalid"][..],
                &self.state_saves[..],
            ),
            (
                "statehold_links_total",
                "The bot's link reports (X-Statehold-Link, -Unlink) by result.",
                &["linked", "unlinked", "refused", "invalid", "error"][..],
                &self.links[..],
            ),
        ] {
            help(out, name, "counter", text);
            for (label, value) in labels.iter().zip(values) {
                let n = value.load(Ordering::Relaxed);
                line(out, format_args!("{name}{{result=\"{label}\"}} {n}"));
            }
        }
    }

    fn render_scalars(&self, out: &mut String) {
        for (name, kind, text, value) in [
            (
                "statehold_dedupe_hits_total",
                "counter",
                "Redeliveries answered from the recorded response.",
                &self.dedupe_hits,
            ),
            (
                "statehold_dedupe_mismatch_total",
                "counter",
                "Requests refused (409) because a known dedupe id came with a different body.",
                &self.dedupe_mismatches,
            ),
            (
                "statehold_buffered_bytes",
                "gauge",
                "Request body bytes buffered right now (bounded by server.max_buffered_bytes).",
                &self.buffered_bytes,
            ),
            (
                "statehold_conflicts_total",
                "counter",
                "Commits refused because the record moved on (version or fence).",
                &self.conflicts,
            ),
            (
                "statehold_store_up",
                "gauge",
                "1 when the last store operation succeeded.",
                &self.store_up,
            ),
            (
                "statehold_turns_waiting",
                "gauge",
                "Requests waiting for their conversation's turn right now.",
                &self.turns_waiting,
            ),
            (
                "statehold_spool_depth",
                "gauge",
                "Conversations whose degraded-mode snapshot waits to be written back.",
                &self.spool_depth,
            ),
        ] {
            help(out, name, kind, text);
            line(
                out,
                format_args!("{name} {}", value.load(Ordering::Relaxed)),
            );
        }
    }
}

/// `# HELP` and `# TYPE` lines of one metric.
fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    line(
        out,
        format_args!("# HELP {name} {text}\n# TYPE {name} {kind}"),
    );
}

/// Appends one line (writing to a `String` cannot fail).
fn line(out: &mut String, text: std::fmt::Arguments<'_>) {
    out.write_fmt(text).ok();
    out.push('\n');
}

#[cfg(test)]
mod tests;
