//! The wire contract between statehold and the bot (docs/contract.md §3):
//! reserved `X-Statehold-*` headers, injecting the snapshot into a request
//! (header and body mode), and capturing the bot's reported snapshot from its
//! response (decode, validate, size check, strip).
//!
//! Pure functions over `http` types and bytes: no I/O, easy to fuzz and bench.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::key::ConvKey;

mod body;
pub mod link;
pub use body::{capture_body, looks_like_json, take_member, BodyReport};
pub use link::{capture_link, LinkAsk, HEADER_LINK, HEADER_UNLINK, HEADER_VIA};

pub const HEADER_KEY: &str = "x-statehold-key";
pub const HEADER_VERSION: &str = "x-statehold-version";
pub const HEADER_STATE: &str = "x-statehold-state";
pub const HEADER_STATUS: &str = "x-statehold-status";
pub const HEADER_CLEAR: &str = "x-statehold-clear";
/// Response: write a kept version (`store.history`) again as the newest.
pub const HEADER_ROLLBACK: &str = "x-statehold-rollback";
/// Request: this turn's token, for a late report (`POST /v1/turns/<token>`).
pub const HEADER_TURN: &str = "x-statehold-turn";
/// Response: the bot answered first and will report on this turn later.
pub const HEADER_DEFERRED: &str = "x-statehold-deferred";
/// Request, header mode: `body` when the snapshot is too large for a
/// header (`contract.max_header_bytes`) and travels in the JSON body's
/// member instead. Reserved, so only statehold can set it.
pub const HEADER_STATE_IN: &str = "x-statehold-state-in";
/// Tells the bot which check statehold made (`telegram`, `meta`, ...): in
/// body mode the body it forwards is not the one the platform signed.
pub const HEADER_VERIFIED: &str = "x-statehold-verified";
const RESERVED_PREFIX: &[u8] = b"x-statehold-";

/// Injection encodes without padding, as the contract says.
const B64_ENCODE: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Decoding accepts base64url with or without padding.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `X-Statehold-*`, also spelled with `_` for `-`: WSGI and CGI servers
/// turn `X_Statehold_State` into `HTTP_X_STATEHOLD_STATE`, the same as
/// `X-Statehold-State`.
fn is_reserved(name: &HeaderName) -> bool {
    // HeaderName is always lower case.
    let name = name.as_str().as_bytes();
    name.len() >= RESERVED_PREFIX.len()
        && name
            .iter()
            .zip(RESERVED_PREFIX)
            .all(|(&got, &want)| got == want || (got == b'_' && want == b'-'))
}

/// Removes every `X-Statehold-*` header. Runs on every inbound request before
/// anything else, and on every response before it leaves.
pub fn strip_reserved(headers: &mut HeaderMap) {
    if !headers.keys().any(is_reserved) {
        return;
    }
    let reserved: Vec<HeaderName> = headers.keys().filter(|n| is_reserved(n)).cloned().collect();
    for name in reserved {
        headers.remove(name);
    }
}

/// What `X-Statehold-Status` tells the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadStatus {
    /// A snapshot is injected.
    Restored,
    /// None is stored.
    New,
    /// The store could not be read; the route passes through.
    Degraded,
}

impl LoadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadStatus::Restored => "restored",
            LoadStatus::New => "new",
            LoadStatus::Degraded => "degraded",
        }
    }
}

/// What statehold hands the bot with a request.
#[derive(Clone, Copy)]
pub struct Injection<'a> {
    /// The conversation's key: a linked channel's member.
    pub key: &'a ConvKey,
    /// The linked channel the request came in on.
    pub via: Option<&'a ConvKey>,
    /// The snapshot's version, 0 when there is none.
    pub version: u64,
    pub status: LoadStatus,
    /// The snapshot's JSON text.
    pub state: Option<&'a [u8]>,
    /// This turn's token (none while the store is out: no turn is held).
    pub turn: Option<&'a str>,
}

/// Sets the `X-Statehold-*` request headers. `with_state` is false in body
/// mode, where the snapshot travels in the body and a large one would
/// otherwise hit the bot server's header size limit.
pub fn inject_headers(headers: &mut HeaderMap, inj: &Injection<'_>, with_state: bool) {
    if let Ok(v) = HeaderValue::from_str(inj.key.as_str()) {
        headers.insert(HeaderName::from_static(HEADER_KEY), v);
    }
    if let Some(Ok(v)) = inj.via.map(|via| HeaderValue::from_str(via.as_str())) {
        headers.insert(HeaderName::from_static(HEADER_VIA), v);
    }
    headers.insert(
        HeaderName::from_static(HEADER_VERSION),
        HeaderValue::from(inj.version),
    );
    headers.insert(
        HeaderName::from_static(HEADER_STATUS),
        HeaderValue::from_static(inj.status.as_str()),
    );
    if let Some(Ok(v)) = inj.turn.map(HeaderValue::from_str) {
        headers.insert(HeaderName::from_static(HEADER_TURN), v);
    }
    if let (true, Some(state)) = (with_state, inj.state) {
        let encoded = B64_ENCODE.encode(state);
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            headers.insert(HeaderName::from_static(HEADER_STATE), v);
        }
    }
}

/// Body mode: sets the member at `pointer` of a JSON-object body to
/// `{"key","version","status","state"}`, replacing whatever the client put
/// there. Returns false (body untouched) when the body is not a JSON object.
pub fn inject_body(body: &mut Value, pointer: &str, inj: &Injection<'_>) -> bool {
    let state = match inj.state {
        // Stored snapshots were validated on capture; a failure here means
        // the stored bytes are damaged, and the bot is better off with null.
        Some(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let mut field = Map::with_capacity(4);
    field.insert("key".into(), Value::String(inj.key.as_str().into()));
    field.insert("version".into(), Value::from(inj.version));
    field.insert("status".into(), Value::String(inj.status.as_str().into()));
    field.insert("state".into(), state);
    if let Some(via) = inj.via {
        field.insert("via".into(), Value::String(via.as_str().into()));
    }
    if let Some(turn) = inj.turn {
        field.insert("turn".into(), Value::String(turn.into()));
    }
    let (parents, last) = split_pointer(pointer);
    let Some(mut target) = body.as_object_mut() else {
        return false;
    };
    for token in parents {
        let slot = target
            .entry(token)
            .or_insert_with(|| Value::Object(Map::new()));
        match slot.as_object_mut() {
            Some(obj) => target = obj,
            None => return false,
        }
    }
    target.insert(last, Value::Object(field));
    true
}

/// Splits an RFC 6901 pointer into its unescaped parent tokens and last token.
fn split_pointer(pointer: &str) -> (Vec<String>, String) {
    let mut tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let last = tokens.pop().unwrap_or_default();
    (tokens, last)
}

/// What the bot asked for, from its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// Neither state nor clear: keep the snapshot, refresh its TTL.
    Keep,
    /// Store this JSON text as the new snapshot.
    Put(Bytes),
    /// Delete the snapshot (flow finished).
    Clear,
    /// Remove the whole record, version included: maintenance only
    /// (`statehold migrate` removing a moved plaintext key). Nothing in the
    /// wire contract can ask for it.
    Forget,
}

/// Why a reported snapshot was not stored. Never carries the content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("snapshot is neither a JSON object nor base64url of JSON text")]
    Undecodable,
    #[error("snapshot is {size} bytes, over store.max_state_bytes = {max}")]
    TooLarge { size: usize, max: usize },
    #[error("snapshot would be a {size}-byte header, over contract.max_header_bytes = {max}, and the request is not a JSON object that could carry it")]
    OverHeaderLimit { size: usize, max: usize },
    #[error("body field is neither {{\"state\": ...}} nor {{\"clear\": true}}")]
    BadBodyField,
    #[error("X-Statehold-Rollback is neither a version number nor \"previous\"")]
    BadRollback,
    #[error("the link report names no <namespace>:<id> key")]
    BadLink,
}

/// Which kept version the bot asks to roll back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackTo {
    Version(u64),
    /// The newest kept snapshot older than the current one.
    Previous,
}

/// The bot's `X-Statehold-Rollback`, as read (before capture strips it).
pub type RollbackAsked = Result<RollbackTo, CaptureError>;

/// `X-Statehold-Rollback: <version>` or `previous` in the bot's answer.
pub fn capture_rollback(headers: &HeaderMap) -> Option<Result<RollbackTo, CaptureError>> {
    let value = headers.get(HEADER_ROLLBACK)?.to_str().ok().map(str::trim);
    Some(match value {
        Some(v) if v.eq_ignore_ascii_case("previous") => Ok(RollbackTo::Previous),
        Some(v) => v
            .parse()
            .map(RollbackTo::Version)
            .map_err(|_| CaptureError::BadRollback),
        None => Err(CaptureError::BadRollback),
    })
}

/// Decodes an `X-Statehold-State` response value into JSON text: raw JSON
/// when it starts with `{`, else base64url (padding optional) of JSON text.
pub fn decode_state(value: &[u8], max: usize) -> Result<Bytes, CaptureError> {
    let json: Bytes = if value.first() == Some(&b'{') {
        if value.len() > max {
            return Err(CaptureError::TooLarge {
                size: value.len(),
                max,
            });
        }
        Bytes::copy_from_slice(value)
    } else {
        // Reject before decoding what could not fit anyway.
        let estimate = value.len() / 4 * 3;
        if estimate > max + 2 {
            return Err(CaptureError::TooLarge {
                size: estimate,
                max,
            });
        }
        let decoded = B64_DECODE
            .decode(value)
            .map_err(|_| CaptureError::Undecodable)?;
        if decoded.len() > max {
            return Err(CaptureError::TooLarge {
                size: decoded.len(),
                max,
            });
        }
        Bytes::from(decoded)
    };
    validate_json(&json)?;
    Ok(json)
}

/// Checks JSON syntax without building a tree (serde_json also bounds
/// nesting depth, so hostile input cannot overflow the stack). UTF-8 is
/// checked first: skipping over strings, serde_json does not validate it
/// (found by the `contract_decode` fuzz target).
fn validate_json(text: &[u8]) -> Result<(), CaptureError> {
    std::str::from_utf8(text).map_err(|_| CaptureError::Undecodable)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(text).map_err(|_| CaptureError::Undecodable)?;
    // Skipping strings does not decode their escapes either: a lone
    // surrogate (`"\uDADD"`) would pass and then fail every later parse
    // (another fuzzer find). Escapes are rare, so only then parse fully.
    if text.windows(2).any(|w| w == b"\\u") {
        serde_json::from_slice::<Value>(text).map_err(|_| CaptureError::Undecodable)?;
    }
    Ok(())
}

/// `X-Statehold-Deferred: 1` (or `true`): the bot answered first and
/// reports on the turn later.
pub fn capture_deferred(headers: &HeaderMap) -> bool {
    headers.get(HEADER_DEFERRED).is_some_and(|v| {
        let v = v.as_bytes();
        v == b"1" || v.eq_ignore_ascii_case(b"true")
    })
}

/// Reads the bot's headers: `X-Statehold-Clear: 1` wins over a state.
pub fn capture_headers(headers: &HeaderMap, max: usize) -> Result<StateChange, CaptureError> {
    if let Some(v) = headers.get(HEADER_CLEAR) {
        let v = v.as_bytes();
        if v == b"1" || v.eq_ignore_ascii_case(b"true") {
            return Ok(StateChange::Clear);
        }
    }
    match headers.get(HEADER_STATE) {
        Some(v) => decode_state(v.as_bytes(), max).map(StateChange::Put),
        None => Ok(StateChange::Keep),
    }
}

/// Sets `Content-Length` after the body was rewritten.
pub fn fix_content_length(headers: &mut HeaderMap, len: usize) {
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// Encodes JSON text as the contract's base64url without padding (tests,
/// the demo bot and the admin API use it too).
pub fn encode_state(json: &[u8]) -> String {
    B64_ENCODE.encode(json)
}

/// The length of `X-Statehold-State` for a snapshot of `len` bytes
/// (base64url without padding).
pub fn encoded_len(len: usize) -> usize {
    len / 3 * 4 + [0, 2, 3][len % 3]
}

/// Whether a bot's answer body repeats the snapshot it was handed: the
/// start of its header value (a server echoing the header line it
/// refused) or of its JSON text (a framework echoing the request body it
/// refused). Shorter snapshots than [`ECHO_MIN`] are not searched for:
/// they would match by chance.
pub fn echoes_state(answer: &[u8], state: &[u8]) -> bool {
    let encoded = encode_state(state);
    let compact = serde_json::from_slice::<Value>(state)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok());
    let found = |text: &[u8]| {
        let needle = &text[..text.len().min(ECHO_PREFIX)];
        needle.len() >= ECHO_MIN && answer.windows(needle.len()).any(|w| w == needle)
    };
    found(encoded.as_bytes()) || compact.as_deref().is_some_and(found)
}

/// How much of the snapshot's start [`echoes_state`] looks for.
const ECHO_PREFIX: usize = 32;
/// The shortest start [`echoes_state`] looks for.
pub const ECHO_MIN: usize = 12;

/// Decodes base64url with or without padding.
pub fn decode_b64(text: &[u8]) -> Option<Vec<u8>> {
    B64_DECODE.decode(text).ok()
}

#[cfg(test)]
mod tests;
