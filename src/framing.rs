//! Request-head scanning for ambiguous framing. hyper frames a request that
//! carries both `Content-Length` and `Transfer-Encoding` by the latter and
//! drops the former before the application sees it; to answer such a request
//! 400 instead (never forward it), this I/O layer looks at each request head
//! as its bytes arrive and flags the connection.
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

/// Wraps a connection's stream and records which request on it (0, 1, ...)
/// carried both framing headers. Heads are counted as they arrive, so a
/// pipelined clean request before the ambiguous one is not affected.
pub struct HeadScanner<S> {
    inner: S,
    scan: Scan,
    heads: u64,
    flagged: Arc<AtomicU64>,
}

/// The per-connection verdict the service consults, request by request.
#[derive(Clone)]
pub struct Ambiguous {
    flagged: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl Ambiguous {
    /// Called once per request, in order: is this one the ambiguous one?
    pub fn next_is_ambiguous(&self) -> bool {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        self.flagged.load(Ordering::Relaxed) == index
    }
}

impl<S> HeadScanner<S> {
    pub fn new(inner: S) -> HeadScanner<S> {
        HeadScanner {
            inner,
            scan: Scan::Head(Vec::new()),
            heads: 0,
            flagged: Arc::new(AtomicU64::new(NONE)),
        }
    }

    pub fn verdict(&self) -> Ambiguous {
        Ambiguous {
            flagged: Arc::clone(&self.flagged),
            served: Arc::new(AtomicU64::new(0)),
        }
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
                    // Resume the search a little before the old end, in case
                    // the blank line straddles two reads.
                    let from = head.len().saturating_sub(3);
                    head.extend_from_slice(bytes);
                    let Some(end) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                        if head.len() > MAX_HEAD {
                            self.scan = Scan::Off;
                        }
                        return;
                    };
                    let end = from + end + 4;
                    let consumed_here = bytes.len() - (head.len() - end);
                    let (cl, te) = framing(&head[..end]);
                    bytes = &bytes[consumed_here..];
                    let index = self.heads;
                    self.heads += 1;
                    self.scan = match (cl, te) {
                        (Some(_), true) => {
                            self.flagged.store(index, Ordering::Relaxed);
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
