//! `GET /v1/links/<namespace>/<id>` (bearer token): whose channel the key
//! is and which channels are linked to it (`backend/link.rs`), by stored
//! key: `{"key", "member": "<ns>:<id>" | null, "channels": [...]}`.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::state::{path_namespace, strict_decode, NAMESPACE_RULE};
use super::{bad_request, json_response, unavailable, Admin, AdminResponse};
use crate::backend::Backend;
use crate::backend::{Inspect, Turns};
use crate::key::ConvKey;

impl<B: Backend> Admin<B> {
    pub(super) async fn links_api(&self, req: Request<Incoming>) -> AdminResponse {
        if let Some(refusal) = self.refused(&req) {
            return refusal;
        }
        let rest = req.uri().path().trim_start_matches("/v1/links/");
        let Some((ns, id)) = rest
            .split_once('/')
            .filter(|(ns, id)| !ns.is_empty() && !id.is_empty() && !id.contains('/'))
        else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "use /v1/links/<namespace>/<id> (a '/' in the id as %2F)"}),
            );
        };
        let Some(ns) = path_namespace(ns, self.svc.backend.privacy().hashes_keys()) else {
            return bad_request(NAMESPACE_RULE);
        };
        let Some(id) = strict_decode(id) else {
            return bad_request(
                "the id must be percent-encoded UTF-8 without control characters, at most 256 bytes",
            );
        };
        let key = ConvKey::new(&ns, &id);
        let backend = &self.svc.backend;
        match backend.links(&key).await {
            Ok(links) => json_response(
                StatusCode::OK,
                json!({
                    "key": backend.stored_name(&key).as_str(),
                    "member": links.member.as_ref().map(ConvKey::as_str),
                    "channels": links.channels.iter().map(ConvKey::as_str).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => unavailable(&e),
        }
    }
}
