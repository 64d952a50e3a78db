//! The key-marks check ([`crate::privacy::marks`]) against the store: at
//! start, where a mismatch stops the process (exit 2, naming the config
//! keys), and on `/readyz`, where it makes the replica not ready.

use tracing::warn;

use super::private::Private;
use super::{Backend, Lifecycle, StoreError};
use crate::privacy::marks::KeyMismatch;

/// Why the check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum MarksError {
    #[error(transparent)]
    Mismatch(#[from] KeyMismatch),
    #[error("the store's key marks could not be read or written: {0}")]
    Store(#[from] StoreError),
}

impl<B: Backend> Private<B> {
    /// Compares this process's key marks with the store's; at start it also
    /// records them (see [`crate::privacy::marks::KeyMarks::judge`]).
    pub async fn check_key_marks(&self, at_start: bool) -> Result<(), MarksError> {
        let mine = self.privacy().marks();
        // Twice at most: a replica starting at the same moment may record
        // its hashing mark between our read and our write.
        for _ in 0..2 {
            let Some(recorded) = self.recorded_marks().await? else {
                return Ok(());
            };
            let writes = mine.judge(&recorded, at_start)?;
            if writes.hash.is_none() && writes.seal.is_none() {
                return Ok(());
            }
            if self.record_marks(recorded.hash.as_deref(), &writes).await? {
                return Ok(());
            }
        }
        Err(StoreError::Timeout.into())
    }

    /// The check at start: a mismatch stops the process; a store that does
    /// not answer now is checked again by `/readyz`.
    pub async fn key_marks_at_start(&self) -> Result<(), KeyMismatch> {
        match self.check_key_marks(true).await {
            Ok(()) => Ok(()),
            Err(MarksError::Mismatch(e)) => Err(e),
            Err(e @ MarksError::Store(_)) => {
                warn!(error = %e, "key marks not checked at startup; /readyz checks them once the store answers");
                Ok(())
            }
        }
    }
}
