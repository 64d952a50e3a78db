//! The bot side: target URL, pooled keep-alive client, the exchange with
//! the bot (buffered or streamed, each within one `upstream.timeout`), and
//! the proxy header rules of RFC 9110 (hop-by-hop removal,
//! `X-Forwarded-For`/`-Proto`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Request bodies sent to the bot: buffered on matched routes, streamed on
/// unmatched ones.
pub type UpstreamBody = Either<Full<Bytes>, Incoming>;

/// Where the bot listens: `http://host:port[/base]`.
#[derive(Clone, Debug)]
pub struct UpstreamTarget {
    pub authority: Authority,
    base_path: String,
}

/// Why an upstream URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("`{0}` is not a URL: {1}")]
    NotUrl(String, http::uri::InvalidUri),
    #[error("`{0}`: only http:// is supported (the bot runs beside statehold)")]
    NotHttp(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}`: a query string is not allowed here")]
    Query(String),
}

impl UpstreamTarget {
    pub fn parse(url: &str) -> Result<UpstreamTarget, TargetError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| TargetError::NotUrl(url.to_string(), e))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(TargetError::NotHttp(url.to_string()));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| TargetError::NoHost(url.to_string()))?;
        if uri.query().is_some() {
            return Err(TargetError::Query(url.to_string()));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(UpstreamTarget {
            authority,
            base_path,
        })
    }

    /// The bot's URI for an inbound path and query. Without a base path the
    /// parts are reused as they are (no formatting, no re-parsing).
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = match (self.base_path.is_empty(), path_and_query) {
            (true, Some(pq)) => pq.clone(),
            (true, None) => PathAndQuery::from_static("/"),
            (false, pq) => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{pq}", self.base_path))?
            }
        };
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// `host:port` for a TCP reachability check.
    pub fn socket_addr_text(&self) -> String {
        let port = self.authority.port_u16().unwrap_or(80);
        format!("{}:{port}", self.authority.host())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("bot unreachable: {}", crate::error::chain(.0.as_ref()))]
    Connect(#[source] crate::error::Cause),
    #[error("bot did not answer within {0:?}")]
    Timeout(Duration),
    #[error("bot connection failed: {}", crate::error::chain(.0.as_ref()))]
    Failed(#[source] crate::error::Cause),
    #[error("bot response over upstream.max_response_bytes")]
    TooLarge,
}

/// Most headers accepted in a bot's answer.
const MAX_RESPONSE_HEADERS: usize = 500;

pub struct Upstream {
    client: Client<HttpConnector, UpstreamBody>,
    target: UpstreamTarget,
    timeout: Duration,
    max_response_bytes: usize,
}

/// How the client to the bot behaves (from `[upstream]`).
pub struct UpstreamOptions {
    /// The whole exchange, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub max_response_bytes: u64,
}

impl Upstream {
    pub fn new(url: &str, options: &UpstreamOptions) -> Result<Upstream, TargetError> {
        let target = UpstreamTarget::parse(url)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.connect_timeout));
        // The pool timer is what makes idle connections actually close
        // (hyper-util pitfall): without it the idle timeout is never applied.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(256)
            // Bots behind frameworks and CDNs can send many headers; hyper's
            // default of 100 turned such answers into 502s.
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            .build(connector);
        Ok(Upstream {
            client,
            target,
            timeout: options.timeout,
            max_response_bytes: options.max_response_bytes as usize,
        })
    }

    /// The bot's URI for an inbound path and query.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        self.target.uri_for(path_and_query)
    }

    /// A buffered exchange: the request and the bot's whole answer (within
    /// `upstream.max_response_bytes`), together within `upstream.timeout`.
    pub async fn exchange(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(http::response::Parts, Bytes), UpstreamError> {
        let work = async {
            let (parts, body) = self.request(req).await?.into_parts();
            let bytes = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::TooLarge
                    } else {
                        UpstreamError::Failed(e)
                    }
                })?
                .to_bytes();
            Ok((parts, bytes))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    /// A streamed exchange: the answer's head within `upstream.timeout`,
    /// its body passed on as it comes.
    pub async fn stream(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        tokio::time::timeout(self.timeout, self.request(req))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    /// Sends the request; the answer's hop-by-hop headers are removed and
    /// its version is statehold's own (RFC 9110 §6.2), not the bot's.
    async fn request(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut resp = self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                UpstreamError::Connect(e.into())
            } else {
                UpstreamError::Failed(e.into())
            }
        })?;
        strip_hop_by_hop(resp.headers_mut());
        *resp.version_mut() = Version::HTTP_11;
        Ok(resp)
    }

    /// Whether the bot accepts TCP connections (for `/readyz`).
    pub async fn reachable(&self) -> bool {
        let addr = self.target.socket_addr_text();
        matches!(
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await,
            Ok(Ok(_))
        )
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `Transfer-Encoding` is framing: hyper re-frames the message itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
}

/// Forwarding headers a client could set to pose as someone else.
const CLIENT_FORWARDING: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
];

/// Prepares an inbound request's headers for the bot. From a peer in
/// `server.trusted_proxies` the forwarding headers are kept and the peer is
/// appended to `X-Forwarded-For`; from anyone else they are replaced by
/// what statehold saw.
pub fn forward_headers(headers: &mut HeaderMap, peer: IpAddr, tls: bool, trusted_peer: bool) {
    strip_hop_by_hop(headers);
    if !trusted_peer {
        for name in CLIENT_FORWARDING {
            headers.remove(name);
        }
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let chain = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        headers.insert(xff, v);
    }
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(
            proto,
            HeaderValue::from_static(if tls { "https" } else { "http" }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_and_uris() {
        let t = UpstreamTarget::parse("http://127.0.0.1:3000").unwrap();
        let pq: PathAndQuery = "/telegram?x=1".parse().unwrap();
        assert_eq!(
            t.uri_for(Some(&pq)).unwrap(),
            "http://127.0.0.1:3000/telegram?x=1"
        );
        let t = UpstreamTarget::parse("http://bot:8000/api/").unwrap();
        assert_eq!(
            t.uri_for(Some(&pq)).unwrap(),
            "http://bot:8000/api/telegram?x=1"
        );
        assert_eq!(t.socket_addr_text(), "bot:8000");
        assert!(UpstreamTarget::parse("https://bot").is_err());
        assert!(UpstreamTarget::parse("not a url").is_err());
    }

    #[test]
    fn hop_by_hop_and_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert("x-real-ip", "203.0.113.9".parse().unwrap());
        h.insert("forwarded", "for=203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let mut trusted = h.clone();
        forward_headers(&mut h, "127.0.0.1".parse().unwrap(), false, false);
        assert!(h.get("x-private").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert!(h.get("x-real-ip").is_none() && h.get("forwarded").is_none());
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["content-type"], "application/json");
        forward_headers(&mut trusted, "10.0.0.2".parse().unwrap(), false, true);
        assert_eq!(trusted["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(trusted["x-real-ip"], "203.0.113.9");
        assert_eq!(trusted["x-forwarded-proto"], "https");
    }
}
