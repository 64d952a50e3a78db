//! Catching a bot that answers before it handles: frameworks that answer
//! the webhook first and run the handlers afterwards (aiogram's
//! `handle_in_background=True`, python-telegram-bot's `run_webhook`, Slack
//! Bolt without `processBeforeResponse`) produce their state after the
//! answer left, so it is never reported and never saved, and nothing fails
//! until the first restart. Its signature: keyed requests answered 2xx
//! within a few milliseconds, with no state report, one after another.
//!
//! Each such answer counts in `statehold_unreported_total{route}`; a run of
//! `RUN` of them on a route (any report ends the run) logs one warning per
//! route, naming the guide (`docs/frameworks.md#the-unreported-warning`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// An answer faster than this cannot have waited for a handler that
/// produces state (a network round trip to the platform's API alone takes
/// longer).
pub(super) const FAST: Duration = Duration::from_millis(10);

/// Unreported fast answers in a row before the warning.
pub(super) const RUN: u32 = 20;

/// Per route: the current run of unreported fast answers, and whether the
/// warning was given.
pub(super) struct Unreported {
    routes: Vec<(AtomicU32, AtomicBool)>,
}

/// One keyed answer, as far as the detector cares.
pub(super) enum Report {
    /// The bot reported state (or cleared it): a run ends.
    Reported,
    /// A 2xx answer within `FAST`, without a report.
    FastSilence,
    /// Anything else (slow, or not 2xx): tells nothing either way.
    Other,
}

impl Unreported {
    pub(super) fn new(routes: usize) -> Unreported {
        Unreported {
            routes: (0..routes)
                .map(|_| (AtomicU32::new(0), AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Records one answer; `true` exactly once per route, when a run
    /// reaches `RUN`.
    pub(super) fn observe(&self, route: usize, report: Report) -> bool {
        let Some((run, warned)) = self.routes.get(route) else {
            return false;
        };
        match report {
            Report::Reported => {
                run.store(0, Ordering::Relaxed);
                false
            }
            Report::FastSilence => {
                let n = run.fetch_add(1, Ordering::Relaxed) + 1;
                n >= RUN && !warned.swap(true, Ordering::Relaxed)
            }
            Report::Other => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_after_a_run_and_a_report_resets_it() {
        let u = Unreported::new(2);
        for _ in 0..RUN - 1 {
            assert!(!u.observe(0, Report::FastSilence));
        }
        assert!(!u.observe(0, Report::Reported), "a report ends the run");
        for _ in 0..RUN - 1 {
            assert!(!u.observe(0, Report::FastSilence));
        }
        assert!(
            !u.observe(0, Report::Other),
            "slow answers neither count nor reset"
        );
        assert!(u.observe(0, Report::FastSilence), "the run is complete");
        assert!(!u.observe(0, Report::FastSilence), "once per route");
        assert!(!u.observe(1, Report::FastSilence), "routes are apart");
        assert!(!u.observe(7, Report::FastSilence), "unknown route: ignored");
    }
}
