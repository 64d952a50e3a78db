//! W3C Trace Context (`traceparent: 00-<trace id>-<parent id>-<flags>`):
//! statehold forwards the header to the bot untouched and puts the trace
//! id on its request log line, so one trace id finds the platform's call,
//! statehold's line and the bot's. A header that is not well formed is
//! forwarded all the same (it is the bot's business) but not logged.

use http::HeaderMap;

/// The trace id of a well-formed `traceparent`: version `00` (or a later
/// one, read by its first four fields), 32 lowercase hex digits not all
/// zero, a 16-digit parent id not all zero, two flag digits.
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("traceparent")?.to_str().ok()?.trim();
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let well_formed = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && !zero(trace)
        && hex(parent, 16)
        && !zero(parent)
        && hex(flags, 2);
    well_formed.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn of(v: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(v).unwrap());
        trace_id(&h).map(str::to_string)
    }

    #[test]
    fn only_well_formed_trace_ids_are_read() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            of(good).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(of(bad), None, "{bad}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(of(later).is_some());
        assert_eq!(trace_id(&HeaderMap::new()), None);
    }
}
