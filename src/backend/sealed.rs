//! Records as `Private` stores them: opening what a turn or a load read
//! (snapshot and recorded answer), and the carrier record a sealed answer
//! travels in (status 200, one header [`SEALED_HEADER`], the sealed
//! encoding as its body).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use tracing::warn;

use super::{Loaded, RecordedResponse};
use crate::key::ConvKey;
use crate::privacy::Privacy;

/// Marks a carrier record. Bots cannot plant it: reserved `x-statehold-*`
/// headers are stripped from their answers before anything is recorded.
pub const SEALED_HEADER: &str = "x-statehold-sealed";

pub(super) fn carrier(sealed: Bytes) -> RecordedResponse {
    RecordedResponse {
        status: StatusCode::OK,
        headers: vec![(
            HeaderName::from_static(SEALED_HEADER),
            HeaderValue::from_static("1"),
        )],
        body: sealed,
        request_digest: None,
    }
}

/// Opens what `begin` or `load` read. A snapshot that cannot be opened is
/// reported (`undecryptable`) and not shown; a recorded answer that cannot
/// be opened is dropped (the redelivery then runs the bot again), logged.
pub(super) fn open(
    p: &Privacy,
    stored: &ConvKey,
    dedupe: Option<&str>,
    mut loaded: Loaded,
) -> Loaded {
    if let Some(value) = loaded.state.take() {
        match p.open_state(stored, value) {
            Ok(json) => loaded.state = Some(json),
            Err(e) => loaded.undecryptable = Some(e),
        }
    }
    let sealed = |r: &RecordedResponse| r.headers.iter().any(|(n, _)| n == SEALED_HEADER);
    if let (Some(record), Some(name)) = (loaded.duplicate.take(), dedupe) {
        if !sealed(&record) {
            loaded.duplicate = Some(record);
        } else {
            let opened = p
                .open_recorded(stored, name, record.body)
                .map_err(|e| e.to_string())
                .and_then(|plain| RecordedResponse::decode(plain).map_err(|e| e.to_string()));
            match opened {
                Ok(record) => loaded.duplicate = Some(record),
                Err(e) => {
                    warn!(error = %e, "recorded answer cannot be opened; the redelivery runs the bot again")
                }
            }
        }
    }
    loaded
}
