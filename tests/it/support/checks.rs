//! The checks a chaos run ends with (`soak.rs`, `fleet.rs`): what the
//! platform saw against what is stored and what the bot did.

use serde_json::json;

use super::traffic::{update_id, Report};
use super::Statehold;

/// The checks every soak ends with: no wrong answer, every started
/// conversation at its goal with exactly its acknowledged steps stored
/// (once each, in order), no conversation handled concurrently by the
/// bot. Returns the conversations verified and the updates the bot ran
/// more than once (documented: the answer or the commit was lost to a
/// fault, and the platform redelivered; the stored state shows each
/// applied once).
pub fn verify(
    progress: &[(i64, usize)],
    goal: impl Fn(i64) -> usize,
    report: &Report,
    reader: &Statehold,
    (bot_overlaps, bot_runs): (u64, &[serde_json::Value]),
) -> (usize, usize) {
    let violations = report.violations.lock().unwrap();
    // The conversations a violation names ("chat N step S: ..."), whose
    // deliveries and the faults around them the failure prints.
    let named: Vec<i64> = violations
        .iter()
        .filter_map(|v| v.strip_prefix("chat ")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        violations.is_empty(),
        "{} violations: {:#?}\ntimeline:\n{}",
        violations.len(),
        &violations[..violations.len().min(20)],
        report.timeline_of(&named)
    );
    drop(violations);

    // Every started conversation reached its goal, and its stored state is
    // exactly its acknowledged steps, once each, in order.
    let mut verified = 0;
    for &(chat, done) in progress {
        let g = goal(chat);
        assert_eq!(done, g + 1, "chat {chat} finished its steps");
        let stored = reader.stored_once_reachable("tg", &chat.to_string());
        if g == 3 {
            assert_eq!(stored, None, "chat {chat}: a finished flow is cleared");
        } else {
            let stored =
                stored.unwrap_or_else(|| panic!("chat {chat}: acknowledged snapshot lost"));
            let want: Vec<u64> = (0..=g).map(|step| update_id(chat, step)).collect();
            assert_eq!(stored["state"]["applied"], json!(want), "chat {chat}");
        }
        verified += 1;
    }
    assert_eq!(bot_overlaps, 0, "no conversation was handled concurrently");

    // Updates the bot ran more than once (documented: the answer or the
    // commit was lost to a kill, a freeze or an outage, and the platform
    // redelivered). The state above shows each applied once.
    let mut seen = std::collections::HashMap::new();
    for h in bot_runs {
        *seen.entry(h["update_id"].to_string()).or_insert(0u32) += 1;
    }
    let reran = seen.values().filter(|&&n| n > 1).count();
    (verified, reran)
}
