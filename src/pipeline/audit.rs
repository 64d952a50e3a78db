//! What the audit trail is told of a change made on the request path (the
//! backend appends the event with the change: `backend::audit`).

use super::Pipeline;
use crate::backend::audit::{self, AuditNote};
use crate::backend::Backend;
use crate::contract::StateChange;
use crate::key::ConvKey;

pub(super) use crate::backend::audit::request_id;

impl<B: Backend> Pipeline<B> {
    /// The note for `change` on `conv` (`old`: the snapshot it replaces);
    /// `None` with `[audit]` off or for a change that changes nothing. The
    /// admin API's writes use it too.
    pub fn audit_note(
        &self,
        conv: &ConvKey,
        request_id: Option<String>,
        old: Option<&[u8]>,
        change: &StateChange,
    ) -> Option<Box<AuditNote>> {
        if !self.settings.audit {
            return None;
        }
        audit::note(conv, request_id, old, change)
    }

    /// `[audit]` is on.
    pub fn audits(&self) -> bool {
        self.settings.audit
    }

    /// The note of a link change: one even when the snapshot stays.
    pub(super) fn link_note(
        &self,
        conv: &ConvKey,
        request_id: Option<String>,
        old: Option<&[u8]>,
        change: &StateChange,
    ) -> Option<Box<AuditNote>> {
        let bare = AuditNote {
            request_id: request_id.clone(),
            ..AuditNote::bare(conv)
        };
        let note = self.audit_note(conv, request_id, old, change);
        note.or_else(|| self.settings.audit.then(|| Box::new(bare)))
    }
}
