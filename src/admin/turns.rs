//! `POST /v1/turns/<token>`: a deferred turn's late report. No bearer
//! token: the turn token is the credential (128 random bits, good for one
//! turn, [`crate::backend::TurnToken`]). The body is read within
//! `store.max_state_bytes` (and a little for the report's other members)
//! and parsed before any turn is touched, so a malformed report (400)
//! changes nothing; the rest is the pipeline's
//! ([`crate::pipeline::Pipeline::late_report`]).

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::{bad_request, json_response, Admin, AdminResponse};
use crate::backend::Backend;
use crate::pipeline::LateReport;

/// Room for a report's members beside its state.
const ENVELOPE_BYTES: usize = 4096;

impl<B: Backend> Admin<B> {
    pub(super) async fn turns_api(&self, req: Request<Incoming>, token: &str) -> AdminResponse {
        let limit = self.max_state_bytes + ENVELOPE_BYTES;
        let body = match Limited::new(req.into_body(), limit).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": "report over store.max_state_bytes"}),
                )
            }
        };
        let report = match LateReport::parse(&body, self.max_state_bytes) {
            Ok(report) => report,
            Err(why) => return bad_request(why),
        };
        let answer = self.late_reports.late_report(token, report).await;
        json_response(answer.status, answer.body)
    }
}
