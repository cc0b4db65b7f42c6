//! The answers hyper writes itself for a request head it cannot parse, replaced by the API's JSON.
//!
//! hyper reads and parses each request head before any service runs; a head it cannot parse it
//! answers on its own, with an empty body, and closes the connection
//! (`proto::h1::role::Server::on_error`, hyper 1.x):
//!
//! | hyper's parse error | its answer | ours |
//! |---|---|---|
//! | head larger than [`MAX_HEAD_BYTES`], or more than [`MAX_HEADERS`] fields | `431` | `431 headers_too_large` |
//! | request target longer than [`MAX_URI_BYTES`] | `414` | `414 uri_too_long` |
//! | bad method, target, version or header (a bad `Content-Length` or `Transfer-Encoding` too) | `400` | `400 bad_request` |
//!
//! hyper offers no hook for these answers, so [`Socket`], the connection's IO, recognises one
//! when hyper writes it and writes the JSON answer in its place, with an `x-request-id` and
//! `Connection: close`. Nothing is parsed or copied on the way of a served request: a write is
//! looked at only as far as its first bytes (`HTTP/1.1 4`), which no 1xx–3xx answer, body or
//! WebSocket frame begins with; only a 4xx head that stands alone in its write is read further.
//! hyper writes its answer into an empty write buffer (it parses the next head only once the
//! previous answer has been flushed), so the answer stands alone; were it ever not to, hyper's own
//! answer would go out unchanged.
//!
//! After the answer, the connection shuts its write side and reads and discards what the client
//! still sends, for up to [`LINGER`] or [`LINGER_BYTES`], before closing: closing a socket with
//! unread bytes resets the connection, and a reset can destroy the answer before the client
//! reads it (a client sending 1 MB of headers is still sending when hyper gives up).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use warp::http::HeaderMap;

use super::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};
use crate::http::error::ApiError;
use crate::http::observe;
use crate::metrics;

/// How long a refused connection keeps reading what the client still sends.
pub const LINGER: Duration = Duration::from_secs(2);
/// How much a refused connection reads and discards at most before closing.
pub const LINGER_BYTES: usize = 4 << 20;

/// A connection's socket: passes everything through, except hyper's answer to a head it could
/// not parse, which it replaces.
#[derive(Debug)]
pub struct Socket {
    io: TcpStream,
    /// Set once hyper wrote its own answer: ours, going out instead (boxed: the served path
    /// carries a pointer, not the buffer).
    replaced: Option<Box<Replacement>>,
}

impl Socket {
    pub fn new(io: TcpStream) -> Socket {
        Socket { io, replaced: None }
    }

    /// Whether `bufs`, one write of hyper's, is its own answer to an unparsable head; if so,
    /// ours replaces it. Costs one comparison of a write's first bytes otherwise.
    fn replaces(&mut self, bufs: &[IoSlice<'_>]) -> bool {
        let Some(first) = bufs.first() else {
            return false;
        };
        if !first.starts_with(b"HTTP/1.1 4") || bufs[1..].iter().any(|b| !b.is_empty()) {
            return false;
        }
        let Some(error) = hypers_answer(first) else {
            return false;
        };
        tracing::debug!(status = error.status().as_u16(), "unparsable request head");
        metrics::http_request("unparsable", error.status().as_u16(), Duration::ZERO);
        self.replaced = Some(Box::new(Replacement::new(&error)));
        true
    }
}

/// The API's error for hyper's answer `head`, if `head` is exactly such an answer: a status
/// line of 400, 414 or 431 and no header but `content-length: 0`, `date` and `connection`.
fn hypers_answer(head: &[u8]) -> Option<ApiError> {
    const MAX: usize = 256;
    if head.len() > MAX || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let mut lines = head[..head.len() - 4].split(|&b| b == b'\n');
    let status = lines.next()?.strip_suffix(b"\r")?;
    let error = match status.get(9..13)? {
        b"400 " => ApiError::bad_request(
            "the request head could not be parsed: a malformed request line, header, \
             Content-Length or Transfer-Encoding",
            None,
        ),
        b"414 " => ApiError::UriTooLong(format!(
            "the request target is longer than {MAX_URI_BYTES} bytes"
        )),
        b"431 " => ApiError::HeadTooLarge(format!(
            "the request line and headers are larger than {MAX_HEAD_BYTES} bytes or have \
             more than {MAX_HEADERS} fields"
        )),
        _ => return None,
    };
    let only_hypers = lines.all(|line| {
        let line = line.to_ascii_lowercase();
        line == b"content-length: 0\r"
            || line.starts_with(b"date: ")
            || line.starts_with(b"connection: ")
    });
    only_hypers.then_some(error)
}

/// The answer going out in place of hyper's, then the lingering close.
#[derive(Debug)]
struct Replacement {
    out: Vec<u8>,
    written: usize,
    write_closed: bool,
    drained: usize,
    linger: Option<Pin<Box<Sleep>>>,
}

impl Replacement {
    fn new(error: &ApiError) -> Replacement {
        let body = error.json_body();
        let status = error.status();
        let id = observe::request_id(&HeaderMap::new());
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             {}: {}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            observe::REQUEST_ID,
            id.to_str().unwrap_or("-"),
        )
        .into_bytes();
        out.extend_from_slice(&body);
        Replacement {
            out,
            written: 0,
            write_closed: false,
            drained: 0,
            linger: None,
        }
    }

    /// Write what is left of the answer.
    fn poll_send(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Send the answer, close the write side, then read and discard until the client closes,
    /// [`LINGER`] passes or [`LINGER_BYTES`] were read.
    fn poll_close(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(io, cx))?;
        if !self.write_closed {
            ready!(Pin::new(&mut *io).poll_shutdown(cx))?;
            self.write_closed = true;
        }
        let linger = self
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        let mut scratch = [0u8; 8192];
        while self.drained < LINGER_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => self.drained += buf.filled().len(),
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    ready!(linger.as_mut().poll(cx));
                    break;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replaced.is_some() || this.replaces(&[IoSlice::new(buf)]) {
            // hyper writes nothing after its answer; what it wrote is taken as written.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replaced.is_some() || this.replaces(bufs) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(r) = this.replaced.as_mut() {
            ready!(r.poll_send(&mut this.io, cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.replaced.as_mut() {
            Some(r) => r.poll_close(&mut this.io, cx),
            None => Pin::new(&mut this.io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_answers_are_recognised_and_nothing_else() {
        let date = "date: Wed, 02 Dec 2026 15:26:53 GMT\r\n";
        for (status, code) in [
            ("400 Bad Request", "bad_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
        ] {
            // Exactly what hyper 1.12 writes.
            let head = format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n"
            );
            let error = hypers_answer(head.as_bytes()).expect(status);
            let body: serde_json::Value = serde_json::from_slice(&error.json_body()).unwrap();
            assert_eq!(body["error"], code);
            assert_eq!(&status[..3], error.status().as_str());
        }
        for head in [
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{date}\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n{date}\r\n"),
            "HTTP/1.1 400 Bad Request\r\nx-request-id: 1\r\ncontent-length: 0\r\n\r\n".to_string(),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n{{}}"),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string(),
            "HTTP/1.1 4".to_string(),
        ] {
            assert!(hypers_answer(head.as_bytes()).is_none(), "{head:?}");
        }
    }
}
