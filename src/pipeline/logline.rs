//! How a request on a route ends: its metrics and its one log line (the
//! key masked unless `log.reveal_ids`, never a snapshot).

use std::time::Duration;

use http::Response;
use tracing::info;

use super::request::Ctx;
use super::PathStore;
use super::{Body, Pipeline, Reject};

impl Ctx<'_> {
    /// statehold answered by itself: the reject's outcome and reason go on
    /// the line.
    pub(super) fn rejected(&mut self, reject: Reject) -> Response<Body> {
        self.outcome = reject.outcome;
        self.reason = Some(reject.log_text());
        reject.response()
    }
}

impl<B: PathStore> Pipeline<B> {
    /// Counts the request and writes its line.
    pub(super) fn ended(
        &self,
        cx: &Ctx<'_>,
        resp: &Response<Body>,
        took: Duration,
        trace_id: Option<&str>,
    ) {
        let route = cx.route;
        let status = resp.status().as_u16();
        self.svc
            .metrics
            .request(route.index, cx.outcome, status, took);
        // Fields are only evaluated when the line is logged.
        info!(
            route = %route.path,
            namespace = %route.namespace,
            key = cx
                .key
                .as_ref()
                .map_or_else(|| "-".to_string(), |k| k.display(self.settings.reveal_ids).to_string()),
            outcome = cx.outcome.as_str(),
            status,
            version = cx.version.unwrap_or(0),
            took_us = took.as_micros() as u64,
            upstream_us = cx.upstream_time.as_micros() as u64,
            store_us = cx.store_time.as_micros() as u64,
            reason = cx.reason.as_deref().unwrap_or(""),
            trace_id = trace_id.unwrap_or("-"),
            "request"
        );
    }
}
