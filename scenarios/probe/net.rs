//! The probe's I/O edge: connect, the STARTTLS dialogue, one TLS handshake
//! with the first flight read below rustls ([`Gate`]; in TLS 1.3 decrypted
//! with the server handshake traffic secret the probe's own rustls logs
//! through um-sim's [`HandshakeSecrets`]), then QUIT (or LOGOUT, or unbind)
//! and close. When TLS 1.3 cannot be decrypted, the request's names come
//! from rustls's client certificate resolver. Every wait is bounded by the request's
//! timeout; the decoding is [`super::wire`]'s and [`super::ldap`]'s.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    ReadBuf,
};
use tokio::net::TcpStream;

use um_sim::tap::HandshakeSecrets;

use super::ldap::{self, ExtendedResponse};
use super::report::{Observation, OwnHandshake, Seen, ServerAnswer, ServerVerification};
use super::wire::{FirstFlight, FlightError, RequestBody, ServerHello, TLS13, handshake_name};
use super::{ProbeError, Request, Starttls, TlsChoice};

/// Most bytes of one line of a STARTTLS dialogue (SMTP, IMAP, POP3).
const MAX_LINE: usize = 4096;
/// Most lines of one reply.
const MAX_LINES: usize = 100;
/// The name the probe gives in EHLO.
const HELO: &str = "probe.umlab.invalid";
/// How long a TLS 1.3 probe without STARTTLS waits for the server's verdict
/// on its certificate (sent after the client's Finished) at most.
const TLS13_VERDICT_WAIT: Duration = Duration::from_secs(2);

/// Waits for `fut` at most `t`; `what` names the wait in the error.
async fn within<T>(
    t: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(t, fut)
        .await
        .map_err(|_| ProbeError::Timeout {
            what: what.to_owned(),
            seconds: t.as_secs_f64(),
        })?
}

/// One line, line ending removed, at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    t: Duration,
    what: &str,
) -> Result<String, ProbeError> {
    within(t, what, async {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| ProbeError::Starttls(format!("{what}: {e}")))?;
        if n == 0 {
            return Err(ProbeError::Starttls(format!(
                "{what}: the server closed the connection"
            )));
        }
        if line.len() > MAX_LINE {
            return Err(ProbeError::Starttls(format!(
                "{what}: a line passed {MAX_LINE} bytes without ending"
            )));
        }
        let text = String::from_utf8_lossy(&line);
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    })
    .await
}

/// An SMTP reply: its code and lines.
async fn smtp_reply<R: AsyncBufRead + Unpin>(
    r: &mut R,
    t: Duration,
    what: &str,
) -> Result<(u16, Vec<String>), ProbeError> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(r, t, what).await?;
        let parsed = um_sim::client::parse_reply_line(&line)
            .ok_or_else(|| ProbeError::Starttls(format!("{what}: not an SMTP reply: {line:?}")))?;
        let (code, last, text) = parsed;
        lines.push(text.to_owned());
        if last {
            return Ok((code, lines));
        }
        if lines.len() >= MAX_LINES {
            return Err(ProbeError::Starttls(format!(
                "{what}: the reply passed {MAX_LINES} lines"
            )));
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    t: Duration,
) -> Result<(), ProbeError> {
    within(t, "sending", async {
        w.write_all(bytes)
            .await
            .map_err(|e| ProbeError::Starttls(format!("sending: {e}")))?;
        w.flush()
            .await
            .map_err(|e| ProbeError::Starttls(format!("sending: {e}")))
    })
    .await
}

/// The STARTTLS dialogue; on success the plaintext session is over and the
/// socket is ready for the ClientHello. Returns the bytes the server sent
/// after its STARTTLS reply, which belong to the plaintext session and are
/// discarded.
async fn starttls(
    io: &mut BufReader<TcpStream>,
    proto: Starttls,
    t: Duration,
) -> Result<(), ProbeError> {
    let refused = |what: String| ProbeError::Starttls(what);
    match proto {
        Starttls::None => Ok(()),
        Starttls::Smtp => {
            let (code, lines) = smtp_reply(io, t, "SMTP greeting").await?;
            if code != 220 {
                return Err(refused(format!(
                    "SMTP greeting: {code} {}",
                    lines.join(" / ")
                )));
            }
            send(io.get_mut(), format!("EHLO {HELO}\r\n").as_bytes(), t).await?;
            let (code, caps) = smtp_reply(io, t, "EHLO").await?;
            if code != 250 {
                return Err(refused(format!(
                    "EHLO answered {code} {}",
                    caps.join(" / ")
                )));
            }
            if !caps.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                let _ = send(io.get_mut(), b"QUIT\r\n", t).await;
                return Err(refused("the SMTP server does not offer STARTTLS".into()));
            }
            send(io.get_mut(), b"STARTTLS\r\n", t).await?;
            let (code, lines) = smtp_reply(io, t, "STARTTLS").await?;
            if code != 220 {
                let _ = send(io.get_mut(), b"QUIT\r\n", t).await;
                return Err(refused(format!(
                    "STARTTLS answered {code} {}",
                    lines.join(" / ")
                )));
            }
            Ok(())
        }
        Starttls::Imap => {
            let greeting = read_line(io, t, "IMAP greeting").await?;
            let upper = greeting.to_ascii_uppercase();
            if !(upper.starts_with("* OK") || upper.starts_with("* PREAUTH")) {
                return Err(refused(format!("IMAP greeting: {greeting:?}")));
            }
            send(io.get_mut(), b"P1 STARTTLS\r\n", t).await?;
            for _ in 0..MAX_LINES {
                let line = read_line(io, t, "IMAP STARTTLS").await?;
                if line.starts_with("* ") {
                    continue;
                }
                let upper = line.to_ascii_uppercase();
                if upper.starts_with("P1 OK") {
                    return Ok(());
                }
                let _ = send(io.get_mut(), b"P2 LOGOUT\r\n", t).await;
                return Err(refused(format!("IMAP STARTTLS answered {line:?}")));
            }
            Err(refused(format!(
                "IMAP STARTTLS: no tagged answer in {MAX_LINES} lines"
            )))
        }
        Starttls::Pop3 => {
            let greeting = read_line(io, t, "POP3 greeting").await?;
            if !greeting.starts_with("+OK") {
                return Err(refused(format!("POP3 greeting: {greeting:?}")));
            }
            send(io.get_mut(), b"STLS\r\n", t).await?;
            let line = read_line(io, t, "POP3 STLS").await?;
            if !line.starts_with("+OK") {
                let _ = send(io.get_mut(), b"QUIT\r\n", t).await;
                return Err(refused(format!("POP3 STLS answered {line:?}")));
            }
            Ok(())
        }
        Starttls::Ldap => {
            send(io.get_mut(), &ldap::starttls_request(1), t).await?;
            let message = within(t, "LDAP StartTLS response", read_ber(io)).await?;
            let r = ExtendedResponse::parse(&message)
                .map_err(|e| refused(format!("StartTLS response: {e}")))?;
            if r.result_code != 0 || r.message_id != 1 {
                let what = if r.response_name.as_deref() == Some(ldap::NOTICE_OF_DISCONNECTION_OID)
                {
                    "the server disconnects"
                } else {
                    "StartTLS refused"
                };
                return Err(refused(format!(
                    "LDAP {what}: resultCode {} ({})",
                    r.result_code, r.diagnostic
                )));
            }
            Ok(())
        }
    }
}

/// Reads one BER element, byte by byte until its length is known, then the
/// rest; never more than the element.
async fn read_ber(io: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ProbeError> {
    let mut buf = Vec::new();
    loop {
        let need = match ldap::element_len(&buf)
            .map_err(|e| ProbeError::Starttls(format!("StartTLS response: {e}")))?
        {
            Some(n) if buf.len() >= n => return Ok(buf),
            Some(n) => n - buf.len(),
            None => 1,
        };
        let avail = io
            .fill_buf()
            .await
            .map_err(|e| ProbeError::Starttls(format!("LDAP: {e}")))?;
        if avail.is_empty() {
            return Err(ProbeError::Starttls(
                "LDAP: the server closed the connection".into(),
            ));
        }
        let take = need.min(avail.len());
        buf.extend_from_slice(avail.get(..take).unwrap_or_default());
        io.consume(take);
    }
}

/// A stream that holds the server's bytes back from rustls until the first
/// flight is whole (ServerHelloDone; in TLS 1.3 the server's Finished, or
/// the flight's end), feeding them to a [`FirstFlight`] as they come. So the
/// probe sees the whole CertificateRequest even when rustls itself would give
/// up on it (past 65,535 bytes), and rustls never sees a byte the probe did
/// not. In TLS 1.3 rustls gets the ServerHello's record first: only once it
/// has read it does it derive (and log) the server handshake traffic secret
/// that decrypts the rest. The secret is matched to this connection by the
/// ClientHello's random, which the gate reads from what rustls writes.
struct Gate<S> {
    inner: S,
    flight: Arc<Mutex<FirstFlight>>,
    secrets: Arc<HandshakeSecrets>,
    held: Vec<u8>,
    released: usize,
    open: bool,
    eof: bool,
    /// The first bytes the client wrote: its ClientHello's random is in them.
    hello: Vec<u8>,
}

/// Bytes of the first client record that hold its random (record header,
/// handshake header, legacy_version, random).
const HELLO_PREFIX: usize = 43;

impl<S> Gate<S> {
    fn new(inner: S, flight: Arc<Mutex<FirstFlight>>, secrets: Arc<HandshakeSecrets>) -> Gate<S> {
        Gate {
            inner,
            flight,
            secrets,
            held: Vec::new(),
            released: 0,
            open: false,
            eof: false,
            hello: Vec::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.open {
                let pending = this.held.get(this.released..).unwrap_or_default();
                if !pending.is_empty() {
                    let n = pending.len().min(buf.remaining());
                    buf.put_slice(pending.get(..n).unwrap_or_default());
                    this.released += n;
                    return Poll::Ready(Ok(()));
                }
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let (done, release_to) = {
                let Ok(mut f) = this.flight.lock() else {
                    return Poll::Ready(Err(io::Error::other("flight recorder poisoned")));
                };
                let start = f.protected_start();
                if f.wants_secret() && start.is_some_and(|at| this.released >= at) {
                    // rustls has had the whole ServerHello: it has logged
                    // the secret by now, or never will.
                    let random = um_sim::tls13::client_random(&this.hello);
                    match random.and_then(|r| this.secrets.for_connection(&r)) {
                        Some((server, _)) => f.set_secret(&server),
                        None => f.give_up(
                            "rustls logged no server handshake traffic secret for this \
                             connection",
                        ),
                    }
                }
                (f.done(), start.unwrap_or(0))
            };
            if done || this.eof {
                this.open = true;
                continue;
            }
            // TLS 1.3: the ServerHello's record (and anything before it)
            // may pass before the flight is whole.
            let may = release_to
                .min(this.held.len())
                .saturating_sub(this.released);
            if may > 0 {
                let n = may.min(buf.remaining());
                let from = this.released;
                buf.put_slice(this.held.get(from..from + n).unwrap_or_default());
                this.released += n;
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let fresh = read.filled();
            if fresh.is_empty() {
                this.eof = true;
                if let Ok(mut f) = this.flight.lock() {
                    f.give_up("the server closed the connection during its flight");
                }
                continue;
            }
            this.held.extend_from_slice(fresh);
            if let Ok(mut f) = this.flight.lock() {
                f.feed(fresh);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && this.hello.len() < HELLO_PREFIX
        {
            let take = n.min(HELLO_PREFIX - this.hello.len());
            this.hello
                .extend_from_slice(buf.get(..take).unwrap_or_default());
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What rustls handed the client certificate resolver.
#[derive(Clone, Debug, Default)]
struct Hints {
    names: Vec<Vec<u8>>,
    schemes: Vec<u16>,
}

/// Records the request's names and schemes, and presents `--cert` if given.
#[derive(Debug)]
struct Resolver {
    seen: Arc<Mutex<Option<Hints>>>,
    key: Option<Arc<CertifiedKey>>,
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(Hints {
                names: root_hint_subjects.iter().map(|n| n.to_vec()).collect(),
                schemes: sigschemes.iter().map(|s| u16::from(*s)).collect(),
            });
        }
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Takes any server chain (recording it): the probe reports the chain and
/// its verification instead of depending on it. Handshake signatures are
/// still checked, so the flight is the server's own.
#[derive(Debug)]
struct Recording {
    chain: Arc<Mutex<Vec<Vec<u8>>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.as_ref().to_vec())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Where a system's root bundle usually is (after `SSL_CERT_FILE`).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Verifies the server's chain against `--server-ca` or the system roots.
fn verify_server(
    chain: &[Vec<u8>],
    name: &ServerName<'static>,
    server_ca: Option<&(String, Vec<CertificateDer<'static>>)>,
    provider: &Arc<CryptoProvider>,
) -> ServerVerification {
    use rustls::pki_types::pem::PemObject;
    let (against, anchors) = match server_ca {
        Some((label, certs)) => (label.clone(), certs.clone()),
        None => {
            let path = std::env::var("SSL_CERT_FILE")
                .ok()
                .into_iter()
                .chain(SYSTEM_BUNDLES.iter().map(|s| (*s).to_owned()))
                .find(|p| std::path::Path::new(p).is_file());
            match path {
                Some(p) => {
                    let certs = CertificateDer::pem_file_iter(&p)
                        .map(|it| it.filter_map(Result::ok).collect())
                        .unwrap_or_default();
                    (format!("the system roots ({p})"), certs)
                }
                None => {
                    return ServerVerification {
                        against: "the system roots".into(),
                        error: Some("no system root bundle found".into()),
                    };
                }
            }
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(anchors);
    let error = (|| -> Result<(), String> {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let mut certs = chain.iter().map(|d| CertificateDer::from(d.clone()));
        let leaf = certs.next().ok_or("the server sent no certificate")?;
        let rest: Vec<CertificateDer<'static>> = certs.collect();
        verifier
            .verify_server_cert(&leaf, &rest, name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })()
    .err();
    ServerVerification { against, error }
}

/// How the server took the handshake, from a rustls or socket error.
fn answer_of(e: &io::Error) -> ServerAnswer {
    let rustls_error = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::AlertReceived(alert)) => {
            ServerAnswer::Refused(format!("fatal alert {alert:?}"))
        }
        Some(other) => ServerAnswer::Unknown(format!(
            "the probe's own TLS stack (rustls) stopped: {other}"
        )),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => {
                ServerAnswer::Refused(format!("the server closed the connection ({e})"))
            }
            _ if e.to_string().contains("message buffer full") => {
                ServerAnswer::Unknown(format!("the probe's own TLS stack (rustls) stopped: {e}"))
            }
            _ => ServerAnswer::Unknown(e.to_string()),
        },
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
pub(super) fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// One probe: everything the report needs, or why it could not be had.
pub(super) async fn observe(req: &Request) -> Result<Observation, ProbeError> {
    let t = req.timeout;
    let proto = req.starttls_or_default();
    let name_text = req
        .servername
        .clone()
        .unwrap_or_else(|| host_of(&req.target).to_owned());
    let server_name = ServerName::try_from(name_text.clone())
        .map_err(|e| ProbeError::Usage(format!("server name {name_text:?}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = match &req.identity {
        Some(id) => {
            let signing = provider
                .key_provider
                .load_private_key(id.key.clone_key())
                .map_err(|e| ProbeError::Usage(format!("--key: {e}")))?;
            Some(Arc::new(CertifiedKey::new(id.chain.clone(), signing)))
        }
        None => None,
    };
    let hints = Arc::new(Mutex::new(None));
    let chain_seen = Arc::new(Mutex::new(Vec::new()));
    let version: &'static rustls::SupportedProtocolVersion = match req.tls {
        TlsChoice::Tls12 => &rustls::version::TLS12,
        TlsChoice::Tls13 => &rustls::version::TLS13,
    };
    let secrets = Arc::new(HandshakeSecrets::default());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .map_err(|e| ProbeError::Usage(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording {
            chain: chain_seen.clone(),
            provider: provider.clone(),
        }))
        .with_client_cert_resolver(Arc::new(Resolver {
            seen: hints.clone(),
            key: key.clone(),
        }));
    // TLS 1.3: the probe's own handshake secrets, to decrypt its own
    // connection's CertificateRequest; kept in memory, never written out.
    config.key_log = secrets.clone();

    let tcp = tokio::time::timeout(t, TcpStream::connect(&req.target))
        .await
        .map_err(|_| ProbeError::Timeout {
            what: format!("connecting to {}", req.target),
            seconds: t.as_secs_f64(),
        })?
        .map_err(|e| ProbeError::Connect(format!("{}: {e}", req.target)))?;
    let _ = tcp.set_nodelay(true);
    let mut plain = BufReader::new(tcp);
    starttls(&mut plain, proto, t).await?;
    let discarded = plain.buffer().len();
    let tcp = plain.into_inner();

    let flight = Arc::new(Mutex::new(FirstFlight::new()));
    let gate = Gate::new(tcp, flight.clone(), secrets);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = tokio::time::timeout(t, connector.connect(server_name.clone(), gate)).await;
    let seen_hints = hints.lock().ok().and_then(|h| h.clone());
    // The flight as it stands; the gate is done with it once rustls has it.
    let (hello, messages, chain, request, broke, whole, cut, bytes, decrypted, unreadable) = {
        let f = flight
            .lock()
            .map_err(|_| ProbeError::Handshake("flight recorder poisoned".into()))?;
        (
            f.server_hello(),
            f.messages().to_vec(),
            f.chain().to_vec(),
            f.request().cloned(),
            f.error().cloned(),
            f.complete() || f.server_hello().is_some_and(|h| h.version == TLS13),
            f.cut_short(),
            f.bytes(),
            f.decrypted_messages().to_vec(),
            (f.unreadable().map(str::to_owned), f.decrypted_whole()),
        )
    };
    if let Some(e) = broke {
        return Err(match e {
            FlightError::NotTls(_) => ProbeError::NotTls(e.to_string()),
            FlightError::TooLarge => ProbeError::Handshake(e.to_string()),
        });
    }
    let incomplete = |why: String| -> ProbeError {
        match cut {
            Some((h, records, held)) => ProbeError::Truncated(format!(
                "the server's first flight stopped inside its {} ({} of {} bytes, {} record(s)): {why}",
                handshake_name(h.msg_type),
                held,
                h.len + 4,
                records
            )),
            None if bytes == 0 => {
                ProbeError::Handshake(format!("no TLS answer from the server: {why}"))
            }
            None => ProbeError::Truncated(format!(
                "the server's first flight ended after {bytes} bytes without ServerHelloDone: {why}"
            )),
        }
    };
    let mut tls = match handshake {
        Err(_) => {
            return Err(incomplete(format!(
                "no progress within {} s",
                t.as_secs_f64()
            )));
        }
        Ok(Err(e)) if !whole => return Err(incomplete(e.to_string())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(tls)) => Ok(tls),
    };
    let hello: ServerHello = hello.ok_or_else(|| incomplete("no ServerHello".into()))?;
    let seen = match (req.tls, request) {
        (TlsChoice::Tls12, None) => return Err(ProbeError::NoCertificateRequest),
        // A whole request, read on the wire (TLS 1.3: decrypted).
        (_, Some(r)) => match r
            .parsed
            .map_err(|e| ProbeError::BadRequest(e.to_string()))?
        {
            RequestBody::Tls12(request) => Seen::Wire {
                request,
                body_bytes: r.body_bytes,
                records: r.records,
                buffered_bytes: r.buffered_bytes,
            },
            RequestBody::Tls13(request) => Seen::Decrypted {
                request,
                body_bytes: r.body_bytes,
                records: r.records,
                buffered_bytes: r.buffered_bytes,
            },
        },
        // The decrypted flight reached the server's Finished without one.
        (TlsChoice::Tls13, None) if unreadable.1 => return Err(ProbeError::NoCertificateRequest),
        // Not decrypted: what rustls handed the resolver, and why.
        (TlsChoice::Tls13, None) => {
            let why = match (&unreadable.0, hello.hello_retry) {
                (Some(why), _) => why.clone(),
                (None, true) => "the server answered with a HelloRetryRequest; the probe does \
                                 not follow a second ServerHello"
                    .to_owned(),
                (None, false) => "the protected flight did not reach its end".to_owned(),
            };
            let h = match (&tls, seen_hints) {
                (_, Some(h)) => h,
                (Ok(_), None) => return Err(ProbeError::NoCertificateRequest),
                (Err(e), None) => {
                    return Err(ProbeError::Handshake(format!(
                        "the handshake failed before any CertificateRequest: {e} (TLS 1.3 \
                         records not decrypted: {why})"
                    )));
                }
            };
            Seen::Resolver {
                names: h.names,
                schemes: h.schemes,
                why,
            }
        }
    };
    let answer = match &mut tls {
        Err(e) => answer_of(e),
        Ok(stream) => goodbye(stream, proto, req.tls, t).await,
    };
    if let Ok(stream) = &mut tls {
        let _ = tokio::time::timeout(t, stream.shutdown()).await;
    }
    let server_chain = if chain.is_empty() {
        chain_seen.lock().map(|c| c.clone()).unwrap_or_default()
    } else {
        chain
    };
    let verification = verify_server(
        &server_chain,
        &server_name,
        req.server_ca.as_ref(),
        &provider,
    );
    Ok(Observation {
        target: req.target.clone(),
        starttls: proto.to_string(),
        hello,
        flight: messages,
        decrypted_flight: decrypted,
        seen,
        server_chain,
        verification,
        handshake: OwnHandshake {
            certificate_sent: key.is_some(),
            answer,
        },
        discarded,
    })
}

/// Ends the session as the protocol does (QUIT, LOGOUT, unbind) and reads
/// the answer: a refusal there (Postfix's `421 4.7.1`, a TLS 1.3 server's
/// certificate_required alert) is the server's verdict on the handshake.
async fn goodbye<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proto: Starttls,
    tls: TlsChoice,
    t: Duration,
) -> ServerAnswer {
    let bye: &[u8] = match proto {
        Starttls::Smtp | Starttls::Pop3 => b"QUIT\r\n",
        Starttls::Imap => b"P2 LOGOUT\r\n",
        Starttls::Ldap => &[0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00],
        Starttls::None => &[],
    };
    if !bye.is_empty() && send(stream, bye, t).await.is_err() {
        return ServerAnswer::Refused(
            "the server closed the connection after the handshake".into(),
        );
    }
    let wait = match (proto, tls) {
        (Starttls::Ldap, TlsChoice::Tls12) | (Starttls::None, TlsChoice::Tls12) => {
            return ServerAnswer::Accepted;
        }
        (Starttls::Ldap, TlsChoice::Tls13) | (Starttls::None, TlsChoice::Tls13) => {
            t.min(TLS13_VERDICT_WAIT)
        }
        _ => t,
    };
    let mut reader = BufReader::new(stream);
    match tokio::time::timeout(wait, async {
        let mut line = Vec::new();
        (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map(|_| line)
    })
    .await
    {
        // Nothing within the wait: the server did not refuse.
        Err(_) => ServerAnswer::Accepted,
        Ok(Err(e)) => match answer_of(&e) {
            ServerAnswer::Unknown(_) => ServerAnswer::Refused(format!("after the handshake: {e}")),
            other => other,
        },
        Ok(Ok(line)) if line.is_empty() && !matches!(proto, Starttls::Ldap | Starttls::None) => {
            ServerAnswer::Refused("the server closed the connection without answering".into())
        }
        Ok(Ok(line)) => {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if proto == Starttls::Smtp && text.starts_with("421") {
                ServerAnswer::Refused(format!("after the handshake the server answered {text:?}"))
            } else {
                ServerAnswer::Accepted
            }
        }
    }
}
