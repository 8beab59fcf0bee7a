//! um-sim's own SMTP client on tokio + tokio-rustls (lettre's transport cannot
//! take a custom rustls client configuration): EHLO, STARTTLS, EHLO, MAIL,
//! RCPT, DATA, QUIT, with TLS client authentication decided by the profile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;

use crate::profile::{Profile, Rule};
use crate::tap::{RuleViolation, SeenRequest, Tap, TapStream};

/// The client's certificate, key and issuer.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The leaf's issuer Name, DER: what `issuer-listed` looks for.
    pub issuer: Vec<u8>,
    /// The leaf's issuer as text.
    pub issuer_text: String,
}

/// Errors setting the client up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The certificate could not be read.
    #[error("client certificate: {0}")]
    Certificate(String),
    /// rustls refused the key or settings.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Identity {
    /// From a chain and key; the issuer is read from the leaf.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, SetupError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let leaf = chain
            .first()
            .ok_or_else(|| SetupError::Certificate("no certificate in the file".to_owned()))?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| SetupError::Certificate(e.to_string()))?;
        Ok(Identity {
            issuer: cert.issuer().as_raw().to_vec(),
            issuer_text: cert.issuer().to_string(),
            chain,
            key: Arc::new(key),
        })
    }
}

/// Where and how to submit.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `host:port`.
    pub server: String,
    /// Name the server certificate must carry.
    pub server_name: ServerName<'static>,
    /// Trust anchors for the server certificate.
    pub server_roots: Arc<rustls::RootCertStore>,
    /// Name sent in EHLO.
    pub helo: String,
    /// Envelope sender.
    pub from: String,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time to wait for any one reply or handshake.
    pub io_timeout: Duration,
}

/// What the client decided about its certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CertDecision {
    /// Names rustls passed to the resolver (as the server sent them).
    pub names: usize,
    /// Whether our issuer was among them.
    pub issuer_listed: bool,
    /// Whether the certificate was sent.
    pub certificate_sent: bool,
}

/// Presents the certificate as the profile says.
#[derive(Debug)]
struct Resolver {
    key: Arc<CertifiedKey>,
    issuer: Vec<u8>,
    profile: Profile,
    decision: Arc<Mutex<Option<CertDecision>>>,
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let send = self
            .profile
            .presents_certificate(root_hint_subjects, &self.issuer);
        if let Ok(mut d) = self.decision.lock() {
            *d = Some(CertDecision {
                names: root_hint_subjects.len(),
                issuer_listed: root_hint_subjects.contains(&self.issuer.as_slice()),
                certificate_sent: send,
            });
        }
        send.then(|| self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// How an attempt failed, by the event UM would log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// No server answered (UM event 1082).
    NoServer,
    /// The TLS handshake failed with no acceptable certificate to send: the
    /// incident (event 1423, TlsApiFailureException).
    NoAcceptableCertificate,
    /// A record rule of the profile stopped the handshake (event 1423).
    ProfileRule,
    /// um-sim's own stack (rustls) could not take the server's flight: a
    /// handshake message over 65,535 bytes, or tokio-rustls's 64 KB buffer.
    OwnStackLimit,
    /// Any other TLS failure (event 1423).
    Tls,
    /// An unexpected SMTP reply (event 1185).
    SmtpReply,
    /// The connection broke or timed out mid-session.
    Connection,
}

/// One exchange on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// What was sent (a placeholder for message data).
    pub command: String,
    /// Reply code.
    pub code: u16,
    /// Reply text, lines joined.
    pub reply: String,
}

/// Everything about one submission attempt.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Attempt {
    /// The CertificateRequest as the tap saw it on the wire (TLS 1.2).
    pub certificate_request: Option<SeenRequest>,
    /// TLS version negotiated.
    pub tls_version: Option<String>,
    /// What the client did about its certificate.
    pub certificate: Option<CertDecision>,
    /// `ok` or `failed`, once a handshake was tried.
    pub handshake: Option<String>,
    /// The rule that stopped the handshake, if one did.
    pub rule: Option<Rule>,
    /// SMTP exchanges.
    pub smtp: Vec<Exchange>,
    /// Set when the message was accepted (250 to DATA).
    pub delivered: bool,
    /// Failure class.
    pub failure: Option<FailureClass>,
    /// Failure detail.
    pub error: Option<String>,
}

impl Attempt {
    fn fail(mut self, class: FailureClass, error: impl Into<String>) -> Attempt {
        self.failure = Some(class);
        self.error = Some(error.into());
        self
    }
}

/// A reply: code and lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Code.
    pub code: u16,
    /// Text of each line.
    pub lines: Vec<String>,
}

/// Parses one reply line: code, whether it is the last line, the text.
pub fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let code: u16 = line.get(..3)?.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Some((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => None,
    }
}

async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        // Replies are short; a server sending megabytes without a newline is broken.
        let n = (&mut *r).take(4096).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let (code, last, rest) = parse_reply_line(text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an SMTP reply: {text:?}"),
            )
        })?;
        lines.push(rest.to_owned());
        if last {
            return Ok(Reply { code, lines });
        }
    }
}

/// Sends a command (or data) and reads the reply, with a timeout.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    attempt: &mut Attempt,
    label: &str,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Reply, String> {
    let done = tokio::time::timeout(timeout, async {
        if !bytes.is_empty() {
            io.get_mut().write_all(bytes).await?;
            io.get_mut().flush().await?;
        }
        read_reply(io).await
    })
    .await;
    match done {
        Ok(Ok(reply)) => {
            attempt.smtp.push(Exchange {
                command: label.to_owned(),
                code: reply.code,
                reply: reply.lines.join(" / "),
            });
            Ok(reply)
        }
        Ok(Err(e)) => Err(format!("{label}: {e}")),
        Err(_) => Err(format!("{label}: no reply within {timeout:?}")),
    }
}

/// Dot-stuffs a message and appends the end marker (RFC 5321 4.5.2).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Submits one message. Never panics; every outcome is in the returned attempt.
/// `on_accepted` runs the moment the server answers 250 to the message, before
/// QUIT: the item leaves the queue then, which keeps the window for a
/// duplicate after a crash as small as it can be.
pub async fn submit(
    settings: &ClientSettings,
    identity: &Identity,
    profile: &Profile,
    recipient: &str,
    message: &[u8],
    on_accepted: &(dyn Fn() + Sync),
) -> Attempt {
    let mut attempt = Attempt::default();
    let tcp = match tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect(&settings.server),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return attempt.fail(FailureClass::NoServer, format!("{}: {e}", settings.server));
        }
        Err(_) => {
            return attempt.fail(
                FailureClass::NoServer,
                format!(
                    "{}: no answer within {:?}",
                    settings.server, settings.connect_timeout
                ),
            );
        }
    };
    let _ = tcp.set_nodelay(true);
    let t = settings.io_timeout;
    let mut plain = BufReader::new(tcp);
    let ehlo = format!("EHLO {}\r\n", settings.helo);
    macro_rules! expect {
        ($io:expr, $label:expr, $bytes:expr, $code:expr) => {
            match exchange($io, &mut attempt, $label, $bytes, t).await {
                Ok(r) if r.code == $code => r,
                Ok(r) => {
                    let text = format!("{} answered {} {}", $label, r.code, r.lines.join(" / "));
                    return attempt.fail(FailureClass::SmtpReply, text);
                }
                Err(e) => return attempt.fail(FailureClass::Connection, e),
            }
        };
    }
    expect!(&mut plain, "greeting", b"", 220);
    let caps = expect!(&mut plain, "EHLO", ehlo.as_bytes(), 250);
    if !caps
        .lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("STARTTLS"))
    {
        return attempt.fail(
            FailureClass::SmtpReply,
            "the server does not offer STARTTLS",
        );
    }
    expect!(&mut plain, "STARTTLS", b"STARTTLS\r\n", 220);

    // TLS, with the tap under rustls and the profile deciding the certificate.
    let tap = Arc::new(Mutex::new(Tap::new(profile.clone())));
    let decision = Arc::new(Mutex::new(None));
    let config = match client_config(settings, identity, profile, decision.clone()) {
        Ok(c) => c,
        Err(e) => return attempt.fail(FailureClass::Tls, e.to_string()),
    };
    let stream = TapStream::new(plain.into_inner(), tap.clone());
    let connector = tokio_rustls::TlsConnector::from(config);
    let handshake =
        tokio::time::timeout(t, connector.connect(settings.server_name.clone(), stream)).await;
    attempt.certificate_request = tap.lock().ok().and_then(|tap| tap.seen().request.clone());
    attempt.certificate = decision.lock().ok().and_then(|d| d.clone());
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            attempt.handshake = Some("failed".to_owned());
            let (class, detail) = classify(&e, &attempt);
            if class == FailureClass::ProfileRule {
                attempt.rule = tap.lock().ok().and_then(|tap| tap.seen().violated);
            }
            return attempt.fail(class, detail);
        }
        Err(_) => {
            attempt.handshake = Some("failed".to_owned());
            return attempt.fail(
                FailureClass::Tls,
                format!("TLS handshake: no progress within {t:?}"),
            );
        }
    };
    attempt.handshake = Some("ok".to_owned());
    let tls13 = tls.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    attempt.tls_version = tls.get_ref().1.protocol_version().map(|v| format!("{v:?}"));
    let mut secure = BufReader::new(tls);
    // In TLS 1.3 the client finishes before the server has judged its
    // certificate: a refusal (an alert, or a bare close) arrives at the first
    // read. That is still a handshake failure, and UM logs it as one (1423).
    // A server that took the handshake without our certificate may also
    // refuse us at the first command (Postfix: 421 4.7.1 No client certificate).
    match exchange(&mut secure, &mut attempt, "EHLO", ehlo.as_bytes(), t).await {
        Ok(r) if r.code == 250 => {}
        Ok(r) => {
            let text = format!("EHLO answered {} {}", r.code, r.lines.join(" / "));
            return attempt.fail(FailureClass::SmtpReply, text);
        }
        Err(e) if tls13 => {
            attempt.handshake = Some("failed".to_owned());
            let refused = attempt
                .certificate
                .as_ref()
                .is_some_and(|d| !d.certificate_sent);
            let class = if refused {
                FailureClass::NoAcceptableCertificate
            } else {
                FailureClass::Tls
            };
            return attempt.fail(
                class,
                format!("the server ended the TLS 1.3 handshake after our Finished: {e}"),
            );
        }
        Err(e) => return attempt.fail(FailureClass::Connection, e),
    }
    let mail = format!("MAIL FROM:<{}> SIZE={}\r\n", settings.from, message.len());
    expect!(&mut secure, "MAIL", mail.as_bytes(), 250);
    let rcpt = format!("RCPT TO:<{recipient}>\r\n");
    expect!(&mut secure, "RCPT", rcpt.as_bytes(), 250);
    expect!(&mut secure, "DATA", b"DATA\r\n", 354);
    let body = dot_stuff(message);
    let label = format!("<message, {} octets>", message.len());
    expect!(&mut secure, &label, &body, 250);
    attempt.delivered = true;
    on_accepted();
    // The message is the server's now; QUIT is a courtesy.
    let _ = exchange(&mut secure, &mut attempt, "QUIT", b"QUIT\r\n", t).await;
    let _ = secure.get_mut().shutdown().await;
    attempt
}

fn client_config(
    settings: &ClientSettings,
    identity: &Identity,
    profile: &Profile,
    decision: Arc<Mutex<Option<CertDecision>>>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(identity.key.clone_key())?;
    let certified = Arc::new(CertifiedKey::new(identity.chain.clone(), key));
    let resolver = Resolver {
        key: certified,
        issuer: identity.issuer.clone(),
        profile: profile.clone(),
        decision,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(settings.server_roots.clone())
        .with_client_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}

/// Sorts a handshake failure into the class UM's events distinguish.
fn classify(e: &std::io::Error, attempt: &Attempt) -> (FailureClass, String) {
    let inner = e.get_ref();
    if let Some(v) = inner.and_then(|i| i.downcast_ref::<RuleViolation>()) {
        return (FailureClass::ProfileRule, v.to_string());
    }
    let text = e.to_string();
    let rustls_error = inner.and_then(|i| i.downcast_ref::<rustls::Error>());
    let own_limit = text.contains("message buffer full")
        || matches!(
            rustls_error,
            Some(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::HandshakePayloadTooLarge
                    | rustls::InvalidMessage::MessageTooLarge
            ))
        );
    if own_limit {
        return (
            FailureClass::OwnStackLimit,
            format!("um-sim's own TLS stack (rustls) cannot take this flight: {text}"),
        );
    }
    let sent = attempt
        .certificate
        .as_ref()
        .is_some_and(|d| d.certificate_sent);
    if attempt.certificate.is_some() && !sent {
        return (
            FailureClass::NoAcceptableCertificate,
            format!("no certificate issued by a listed CA; the server ended the handshake: {text}"),
        );
    }
    (FailureClass::Tls, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line("250-PIPELINING"),
            Some((250, false, "PIPELINING"))
        );
        assert_eq!(parse_reply_line("250 OK"), Some((250, true, "OK")));
        assert_eq!(parse_reply_line("221"), Some((221, true, "")));
        assert_eq!(parse_reply_line("2500"), None);
        assert_eq!(parse_reply_line("abc"), None);
        assert_eq!(parse_reply_line("999 x"), None);
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
    }
}
