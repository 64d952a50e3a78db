//! Follows Sentinel's `+switch-master` announcements: when the primary
//! moves, the connection is dropped at once, so the next operation asks
//! Sentinel for the new primary instead of first meeting a dead socket or
//! `READONLY` from the demoted one (either still triggers the same
//! rediscovery; this makes it earlier, and logs the switch).

use std::time::Duration;

use futures_util::StreamExt;
use tracing::{debug, info};

use super::conn::WeakConn;

/// Listens on one Sentinel at a time (the next when it fails) until the
/// connection is gone.
pub(super) async fn follow_switches(conn: WeakConn) {
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        let Some(strong) = conn.upgrade() else { return };
        let Some((sentinels, master)) = strong.sentinels() else {
            return;
        };
        let (client, master) = (
            sentinels[next % sentinels.len()].clone(),
            master.to_string(),
        );
        next += 1;
        drop(strong);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe("+switch-master").await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        // "<master> <old ip> <old port> <new ip> <new port>"
                        let text = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                        let mut words = text.split_whitespace();
                        if words.next() != Some(master.as_str()) {
                            continue;
                        }
                        let Some(strong) = conn.upgrade() else { return };
                        let to: Vec<&str> = words.skip(2).collect();
                        info!(master = %master, to = %to.join(":"), "sentinel: the primary moved; reconnecting");
                        strong.invalidate();
                    }
                }
                Err(e) => debug!(error = %e, "sentinel subscribe failed"),
            },
            Err(e) => debug!(error = %e, "sentinel unreachable for failover notices"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
