//! The shaped stream: the server's TLS socket with the record [`Shaper`]
//! below rustls, so the first flight leaves in the modeled record layout and
//! the connection learns what its CertificateRequest looked like on the wire;
//! and the client's plaintext flight is read on the way in (never changed),
//! so the connection learns what Certificate the client sent, also when the
//! handshake then fails.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use certgen::wire::{ClientCertificate, ClientFlightReader};

use crate::shaper::{Layout, Observed, Rewrite, Shaper};

/// What the shaper saw go out and the client's plaintext flight showed,
/// shared with the connection, which keeps it when a failed handshake drops
/// the stream: the incident's own connection is the one whose
/// CertificateRequest and client chain matter most.
#[derive(Clone, Debug, Default)]
pub struct WireFacts {
    /// The CertificateRequest as sent.
    pub request: Option<Observed>,
    /// The plaintext alert (level, description) that ended the flight.
    pub alert: Option<[u8; 2]>,
    /// Whether a ServerHello went out.
    pub server_hello: bool,
    /// Whether the flight was cut after ServerKeyExchange with internal_error
    /// (OpenSSL past its list limit).
    pub aborted: bool,
    /// Whether the fault close-after-request stopped the flight.
    pub closed: bool,
    /// The version the ServerHello selected (0x0304: TLS 1.3, where the
    /// client's Certificate is encrypted).
    pub server_hello_version: Option<u16>,
    /// The client's Certificate message as read from its plaintext flight
    /// (TLS 1.2; reading stops at its ChangeCipherSpec).
    pub client_certificate: ClientCertificate,
}

/// A stream whose outbound bytes pass through a [`Shaper`]: TLS writes go
/// through it; reads pass untouched, the client's plaintext flight read on
/// the way by a [`ClientFlightReader`].
pub struct ShapedStream<S> {
    inner: S,
    shaper: Shaper,
    inbound: ClientFlightReader,
    facts: Arc<std::sync::Mutex<WireFacts>>,
    out: Vec<u8>,
    written: usize,
    /// How long held output waits (the fault delay-before-done).
    delay: Duration,
    /// The running delay, once output is held.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Output held before a write reports back-pressure.
const HIGH_WATER: usize = 64 * 1024;

impl<S> ShapedStream<S> {
    /// Wraps `inner`; `facts` receives what the shaper sees go out.
    pub fn new(
        inner: S,
        layout: Layout,
        max_fragment: usize,
        facts: Arc<std::sync::Mutex<WireFacts>>,
    ) -> ShapedStream<S> {
        ShapedStream::with_rewrite(inner, layout, max_fragment, Rewrite::default(), facts)
    }

    /// Wraps `inner` with a persona's [`Rewrite`] of the plaintext records.
    pub fn with_rewrite(
        inner: S,
        layout: Layout,
        max_fragment: usize,
        rewrite: Rewrite,
        facts: Arc<std::sync::Mutex<WireFacts>>,
    ) -> ShapedStream<S> {
        ShapedStream {
            inner,
            shaper: Shaper::with_rewrite(layout, max_fragment, rewrite),
            inbound: ClientFlightReader::new(),
            facts,
            out: Vec::new(),
            written: 0,
            delay: Duration::ZERO,
            timer: None,
        }
    }

    /// Output the shaper holds (the ServerHelloDone, by the fault
    /// delay-before-done) leaves `delay` after it was written.
    pub fn with_delay(mut self, delay: Duration) -> ShapedStream<S> {
        self.delay = delay;
        self
    }
}

impl<S> ShapedStream<S> {
    /// Drives a hold: starts its timer, and once the timer has fired moves
    /// the held bytes to the output. Ready when nothing is held.
    fn poll_hold(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.shaper.holding() {
            return Poll::Ready(());
        }
        let delay = self.delay;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let held = self.shaper.release();
                self.out.extend_from_slice(&held);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> ShapedStream<S> {
    /// Writes held output; Ready(Ok) when all of it is out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let pending = self.out.get(self.written..).unwrap_or_default();
            match Pin::new(&mut self.inner).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ShapedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // tokio-rustls flushes only right after it wrote: a hold's end must
        // be driven from reads too.
        if self.poll_hold(cx).is_ready()
            && !self.out.is_empty()
            && let Poll::Ready(Err(e)) = self.drain(cx)
        {
            return Poll::Ready(Err(e));
        }
        if self.shaper.closed() {
            // The fault close-after-request: the CertificateRequest goes out,
            // then FIN, and the handshake ends here.
            return match self.drain(cx) {
                Poll::Ready(Ok(())) => match Pin::new(&mut self.inner).poll_shutdown(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(_) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "fault tls:close-after-request: the connection was closed after the \
                         CertificateRequest; no ServerHelloDone was sent",
                    ))),
                },
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        if self.shaper.aborted() {
            // The alert goes out first; then the handshake ends here, as
            // OpenSSL's does, without waiting for the client.
            return match self.drain(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the CA list does not fit the CertificateRequest: sent fatal internal_error \
                     after ServerKeyExchange, as OpenSSL does (construct_ca_names)",
                ))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && !self.inbound.ended() {
            let this = &mut *self;
            let fresh = buf.filled().get(before..).unwrap_or_default();
            this.inbound.feed(fresh);
            let seen = this.inbound.certificate();
            if let Ok(mut facts) = this.facts.lock()
                && facts.client_certificate != *seen
            {
                facts.client_certificate = seen.clone();
            }
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ShapedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() - this.written >= HIGH_WATER {
            match this.drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let was_passthrough = this.shaper.is_passthrough();
        this.shaper.feed(buf, &mut this.out);
        if !was_passthrough && let Ok(mut facts) = this.facts.lock() {
            facts.request = this.shaper.observed().cloned();
            facts.alert = this.shaper.alert();
            facts.server_hello = this.shaper.server_hello_sent();
            facts.aborted = this.shaper.aborted();
            facts.closed = this.shaper.closed();
            facts.server_hello_version = this.shaper.server_hello_version();
        }
        // A hold starts its timer now, so the delay counts from the write.
        let _ = this.poll_hold(cx);
        // Push what we can now; the rest goes out on flush (tokio-rustls
        // flushes after every handshake flight).
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_hold(cx).is_pending() {
            // What is not held goes out now; the rest after the delay.
            return match self.drain(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            };
        }
        match self.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}
