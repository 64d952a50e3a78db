//! The backends' clock for expiry: wall-clock milliseconds, since expiry
//! times are stored on disk and must mean the same after a restart, that
//! advance with tokio's clock. Anchored once per process to the system
//! clock, it then follows the monotonic clock (a wall-clock step during a
//! run moves no deadline), and in-process TTL tests run on tokio's paused
//! clock instead of sleeping.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

static ANCHOR: OnceLock<(u64, Instant)> = OnceLock::new();

/// Milliseconds since the Unix epoch, on tokio's clock.
pub fn now_ms() -> u64 {
    let (wall, at) = *ANCHOR.get_or_init(|| (system_ms(), Instant::now()));
    wall + Instant::now().saturating_duration_since(at).as_millis() as u64
}

/// The system clock, for what must agree with other machines (signature
/// timestamps).
pub fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
