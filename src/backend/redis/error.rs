//! The Redis backend's own errors: an operation's ([`OpError`], mapped to
//! the store's [`StoreError`] by kind) and the client's at startup
//! ([`ConnError`]). Their own module, so the connection and the endpoint
//! both use them without using each other.

use crate::backend::{Cause, StoreError};

/// Why a Redis operation failed. The store and the turns map it to their
/// own errors; the circuit breaker counts all but [`OpError::Reply`].
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Unreachable, or answering that it cannot serve now.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] Cause),
    #[error("redis operation timed out")]
    Timeout,
    /// Redis answered with an error of ours (a script error).
    #[error("redis replied with an error: {0}")]
    Reply(#[source] redis::RedisError),
}

impl From<OpError> for StoreError {
    fn from(e: OpError) -> StoreError {
        match e {
            OpError::Unavailable(cause) => StoreError::Unavailable(cause),
            OpError::Timeout => StoreError::Timeout,
            // A key of the wrong type is a damaged record; any other reply
            // is Redis refusing the operation. Neither is an outage.
            OpError::Reply(e) if e.code() == Some("WRONGTYPE") => StoreError::Corrupt(e.into()),
            OpError::Reply(e) => StoreError::Script(e.into()),
        }
    }
}

/// Why the Redis client could not be built (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("store.tls_ca {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("redis address: {0}")]
    Url(redis::RedisError),
}
