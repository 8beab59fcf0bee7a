//! The SMTP dialogue of one submission: connect, EHLO, STARTTLS, the TLS
//! handshake under the record tap, EHLO, MAIL, RCPT, DATA, QUIT; and the
//! sorting of a failure into the class UM's events distinguish.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::presets::Reach;
use crate::profile::Profile;
use crate::tap::{HandshakeSecrets, RuleViolation, Tap, TapStream};

use super::attempt::{Attempt, Exchange, FailureClass};
use super::reply::{Reply, ReplyError, read_reply};
use super::tls::{Identity, client_config};

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

/// Why an exchange got no usable reply.
#[derive(Debug)]
struct ExchangeError {
    /// What was sent.
    label: String,
    /// `None`: no reply within the timeout.
    cause: Option<ReplyError>,
    /// The timeout, for the message.
    timeout: Duration,
}

impl ExchangeError {
    /// The class UM's events give it: a reply over um-sim's caps or with
    /// changing codes is an unexpected response (1185, `smtp-reply`);
    /// anything else a broken connection.
    fn class(&self) -> FailureClass {
        match &self.cause {
            Some(e) if e.server_replied() => FailureClass::SmtpReply,
            _ => FailureClass::Connection,
        }
    }

    /// Whether the server answered at all (reply lines over the caps or with
    /// changing codes): then the TLS handshake had succeeded.
    fn server_spoke(&self) -> bool {
        self.cause.as_ref().is_some_and(ReplyError::server_replied)
    }
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(e) => write!(f, "{}: {e}", self.label),
            None => write!(f, "{}: no reply within {:?}", self.label, self.timeout),
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
) -> Result<Reply, ExchangeError> {
    let done = tokio::time::timeout(timeout, async {
        if !bytes.is_empty() {
            io.get_mut().write_all(bytes).await?;
            io.get_mut().flush().await?;
        }
        read_reply(io).await
    })
    .await;
    let error = |cause| ExchangeError {
        label: label.to_owned(),
        cause,
        timeout,
    };
    match done {
        Ok(Ok(reply)) => {
            attempt.smtp.push(Exchange {
                command: label.to_owned(),
                code: reply.code,
                reply: reply.lines.join(" / "),
            });
            Ok(reply)
        }
        Ok(Err(e)) => Err(error(Some(e))),
        Err(_) => Err(error(None)),
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
/// duplicate after a crash as small as it can be. It is async so that moving
/// the item (renames and fsyncs) can wait on the blocking pool instead of
/// stalling a runtime worker.
pub async fn submit(
    settings: &ClientSettings,
    identity: &Identity,
    profile: &Profile,
    recipient: &str,
    message: &[u8],
    on_accepted: impl AsyncFnOnce(),
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
                    attempt.reply_code = Some(r.code);
                    return attempt.fail(FailureClass::SmtpReply, text);
                }
                Err(e) => return attempt.fail(e.class(), e.to_string()),
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
    let secrets = Arc::new(HandshakeSecrets::default());
    let config = match client_config(
        settings.server_roots.clone(),
        identity,
        profile,
        decision.clone(),
        secrets.clone(),
    ) {
        Ok(c) => c,
        Err(e) => return attempt.fail(FailureClass::Tls, e.to_string()),
    };
    let stream = TapStream::new(plain.into_inner(), tap.clone(), secrets);
    let connector = tokio_rustls::TlsConnector::from(config);
    let handshake =
        tokio::time::timeout(t, connector.connect(settings.server_name.clone(), stream)).await;
    if let Ok(tap) = tap.lock() {
        let seen = tap.seen();
        attempt.certificate_request = seen.request.clone();
        attempt.unjudged = seen.blind.clone();
    }
    attempt.certificate = decision.lock().ok().and_then(|d| d.clone());
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            attempt.handshake = Some("failed".to_owned());
            let failure = classify(&e, &attempt, profile);
            if failure.class == FailureClass::ProfileRule {
                attempt.rule = tap.lock().ok().and_then(|tap| tap.seen().violated);
            }
            attempt.stack_error = failure.stack_error;
            return attempt.fail(failure.class, failure.detail);
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
            attempt.reply_code = Some(r.code);
            return attempt.fail(FailureClass::SmtpReply, text);
        }
        Err(e) if tls13 && !e.server_spoke() => {
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
        Err(e) => return attempt.fail(e.class(), e.to_string()),
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
    on_accepted().await;
    // The message is the server's now; QUIT is a courtesy.
    let _ = exchange(&mut secure, &mut attempt, "QUIT", b"QUIT\r\n", t).await;
    let _ = secure.get_mut().shutdown().await;
    attempt
}

/// A handshake failure, sorted.
struct Failure {
    class: FailureClass,
    detail: String,
    /// What the modeled stack prints for it, when known.
    stack_error: Option<String>,
}

/// Sorts a handshake failure into the class UM's events distinguish.
fn classify(e: &std::io::Error, attempt: &Attempt, profile: &Profile) -> Failure {
    let failure = |class, detail, stack_error| Failure {
        class,
        detail,
        stack_error,
    };
    let inner = e.get_ref();
    if let Some(v) = inner.and_then(|i| i.downcast_ref::<RuleViolation>()) {
        return failure(FailureClass::ProfileRule, v.to_string(), v.prints.clone());
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
        let own = format!("um-sim's own TLS stack (rustls) cannot take this flight: {text}");
        return match profile.reach() {
            // The modeled stack is um-sim's: this is its own failure.
            Reach::OwnStack => failure(
                FailureClass::OwnStackLimit,
                format!("{own}; {} fails here the same way", profile.stack),
                Some(text),
            ),
            Reach::BeyondOwnStack | Reach::NoLimit => failure(
                FailureClass::OwnStackLimit,
                format!(
                    "{own}; {} would go on (its limit lies beyond um-sim's): the lab cannot \
                     observe this stack at this size",
                    profile.stack
                ),
                None,
            ),
            Reach::Observable => failure(FailureClass::OwnStackLimit, own, None),
        };
    }
    let sent = attempt
        .certificate
        .as_ref()
        .is_some_and(|d| d.certificate_sent);
    if attempt.certificate.is_some() && !sent {
        return failure(
            FailureClass::NoAcceptableCertificate,
            format!(
                "no certificate of the chain issued by a listed CA; the server ended the \
                 handshake: {text}"
            ),
            None,
        );
    }
    failure(FailureClass::Tls, text, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
    }
}
