//! Request-head scanning for ambiguous framing. hyper frames a request that
//! carries both `Content-Length` and `Transfer-Encoding` by the latter and
//! drops the former before the application sees it, and it accepts heads
//! whose lines end in a bare LF (which other servers and proxies split
//! differently). To answer such a request 400 instead (never forward it),
//! this I/O layer looks at each request head as its bytes arrive and flags
//! the connection.
//!
//! It follows message boundaries while it can: after a head with a
//! `Content-Length` it skips that many body bytes to the next head; after a
//! chunked body (or anything it cannot follow) it stops scanning. hyper
//! closes the connection after an ambiguous request in any case, so what the
//! scanner does not see cannot be smuggled either.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest head the scanner buffers; longer ones are hyper's to refuse.
const MAX_HEAD: usize = 64 * 1024;

enum Scan {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// No longer following the stream.
    Off,
}

/// No ambiguous head seen.
const NONE: u64 = u64::MAX;

/// What was wrong with a flagged head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Both `Content-Length` and `Transfer-Encoding`.
    BothFramings,
    /// A line ended in LF without CR.
    BareLf,
}

impl Flaw {
    pub fn reason(self) -> &'static str {
        match self {
            Flaw::BothFramings => "both Content-Length and Transfer-Encoding",
            Flaw::BareLf => "request head lines must end in CRLF",
        }
    }
}

/// Wraps a connection's stream and records which request on it (0, 1, ...)
/// carried both framing headers. Heads are counted as they arrive, so a
/// pipelined clean request before the ambiguous one is not affected.
pub struct HeadScanner<S> {
    inner: S,
    scan: Scan,
    heads: u64,
    flagged: Arc<AtomicU64>,
    /// 1: both framings, 2: bare LF (valid once `flagged` is set).
    flaw: Arc<AtomicU64>,
}

/// The per-connection verdict the service consults, request by request.
#[derive(Clone)]
pub struct Ambiguous {
    flagged: Arc<AtomicU64>,
    flaw: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl Ambiguous {
    /// Called once per request, in order: is this one the flagged one?
    pub fn next_flaw(&self) -> Option<Flaw> {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        if self.flagged.load(Ordering::Acquire) != index {
            return None;
        }
        Some(match self.flaw.load(Ordering::Relaxed) {
            2 => Flaw::BareLf,
            _ => Flaw::BothFramings,
        })
    }
}

impl<S> HeadScanner<S> {
    pub fn new(inner: S) -> HeadScanner<S> {
        HeadScanner {
            inner,
            scan: Scan::Head(Vec::new()),
            heads: 0,
            flagged: Arc::new(AtomicU64::new(NONE)),
            flaw: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn verdict(&self) -> Ambiguous {
        Ambiguous {
            flagged: Arc::clone(&self.flagged),
            flaw: Arc::clone(&self.flaw),
            served: Arc::new(AtomicU64::new(0)),
        }
    }

    fn flag(&self, index: u64, flaw: Flaw) {
        self.flaw.store(
            match flaw {
                Flaw::BothFramings => 1,
                Flaw::BareLf => 2,
            },
            Ordering::Relaxed,
        );
        self.flagged.store(index, Ordering::Release);
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Off => return,
                Scan::Body(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.scan = Scan::Head(Vec::new());
                    }
                }
                Scan::Head(head) => {
                    if head.is_empty() {
                        // Empty lines before a request line are skipped (as
                        // hyper does), not taken for the end of a head.
                        let skip = bytes
                            .iter()
                            .take_while(|b| matches!(b, b'\r' | b'\n'))
                            .count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    // Resume the search a little before the old end, in case
                    // the blank line straddles two reads.
                    let from = head.len().saturating_sub(2);
                    head.extend_from_slice(bytes);
                    let Some(end) = head_end(head, from) else {
                        if head.len() > MAX_HEAD {
                            self.scan = Scan::Off;
                        }
                        return;
                    };
                    let consumed_here = bytes.len() - (head.len() - end);
                    let bare_lf = has_bare_lf(&head[..end]);
                    let (cl, te) = framing(&head[..end]);
                    bytes = &bytes[consumed_here..];
                    let index = self.heads;
                    self.heads += 1;
                    self.scan = match (cl, te) {
                        _ if bare_lf => {
                            self.flag(index, Flaw::BareLf);
                            Scan::Off
                        }
                        (Some(_), true) => {
                            self.flag(index, Flaw::BothFramings);
                            Scan::Off
                        }
                        (_, true) => Scan::Off,
                        (Some(0) | None, false) => Scan::Head(Vec::new()),
                        (Some(n), false) => Scan::Body(n),
                    };
                }
            }
        }
    }
}

/// The index just past a head's blank line (`\n\n` or `\n\r\n`), searching
/// from `from`.
fn head_end(head: &[u8], from: usize) -> Option<usize> {
    (from..head.len()).find_map(|i| {
        if head[i] != b'\n' {
            return None;
        }
        match (head.get(i + 1), head.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// A line feed not preceded by a carriage return.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// `(Content-Length, has Transfer-Encoding)` of a request head.
fn framing(head: &[u8]) -> (Option<u64>, bool) {
    let mut cl = None;
    let mut te = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            cl = std::str::from_utf8(&value[1..])
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or(Some(u64::MAX));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
        }
    }
    (cl, te)
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadScanner<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.observe(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadScanner<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of the flagged request, if any.
    fn flagged(chunks: &[&[u8]]) -> Option<u64> {
        let mut s = HeadScanner::new(());
        for c in chunks {
            s.observe(c);
        }
        Some(s.flagged.load(Ordering::Relaxed)).filter(|&i| i != NONE)
    }

    fn scan(chunks: &[&[u8]]) -> bool {
        flagged(chunks).is_some()
    }

    #[test]
    fn flags_both_framings() {
        assert!(scan(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        // Split anywhere, even inside the blank line.
        assert!(scan(&[
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-enc",
            b"oding: chunked\r\n\r",
            b"\n0\r\n\r\n"
        ]));
        assert!(!scan(&[b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"]));
        assert!(!scan(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        ]));
    }

    #[test]
    fn flags_bare_lf_heads() {
        let mut s = HeadScanner::new(());
        s.observe(
            b"POST /telegram HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n",
        );
        assert_eq!(s.verdict().next_flaw(), Some(Flaw::BareLf));
        // One bare LF anywhere in the head is enough.
        assert!(scan(&[b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n"]));
        // Split across reads.
        assert!(scan(&[b"GET / HTTP/1.1\r\nHost: x\n", b"\n"]));
        // Leading empty lines are not a head.
        assert!(!scan(&[b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(!scan(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r", b"\n"]));
    }

    #[test]
    fn follows_keep_alive_bodies_to_the_next_head() {
        // A body that looks like headers is skipped, not scanned.
        let body = b"x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let first = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        assert!(!scan(&[
            first.as_bytes(),
            body,
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
        ]));
        // The second request on the connection is the ambiguous one.
        assert_eq!(
            flagged(&[
                first.as_bytes(),
                body,
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ]),
            Some(1)
        );
    }
}
