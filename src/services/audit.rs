//! The audit note a change carries (the backend appends the event in the
//! change's own commit: `backend::audit`). Used by the request path and
//! the admin API's writes alike.

use crate::backend::audit::{self, AuditNote};
use crate::contract::StateChange;
use crate::key::ConvKey;

pub use crate::backend::audit::request_id;

/// Whether `[audit]` is on, and the notes it makes.
pub struct AuditNotes {
    on: bool,
}

impl AuditNotes {
    pub fn new(on: bool) -> AuditNotes {
        AuditNotes { on }
    }

    /// `[audit]` is on.
    pub fn on(&self) -> bool {
        self.on
    }

    /// The note for `change` on `conv` (`old`: the snapshot it replaces);
    /// `None` with `[audit]` off or for a change that changes nothing.
    pub fn note(
        &self,
        conv: &ConvKey,
        request_id: Option<String>,
        old: Option<&[u8]>,
        change: &StateChange,
    ) -> Option<Box<AuditNote>> {
        if !self.on {
            return None;
        }
        audit::note(conv, request_id, old, change)
    }

    /// The note of a link change: one even when the snapshot stays.
    pub fn link_note(
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
        let note = self.note(conv, request_id, old, change);
        note.or_else(|| self.on.then(|| Box::new(bare)))
    }

    /// The note of a change saved with a link change (`linking`: one even
    /// when the snapshot stays) or without.
    pub fn note_saved(
        &self,
        conv: &ConvKey,
        request_id: Option<String>,
        old: Option<&[u8]>,
        change: &StateChange,
        linking: bool,
    ) -> Option<Box<AuditNote>> {
        match linking {
            true => self.link_note(conv, request_id, old, change),
            false => self.note(conv, request_id, old, change),
        }
    }
}
