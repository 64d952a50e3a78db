//! The wire contract's two stages on the request path: inject the
//! snapshot (and the verification kind) into the request, capture the bot's
//! report from its answer and strip every trace of it.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_ENCODING};
use tracing::warn;

use super::reject::Reject;
use super::request::Admitted;
use super::PathStore;
use super::{body, Answer, Ctx, Pipeline};
use crate::backend::Loaded;
use crate::contract::{
    self, BodyReport, CaptureError, Injection, LinkAsk, LoadStatus, StateChange,
};
use crate::key::ConvKey;
use crate::metrics::{LinkResult, LoadResult, SaveResult};

impl<B: PathStore> Pipeline<B> {
    /// Puts the snapshot and the verification kind into the request; in body
    /// mode the client's member is replaced or removed. Header mode carries
    /// a snapshot over `contract.max_header_bytes` in the body's member
    /// when the body is a JSON object. Returns the body to send; the
    /// parsed body is let go (nothing reads it after this stage).
    pub(super) fn inject(
        &self,
        admitted: &mut Admitted,
        injection: Option<&Injection<'_>>,
    ) -> Result<Bytes, Reject> {
        let mut json = admitted.json.take();
        let (parts, body) = (&mut admitted.parts, admitted.body.clone());
        let (json, verified) = (json.as_mut(), admitted.verified);
        let oversized = injection.is_some_and(|inj| self.over_header_limit(inj));
        let (body, state_in_body) = if self.body_mode() {
            body::set_member(json, body, &self.settings.body_field, injection)?
        } else if oversized {
            let mut parsed;
            let json = match json {
                Some(doc) => Some(doc),
                None => {
                    parsed = body::parse_json(&body, false)?;
                    parsed.as_mut()
                }
            };
            body::set_member(json, body, &self.settings.body_field, injection)?
        } else {
            (body, false)
        };
        if let Some(inj) = injection {
            if oversized && !state_in_body {
                self.undeliverable(inj);
                let bare = Injection {
                    state: None,
                    status: LoadStatus::New,
                    ..*inj
                };
                contract::inject_headers(&mut parts.headers, &bare, false);
            } else {
                contract::inject_headers(&mut parts.headers, inj, !state_in_body);
            }
            if oversized && state_in_body {
                parts.headers.insert(
                    HeaderName::from_static(contract::HEADER_STATE_IN),
                    HeaderValue::from_static("body"),
                );
            }
        }
        if let Some(kind) = verified {
            parts.headers.insert(
                HeaderName::from_static(contract::HEADER_VERIFIED),
                HeaderValue::from_static(kind.as_str()),
            );
        }
        contract::fix_content_length(&mut parts.headers, body.len());
        Ok(body)
    }

    /// Header mode: why a snapshot of `len` bytes cannot travel in
    /// `X-Statehold-State` (longer than `contract.max_header_bytes`: bot
    /// servers refuse header lines of 8 KiB and more, and the conversation
    /// would be stuck); `None` when it can, or in body mode.
    fn header_overflow(&self, len: usize) -> Option<CaptureError> {
        let (size, max) = (contract::encoded_len(len), self.settings.max_header_bytes);
        (!self.body_mode() && size > max).then_some(CaptureError::OverHeaderLimit { size, max })
    }

    fn over_header_limit(&self, inj: &Injection<'_>) -> bool {
        inj.state
            .is_some_and(|state| self.header_overflow(state.len()).is_some())
    }

    /// A snapshot too large for a header, and a request that cannot carry
    /// it in its body: the bot sees a new conversation (as with a snapshot
    /// it cannot open); the stored one stays until the bot writes.
    fn undeliverable(&self, inj: &Injection<'_>) {
        self.svc.metrics.load(LoadResult::Oversized);
        warn!(key = %inj.key.display(self.settings.reveal_ids),
            max_header_bytes = self.settings.max_header_bytes,
            "snapshot too large for a header and the request is not a JSON object: the bot sees a new conversation");
    }

    /// An error answer that repeats the snapshot the bot was handed (a bot
    /// server echoing the header line or the body it refused) never
    /// reaches the client: 502 with a fixed text, nothing stored.
    pub(super) fn withhold_echo(
        &self,
        answer: &Answer,
        handed: Option<&Loaded>,
        conv: &ConvKey,
    ) -> Result<(), Reject> {
        let status = answer.parts.status;
        let Some(state) = handed.and_then(|l| l.state.as_deref()) else {
            return Ok(());
        };
        if status.as_u16() < 400 || !contract::echoes_state(&answer.body, state) {
            return Ok(());
        }
        self.svc.metrics.save(SaveResult::Rejected);
        warn!(key = %conv.display(self.settings.reveal_ids), status = status.as_u16(),
            "the bot's error answer repeats the snapshot it was handed: withheld (502), nothing stored");
        Err(Reject::bad_gateway(
            "the bot's answer could not be passed on",
        ))
    }

    /// Reads the bot's report and strips it from the answer. A body-mode
    /// answer that cannot be stripped (compressed, or JSON that mentions the
    /// member but does not parse) never leaves: 502.
    /// Also returns the bot's link report, if it made a valid one, and
    /// whether it deferred its report.
    /// `request` is the body the request came with: in header mode a
    /// snapshot too large for a header is kept only when that body is a
    /// JSON object (the next one will carry it, see [`Self::inject`]).
    pub(super) fn capture(
        &self,
        answer: &mut Answer,
        conv: Option<&ConvKey>,
        request: &[u8],
    ) -> Result<Reported, Reject> {
        let Answer { parts, body } = answer;
        // Formatted only when a line is logged (tracing evaluates fields lazily).
        let shown = || {
            conv.map_or_else(
                || "-".to_string(),
                |k| k.display(self.settings.reveal_ids).to_string(),
            )
        };
        let max = self.settings.max_state_bytes;
        let mut change = contract::capture_headers(&parts.headers, max);
        let mut link = contract::capture_link(&parts.headers);
        let mut deferred = contract::capture_deferred(&parts.headers);
        let rollback = contract::capture_rollback(&parts.headers);
        if self.body_mode() {
            let (report, encoded) = self.body_report(parts, body);
            match report {
                BodyReport::Absent => {}
                BodyReport::Found(new_body, from_body, body_link, body_deferred) => {
                    deferred |= body_deferred;
                    *body = new_body;
                    contract::fix_content_length(&mut parts.headers, body.len());
                    change = merge_changes(change, from_body);
                    link = body_link.or(link);
                }
                BodyReport::Unreadable => {
                    self.svc.metrics.save(SaveResult::Rejected);
                    warn!(key = %shown(), compressed = encoded, "the bot's answer cannot be stripped of its state report: withheld (502), nothing stored");
                    return Err(Reject::bad_gateway("the bot's answer could not be read"));
                }
            }
        }
        contract::strip_reserved(&mut parts.headers);
        let change = change.and_then(|c| self.fits_a_header(c, request));
        let link = match link {
            Some(Err(e)) => {
                self.svc.metrics.link(LinkResult::Invalid);
                warn!(key = %shown(), reason = %e, "link report ignored: the conversation stays as it was");
                None
            }
            other => other.and_then(Result::ok),
        };
        let change = change.unwrap_or_else(|e| {
            self.svc.metrics.save(SaveResult::Rejected);
            warn!(key = %shown(), reason = %e, "snapshot not stored: the previous one stays");
            StateChange::Keep
        });
        Ok(Reported {
            change,
            link,
            rollback,
            deferred,
        })
    }
}

impl<B: PathStore> Pipeline<B> {
    /// Body mode: the answer's member, read and removed from a copy of the
    /// body; a compressed answer cannot be read (and says so: `true`).
    fn body_report(&self, parts: &http::response::Parts, body: &[u8]) -> (BodyReport, bool) {
        let encoded = parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let report = if encoded {
            BodyReport::Unreadable
        } else {
            let max = self.settings.max_state_bytes;
            contract::capture_body(body, &self.settings.body_field, max)
        };
        (report, encoded)
    }
}

impl<B: PathStore> Pipeline<B> {
    /// Header mode: a snapshot too large for a header is refused unless the
    /// request that reported it is a JSON object (the conversation's next
    /// ones will carry it in their body).
    fn fits_a_header(
        &self,
        change: StateChange,
        request: &[u8],
    ) -> Result<StateChange, CaptureError> {
        let overflow = match &change {
            StateChange::Put(state) => self.header_overflow(state.len()),
            _ => None,
        };
        let carrier = || {
            body::parse_json(request, false)
                .ok()
                .flatten()
                .is_some_and(|v| v.is_object())
        };
        match overflow {
            Some(e) if !carrier() => Err(e),
            _ => Ok(change),
        }
    }

    /// A late report's snapshot, in header mode: one too large for a
    /// header is kept only on a route keyed from the JSON body (its
    /// requests can carry it); else refused, counted and logged.
    pub(super) fn late_report_fits(
        &self,
        route: &super::route::Route,
        conv: &ConvKey,
        change: &StateChange,
    ) -> bool {
        let overflow = match change {
            StateChange::Put(state) if !route.needs_json => self.header_overflow(state.len()),
            _ => None,
        };
        let Some(e) = overflow else {
            return true;
        };
        self.svc.metrics.save(SaveResult::Rejected);
        warn!(key = %conv.display(self.settings.reveal_ids), reason = %e, "late report refused: the previous snapshot stays");
        false
    }
}

/// What the bot reported: read and stripped from its answer, or sent in a
/// late report. What the check and save stages work on.
pub(super) struct Reported {
    pub(super) change: StateChange,
    pub(super) link: Option<LinkAsk>,
    /// `X-Statehold-Rollback`: a kept version to go back to.
    pub(super) rollback: Option<contract::RollbackAsked>,
    /// `X-Statehold-Deferred: 1` (body mode: `"deferred": true`).
    pub(super) deferred: bool,
}

/// What the bot is told of the conversation (`loaded` is `None` while the
/// store is out). A linked channel's request names its member as the key
/// and the channel as `via`.
pub(super) fn injection<'a>(
    conv: &'a ConvKey,
    loaded: Option<&'a Loaded>,
    turn: Option<&'a str>,
) -> Injection<'a> {
    let (status, version, state) = match loaded {
        Some(l) if l.state.is_some() => (
            LoadStatus::Restored,
            l.visible_version(),
            l.state.as_deref(),
        ),
        Some(l) => (LoadStatus::New, l.visible_version(), None),
        None => (LoadStatus::Degraded, 0, None),
    };
    let member = loaded.and_then(|l| l.member.as_ref());
    Injection {
        key: member.unwrap_or(conv),
        via: member.map(|_| conv),
        version,
        status,
        state,
        turn,
    }
}

/// Body mode: a clear from either place wins; otherwise the body field's
/// state wins over the header's.
fn merge_changes(
    header: Result<StateChange, CaptureError>,
    body: Result<StateChange, CaptureError>,
) -> Result<StateChange, CaptureError> {
    match (header, body) {
        (Ok(StateChange::Clear), _) | (_, Ok(StateChange::Clear)) => Ok(StateChange::Clear),
        (h, Ok(StateChange::Keep)) => h,
        (_, b) => b,
    }
}

impl<B: PathStore> Pipeline<B> {
    /// Feeds the answers-before-handling detector (`unreported.rs`): counts
    /// a fast 2xx answer without a report, and warns once per route when
    /// they come in a run.
    pub(super) fn watch_reports(&self, reported: &Reported, answer: &Answer, cx: &Ctx<'_>) {
        use super::unreported::{Report, FAST, RUN};
        let route = cx.route;
        let report = if reported.change != StateChange::Keep || reported.deferred {
            Report::Reported
        } else if answer.parts.status.is_success() && cx.upstream_time < FAST {
            self.svc.metrics.unreported(route.index);
            Report::FastSilence
        } else {
            Report::Other
        };
        if self.unreported.observe(route.index, report) {
            warn!(
                route = %route.path,
                run = RUN,
                "the bot answered {RUN} requests in a row within {FAST:?} without reporting state: \
                 it probably answers the webhook before its handlers run, so their state is never \
                 saved; see docs/frameworks.md#the-unreported-warning"
            );
        }
    }
}
