//! statehold's own answers ([`Reject`]): a status, the outcome, a fixed
//! short message for the client, and its cause for the log only (never error
//! chains, ids or state in a body that leaves).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::Body;
use crate::outcome::Outcome;

/// An answer statehold gives by itself.
pub struct Reject {
    pub status: StatusCode,
    pub outcome: Outcome,
    /// Short and fixed: sent to the client.
    pub reason: Cow<'static, str>,
    /// Why, for the log line only: the error it stands for, its sources
    /// kept (never sent to the client).
    pub cause: Option<crate::error::Cause>,
    /// The bot already handled the request: a retry would run it again,
    /// so no `Retry-After` invites one (the platform redelivers anyway;
    /// a dedupe record, where written, answers it).
    pub bot_ran: bool,
}

impl Reject {
    pub fn new(
        status: StatusCode,
        outcome: Outcome,
        reason: impl Into<Cow<'static, str>>,
    ) -> Reject {
        Reject {
            status,
            outcome,
            reason: reason.into(),
            cause: None,
            bot_ran: false,
        }
    }

    /// Marks an answer given after the bot handled the request.
    pub fn after_bot(mut self) -> Reject {
        self.bot_ran = true;
        self
    }

    /// The store refused one conversation's operation (not an outage).
    pub fn store_error(e: crate::backend::StoreError) -> Reject {
        Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::StoreError,
            "the conversation's stored record could not be used",
        )
        .because(e)
    }

    /// The error this answer stands for.
    pub fn because(mut self, cause: impl Into<crate::error::Cause>) -> Reject {
        self.cause = Some(cause.into());
        self
    }

    /// What the log line says: the reason, then the cause and its
    /// sources.
    pub fn log_text(&self) -> String {
        match self.cause.as_deref() {
            Some(cause) => format!("{}: {}", self.reason, crate::error::chain(cause)),
            None => self.reason.to_string(),
        }
    }

    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> Reject {
        Reject::new(StatusCode::BAD_REQUEST, Outcome::BadRequest, reason)
    }

    /// The bot's answer cannot leave as it is.
    pub fn bad_gateway(reason: &'static str) -> Reject {
        Reject::new(StatusCode::BAD_GATEWAY, Outcome::UpstreamError, reason)
    }

    /// A small JSON body naming the outcome and the fixed reason.
    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({
            "error": self.outcome.as_str(),
            "message": self.reason,
        })
        .to_string();
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Only where a retry is safe: the bot has not acted yet.
        if self.status == StatusCode::SERVICE_UNAVAILABLE && !self.bot_ran {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

/// Seconds the platform is asked to wait after a 503.
const RETRY_AFTER_SECS: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StoreError;

    #[test]
    fn the_log_line_names_the_cause_once_and_the_client_never_sees_it() {
        let reject = Reject::store_error(StoreError::Corrupt("a damaged alias".into()));
        assert_eq!(
            reject.log_text(),
            "the conversation's stored record could not be used: stored data is damaged: a damaged alias"
        );
        assert!(matches!(
            reject
                .cause
                .as_deref()
                .map(|c| c.downcast_ref::<StoreError>()),
            Some(Some(StoreError::Corrupt(_)))
        ));
        let body = format!("{:?}", reject.response().into_body());
        assert!(!body.contains("damaged alias"));
    }
}
