//! Where Sentinel says the primary is: every Sentinel is asked at once
//! and the newest configuration wins (the highest `config-epoch`, which
//! each failover raises). A Sentinel that has not heard of the latest
//! failover still names the old primary, which may be back up and call
//! itself a primary (empty, or behind) until the others demote it; the
//! first answer in the configured order would follow it there. The server
//! found is then confirmed with `ROLE`.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};

use super::error::OpError;

/// One Sentinel's view of the primary: its configuration epoch and address.
type View = (u64, (String, u16));

/// Asks every Sentinel at once (each within `op_timeout`) where `master`'s
/// primary is, and takes the answer from the newest configuration: the
/// highest `config-epoch`, which a failover raises. A Sentinel that has
/// not heard of the last failover answers with an older epoch; one that
/// sees the primary down (`s_down`, `o_down`) is not counted.
pub(super) async fn newest_primary(
    sentinels: &[Client],
    master: &str,
    op_timeout: Duration,
) -> Result<(String, u16), OpError> {
    let asks = sentinels.iter().map(|sentinel| async move {
        let ask = async {
            let config = AsyncConnectionConfig::new().set_response_timeout(None);
            let mut conn = sentinel
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(master)
                .query_async::<HashMap<String, String>>(&mut conn)
                .await
        };
        match tokio::time::timeout(op_timeout, ask).await {
            Ok(Ok(fields)) => primary_view(&fields),
            _ => None,
        }
    });
    let views = futures_util::future::join_all(asks).await;
    newest(views.into_iter().flatten()).ok_or_else(|| {
        OpError::Unavailable(format!("no Sentinel names a primary up for `{master}`").into())
    })
}

/// The newest view; between equal epochs, the first (the configured order).
fn newest(views: impl Iterator<Item = View>) -> Option<(String, u16)> {
    let mut best: Option<View> = None;
    for view in views {
        if best.as_ref().is_none_or(|(epoch, _)| view.0 > *epoch) {
            best = Some(view);
        }
    }
    best.map(|(_, addr)| addr)
}

/// A `SENTINEL MASTER` reply's epoch and address, when it names a primary
/// the Sentinel believes up.
fn primary_view(fields: &HashMap<String, String>) -> Option<View> {
    let flags: Vec<&str> = fields.get("flags")?.split(',').collect();
    let up = flags.contains(&"master") && !flags.contains(&"s_down") && !flags.contains(&"o_down");
    if !up {
        return None;
    }
    let epoch = fields.get("config-epoch")?.parse().ok()?;
    let port = fields.get("port")?.parse().ok()?;
    Some((epoch, (fields.get("ip")?.clone(), port)))
}

/// The server the Sentinels named says it is a primary (`ROLE`): not a
/// replica that has not been promoted yet, nor one already demoted.
pub(super) async fn confirm_primary(conn: &mut MultiplexedConnection) -> Result<(), OpError> {
    let role: Vec<Value> = redis::cmd("ROLE")
        .query_async(conn)
        .await
        .map_err(|e| OpError::Unavailable(e.into()))?;
    match role.first() {
        Some(Value::BulkString(word)) if word.as_slice() == b"master" => Ok(()),
        _ => Err(OpError::Unavailable(
            "the server the Sentinels name is not a primary (yet)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(flags: &str, epoch: &str, port: &str) -> HashMap<String, String> {
        [
            ("name", "mymaster"),
            ("ip", "127.0.0.1"),
            ("port", port),
            ("flags", flags),
            ("config-epoch", epoch),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn a_primary_seen_down_or_a_garbled_reply_is_no_view() {
        assert_eq!(
            primary_view(&reply("master", "3", "7001")),
            Some((3, ("127.0.0.1".into(), 7001)))
        );
        assert_eq!(primary_view(&reply("master,s_down", "3", "7001")), None);
        assert_eq!(
            primary_view(&reply("master,s_down,o_down", "3", "7001")),
            None
        );
        assert_eq!(primary_view(&reply("slave", "3", "7001")), None);
        assert_eq!(primary_view(&reply("master", "x", "7001")), None);
        assert_eq!(primary_view(&reply("master", "3", "70000")), None);
        assert_eq!(primary_view(&HashMap::new()), None);
    }

    #[test]
    fn the_newest_configuration_wins_whatever_the_order() {
        let at = |epoch: u64, port: u16| (epoch, ("127.0.0.1".to_string(), port));
        let lagging_first = [at(0, 7000), at(1, 7001), at(1, 7001)];
        assert_eq!(newest(lagging_first.into_iter()).map(|a| a.1), Some(7001));
        let tie = [at(2, 7002), at(2, 7003)];
        assert_eq!(newest(tie.into_iter()).map(|a| a.1), Some(7002));
        assert_eq!(newest(std::iter::empty()), None);
    }
}
