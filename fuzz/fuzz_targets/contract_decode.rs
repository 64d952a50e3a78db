//! Snapshot decoding (header and body mode) and recorded-response decoding
//! on arbitrary bytes: never panics, never stores more than the limit, and
//! what it accepts is valid JSON.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use statehold::contract::{capture_body, decode_state, BodyReport, StateChange};
use statehold::backend::RecordedResponse;

const MAX: usize = 4096;

fn valid(json: &[u8]) -> bool {
    json.len() <= MAX && serde_json::from_slice::<serde_json::Value>(json).is_ok()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = decode_state(data, MAX) {
        assert!(valid(&json));
    }
    if let BodyReport::Found(body, change, _, _) = capture_body(data, "/_statehold", MAX) {
        if let Ok(StateChange::Put(json)) = change {
            assert!(valid(&json));
        }
        // The member is gone from what leaves.
        let left: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert!(left.get("_statehold").is_none());
    }
    if let Ok(r) = RecordedResponse::decode(Bytes::copy_from_slice(data)) {
        // What decodes re-encodes to the same bytes.
        assert_eq!(RecordedResponse::decode(r.encode()).ok(), Some(r));
    }
});
