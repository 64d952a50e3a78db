//! The deferred turns' metrics: `statehold_deferred_reports_total{route,
//! result}` (what became of each deferred turn's late report) and
//! `statehold_turns_deferred` (turns awaiting one right now).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{help, line};

/// What became of a deferred turn's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeferredResult {
    /// A snapshot was saved.
    Saved,
    /// The conversation was cleared.
    Cleared,
    /// The bot reported `{"unchanged": true}`.
    Unchanged,
    /// Refused: the route's rules, an ambiguous report, a deferred answer
    /// that also reported.
    Refused,
    /// No report came within `route.report_timeout`.
    Timeout,
    /// A report for a token that names no deferred turn (unknown, used,
    /// or past its timeout).
    Unknown,
}

const RESULTS: [&str; 6] = [
    "saved",
    "cleared",
    "unchanged",
    "refused",
    "timeout",
    "unknown",
];

/// Counters per route (the last slot: reports whose route is not known,
/// such as an unknown token's) and the gauge.
pub struct Deferred {
    reports: Vec<[AtomicU64; 6]>,
    awaiting: AtomicU64,
}

/// Counts a turn as deferred until dropped.
pub struct AwaitingGuard<'a>(&'a AtomicU64);

impl Drop for AwaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Deferred {
    pub(super) fn new(routes: usize) -> Deferred {
        Deferred {
            reports: (0..routes)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            awaiting: AtomicU64::new(0),
        }
    }

    /// `route`: an index of the configured routes; anything else counts
    /// under `unmatched`.
    pub fn report(&self, route: usize, result: DeferredResult) {
        let route = route.min(self.reports.len() - 1);
        self.reports[route][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one turn awaiting its report while the guard lives.
    pub fn awaiting(&self) -> AwaitingGuard<'_> {
        self.awaiting.fetch_add(1, Ordering::Relaxed);
        AwaitingGuard(&self.awaiting)
    }

    pub(super) fn render(&self, routes: &[String], out: &mut String) {
        let name = "statehold_deferred_reports_total";
        help(
            out,
            name,
            "counter",
            "Late reports of deferred turns (POST /v1/turns/<token>) by route and result.",
        );
        for (route, counts) in routes.iter().zip(&self.reports) {
            for (result, n) in RESULTS.iter().zip(counts) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 || route != "unmatched" {
                    line(
                        out,
                        format_args!("{name}{{route=\"{route}\",result=\"{result}\"}} {n}"),
                    );
                }
            }
        }
        let name = "statehold_turns_deferred";
        help(
            out,
            name,
            "gauge",
            "Turns held for a late report right now (the bot answered X-Statehold-Deferred).",
        );
        line(
            out,
            format_args!("{name} {}", self.awaiting.load(Ordering::Relaxed)),
        );
    }
}
