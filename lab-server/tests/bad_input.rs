//! Bad input on the socket: each case gets the right reply or a clean close,
//! and another client is served normally at the same time or afterwards.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, Smtp, assert_still_serving, start};
use lab_server::policy::Policy;

/// A small store (8 roots + the CA): these tests are about SMTP, not the list.
async fn lab(tweak: impl FnOnce(&mut lab_server::server::Settings)) -> Lab {
    start(8, tweak).await
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_before_ehlo_gets_500_and_the_session_stays_usable() {
    let mut lab = lab(|_| {}).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    // A TLS ClientHello sent to the plaintext port, then binary noise and an
    // ANSI escape sequence: three LF-terminated lines.
    let garbage: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\xde\xad\xbe\xef\n\
\xff\xfe\xfd garbage \x80\x81\r\n\x1b[31mred\x1b[0m\r\n";
    s.send(garbage).await;
    // The ClientHello line holds NUL bytes; the other two are just unknown.
    for want in [
        "500 5.5.2 NUL character in command",
        "500 5.5.2 Command unrecognized",
        "500 5.5.2 Command unrecognized",
    ] {
        let r = s.reply().await.expect("a reply to each garbage line");
        assert_eq!(r.first(), want);
    }
    assert_still_serving(lab.addr()).await;
    let ehlo = s.cmd("EHLO um.lab.test").await;
    assert_eq!(ehlo.code, 250, "{ehlo:?}");
    assert_eq!(s.cmd("QUIT").await.first(), "221 2.0.0 Bye");
    let ev = lab.event_for(s.local).await;
    assert_eq!(
        ev.smtp.iter().filter(|x| x.code == 500).count(),
        3,
        "{ev:#?}"
    );
    assert_eq!(ev.end, "closed after 221");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_mb_line_gets_500_5_5_2_while_others_are_served() {
    let mut lab = lab(|_| {}).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    let half = vec![b'A'; 512 * 1024];
    s.send(&half).await;
    // Mid-line, another client is served.
    assert_still_serving(lab.addr()).await;
    s.send(&half).await;
    s.send(b"\r\n").await;
    let r = s.reply().await.expect("a reply to the long line");
    assert_eq!(r.first(), "500 5.5.2 Line too long");
    // The line was consumed to its end: the next command is read normally.
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("QUIT").await.code, 221);
    let ev = lab.event_for(s.local).await;
    assert_eq!(ev.smtp[0].command, "<line over the limit>", "{ev:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_in_a_command_gets_500() {
    let lab = lab(|_| {}).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    let r = s.cmd("EHLO um\0.lab.test").await;
    assert_eq!(r.first(), "500 5.5.2 NUL character in command");
    let r = s.cmd("\0").await;
    assert_eq!(r.first(), "500 5.5.2 NUL character in command");
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_still_serving(lab.addr()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_pipelined_after_starttls_are_discarded() {
    let mut lab = lab(|_| {}).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    let injected = "MAIL FROM:<evil@x>\r\n";
    s.send(format!("STARTTLS\r\n{injected}").as_bytes()).await;
    let r = s.reply().await.expect("a reply to STARTTLS");
    assert_eq!(r.first(), "220 2.0.0 Ready to start TLS");
    // No plaintext reply to the MAIL may follow: `tls()` refuses unread bytes,
    // and a stray reply would also break the handshake.
    let local = s.local;
    let mut s = s.tls().await.expect("TLS handshake after STARTTLS");
    // Nothing from before TLS survives: MAIL without a new EHLO is refused.
    let r = s.cmd("MAIL FROM:<um@lab.test>").await;
    assert_eq!(r.first(), "503 5.5.1 Send EHLO first");
    assert_still_serving(lab.addr()).await;
    let ehlo = s.cmd("EHLO um.lab.test").await;
    assert_eq!(ehlo.code, 250);
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert_eq!(s.cmd("MAIL FROM:<um@lab.test>").await.code, 250);
    assert_eq!(s.cmd("QUIT").await.first(), "221 2.0.0 Bye");

    let ev = lab.event_for(local).await;
    assert_eq!(ev.handshake.as_ref().map(|h| h.outcome), Some("ok"));
    assert!(ev.plaintext_discarded > 0, "{ev:#?}");
    // The whole pipelined line arrived in the same segment as STARTTLS.
    assert_eq!(ev.plaintext_discarded, injected.len(), "{ev:#?}");
    assert!(
        !ev.smtp.iter().any(|x| x.command.contains("evil")),
        "the injected MAIL was executed: {:#?}",
        ev.smtp
    );
    let commands: Vec<(&str, u16)> = ev
        .smtp
        .iter()
        .map(|x| (x.command.as_str(), x.code))
        .collect();
    assert_eq!(
        commands,
        [
            ("EHLO um.lab.test", 250),
            ("STARTTLS", 220),
            ("MAIL FROM:<um@lab.test>", 503),
            ("EHLO um.lab.test", 250),
            ("MAIL FROM:<um@lab.test>", 250),
            ("QUIT", 221),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_after_starttls_fails_the_handshake_and_closes() {
    let mut lab = lab(|s| s.handshake_timeout = Duration::from_secs(5)).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    let t = Instant::now();
    s.send(b"hello garbage\r\n").await;
    let rest = s.until_closed(Duration::from_secs(4)).await;
    // At most a TLS alert record, never SMTP text.
    assert!(
        rest.is_empty() || rest[0] == 21,
        "after a failed handshake the server sent {rest:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let ev = lab.event_for(s.local).await;
    let hs = ev.handshake.as_ref().expect("handshake recorded");
    assert_eq!(hs.outcome, "failed", "{ev:#?}");
    // The alert the server sent, read off the wire: bytes that are not TLS
    // get decode_error (rustls).
    if rest.len() == 7 {
        let want = format!("sent {:?}", rustls::AlertDescription::from(rest[6]));
        assert_eq!(hs.alert.as_deref(), Some(want.as_str()), "{ev:#?}");
    }
    let error = hs.error.as_deref().unwrap_or("");
    assert!(!error.contains("timed out"), "{ev:#?}");
    assert!(ev.end.starts_with("TLS handshake failed"), "{ev:#?}");
    assert!(ev.certificate_request.is_none() && ev.client_certificate.is_none());
    assert_still_serving(lab.addr()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_gone_mid_data_stores_nothing() {
    let mut lab = lab(|s| s.require_tls = false).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("MAIL FROM:<um@lab.test>").await.code, 250);
    assert_eq!(s.cmd("RCPT TO:<hub@lab.test>").await.code, 250);
    assert_eq!(s.cmd("DATA").await.code, 354);
    s.send(b"Subject: half a voicemail\r\n\r\nfirst half of the bo")
        .await;
    let local = s.local;
    drop(s);
    let ev = lab.event_for(local).await;
    assert!(ev.end.contains("DATA"), "{ev:#?}");
    assert!(ev.end.contains("nothing stored"), "{ev:#?}");
    assert!(ev.stored.is_empty());
    assert!(lab.maildir_files("new").is_empty());
    assert!(lab.maildir_files("tmp").is_empty());
    assert_still_serving(lab.addr()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_hits_the_idle_timeout() {
    let mut lab = lab(|s| s.idle_timeout = Duration::from_secs(1)).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    let t = Instant::now();
    let r = s.reply().await.expect("421 before the close");
    let waited = t.elapsed();
    assert_eq!(r.first(), "421 4.4.2 Idle timeout, closing connection");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(s.until_closed(Duration::from_secs(2)).await.is_empty());
    assert_eq!(lab.event_for(s.local).await.end, "idle timeout");
    assert_still_serving(lab.addr()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_get_421_4_3_2() {
    let mut lab = lab(|s| s.max_connections = 1).await;
    let mut first = Smtp::greeted(lab.addr()).await;
    let mut second = Smtp::connect(lab.addr()).await;
    let r = second
        .reply()
        .await
        .expect("a reply to the excess connection");
    assert_eq!(r.first(), "421 4.3.2 Too many connections, try again later");
    assert!(second.until_closed(Duration::from_secs(2)).await.is_empty());
    // The connection holding the slot is still served.
    assert_eq!(first.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(first.cmd("QUIT").await.code, 221);
    first.until_closed(Duration::from_secs(2)).await;
    lab.event_for(first.local).await;
    // The slot is released just after the event is sent: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = Smtp::connect(lab.addr()).await;
        let r = s.reply().await.expect("a greeting or 421");
        if r.code == 220 {
            assert_eq!(s.cmd("QUIT").await.code, 221);
            break;
        }
        assert_eq!(r.first(), "421 4.3.2 Too many connections, try again later");
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eleven_errors_get_421_4_7_0_and_a_close() {
    let mut lab = lab(|_| {}).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    for i in 0..10 {
        let r = s.cmd(&format!("BOGUS {i}")).await;
        assert_eq!(r.first(), "500 5.5.2 Command unrecognized", "error {i}");
    }
    let r = s.cmd("BOGUS 10").await;
    assert_eq!(r.first(), "421 4.7.0 Too many errors, closing connection");
    assert!(s.until_closed(Duration::from_secs(2)).await.is_empty());
    let ev = lab.event_for(s.local).await;
    assert_eq!(ev.end, "closed after 421");
    assert_eq!(ev.smtp.len(), 11);
    assert_still_serving(lab.addr()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_before_starttls_gets_530_5_7_0() {
    let lab = lab(|s| s.policy.policy = Policy::Omit).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    let r = s.cmd("MAIL FROM:<um@lab.test>").await;
    assert_eq!(r.first(), "530 5.7.0 Must issue a STARTTLS command first");
    let r = s.cmd("RCPT TO:<hub@lab.test>").await;
    assert_eq!(r.first(), "530 5.7.0 Must issue a STARTTLS command first");
    assert_still_serving(lab.addr()).await;
    // STARTTLS is still available after the refusal.
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    let mut s = s.tls().await.expect("TLS after the refusal");
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("MAIL FROM:<um@lab.test>").await.code, 250);
    assert_eq!(s.cmd("QUIT").await.code, 221);
}

/// Known bug, kept as a ready repro: a bare-LF end marker (`<LF>.<LF>`) ends
/// DATA, and what follows runs as commands (SMTP smuggling, CVE-2023-51764
/// class). Only `<CRLF>.<CRLF>` may end a message (RFC 5321 4.1.1.4).
#[tokio::test(flavor = "multi_thread")]
async fn bare_lf_dot_does_not_end_data() {
    let mut lab = lab(|s| s.require_tls = false).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("MAIL FROM:<um@lab.test>").await.code, 250);
    assert_eq!(s.cmd("RCPT TO:<hub@lab.test>").await.code, 250);
    assert_eq!(s.cmd("DATA").await.code, 354);
    s.send(b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<smuggled@x>\r\n.\r\n")
        .await;
    let r = s.reply().await.expect("a reply to the message");
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(s.cmd("QUIT").await.code, 221);
    let ev = lab.event_for(s.local).await;
    assert!(
        !ev.smtp.iter().any(|x| x.command.contains("smuggled")),
        "text after <LF>.<LF> ran as a command: {:#?}",
        ev.smtp
    );
}
