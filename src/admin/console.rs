//! The operator's console at `/ui/` (issue 24): static files compiled into
//! the binary (`console/`), served by the admin listener with a strict
//! Content-Security-Policy (no inline script or style, nothing fetched
//! from elsewhere), `X-Frame-Options: DENY` and no cookies. The page signs
//! in with the admin token (kept in the tab's `sessionStorage`, sent as
//! the bearer header) and uses the admin API like any client; without
//! `admin.token` it says how to set one.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use super::{text, AdminResponse};

/// What the console's files may load and do: only themselves and the
/// admin API of the origin that served them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("console/index.html");
const APP: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");
const NO_TOKEN: &str = include_str!("console/no_token.html");

/// `GET /ui/…`: a file of the console (`with_token`: `admin.token` is set),
/// or 404.
pub(super) fn serve(path: &str, with_token: bool) -> AdminResponse {
    const HTML: &str = "text/html; charset=utf-8";
    let (status, body, kind) = match path {
        "/ui" | "/ui/" | "/ui/index.html" if with_token => (StatusCode::OK, INDEX, HTML),
        "/ui" | "/ui/" | "/ui/index.html" => (StatusCode::OK, NO_TOKEN, HTML),
        "/ui/app.js" if with_token => (StatusCode::OK, APP, "text/javascript; charset=utf-8"),
        "/ui/style.css" => (StatusCode::OK, STYLE, "text/css; charset=utf-8"),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n",
            "text/plain; charset=utf-8",
        ),
    };
    let mut resp = text(status, body);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_inline_script_or_style_and_nothing_from_elsewhere() {
        for page in [INDEX, NO_TOKEN] {
            for bad in [
                "<script>",
                "style=",
                " onclick",
                " onload",
                "http://",
                "https://",
                "javascript:",
            ] {
                assert!(!page.contains(bad), "{bad} in a page");
            }
        }
        assert!(
            !APP.contains("innerHTML"),
            "text only: values never become markup"
        );
        assert!(!APP.contains("eval(") && !APP.contains("new Function"));
        assert!(!APP.contains("localStorage") && !APP.contains("document.cookie"));
    }

    #[test]
    fn every_file_carries_the_policy() {
        for (path, token, status) in [
            ("/ui/", true, 200),
            ("/ui/", false, 200),
            ("/ui/app.js", true, 200),
            ("/ui/app.js", false, 404),
            ("/ui/style.css", true, 200),
            ("/ui/../v1/state", true, 404),
        ] {
            let resp = serve(path, token);
            assert_eq!(resp.status().as_u16(), status, "{path}");
            assert_eq!(resp.headers()["content-security-policy"], CSP);
            assert_eq!(resp.headers()["x-frame-options"], "DENY");
            assert!(resp.headers().get("set-cookie").is_none());
        }
    }
}
