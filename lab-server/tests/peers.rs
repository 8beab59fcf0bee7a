//! lab-server against real peers, run for real over TCP: openssl s_client
//! (the CA list it prints, count and order, under each policy), swaks (a
//! message with an attachment lands in the Maildir), gnutls-cli (a complete
//! handshake), and a rustls client whose first flight we read off the wire
//! byte for byte (record layout and fragment size).
//!
//! External tools are skipped with a note when missing, and fail the test
//! when CI=true. Every tool runs under a deadline.

mod common;

use std::ffi::OsString;
use std::io::Write as _;

use certgen::Root;
use certgen::wire::{
    CONTENT_HANDSHAKE, CertificateRequest12, HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST,
    HS_SERVER_HELLO_DONE, HandshakeHeader, RECORD_HEADER_LEN, RecordHeader,
};
use common::{
    IO_TIMEOUT, Lab, Smtp, TOOL_TIMEOUT, ToolOutput, arg, base64, require_tool, run_tool, start,
};
use lab_server::events::ConnectionEvent;
use lab_server::policy::{Policy, Report, TlsVersion};
use lab_server::shaper::Layout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Realistic roots before the CA: 354 + the CA = the incident's 355.
const INCIDENT_ROOTS: u64 = 354;

fn policy(p: Policy, version: TlsVersion) -> impl FnOnce(&mut lab_server::server::Settings) {
    move |s| {
        s.policy.policy = p;
        s.tls_version = version;
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The handshake event of a real peer: ok, with the report's figures and
/// the UM certificate.
fn assert_handshake_event(ev: &ConnectionEvent, report: &Report) {
    let hs = ev.handshake.as_ref().unwrap_or_else(|| panic!("{ev:#?}"));
    assert_eq!(hs.outcome, "ok", "{ev:#?}");
    let (version, source) = match report.shape.version {
        TlsVersion::Tls12 => ("TLSv1_2", "wire"),
        // Encrypted: the figures come from the lab's own encoding.
        TlsVersion::Tls13 => ("TLSv1_3", "encoding"),
    };
    assert_eq!(ev.tls_version.as_deref(), Some(version), "{ev:#?}");
    let cr = ev
        .certificate_request
        .as_ref()
        .unwrap_or_else(|| panic!("no certificate_request in {ev:#?}"));
    assert_eq!(cr.source, source);
    assert_eq!(cr.ca_names, report.kept, "names on the wire vs report");
    assert_eq!(cr.bytes, report.message_bytes, "message bytes vs report");
    assert_eq!(cr.records, report.records, "records vs report");
    let cert = ev
        .client_certificate
        .as_ref()
        .unwrap_or_else(|| panic!("no client certificate in {ev:#?}"));
    assert!(cert.subject.contains("um.lab.test"), "{cert:?}");
    assert!(cert.issuer.contains("umlab Enterprise Root CA"), "{cert:?}");
}

/// `openssl s_client -starttls smtp ... -tls1_2` (or `-tls1_3`) with the UM
/// certificate, QUIT on stdin. `None` when openssl is missing (and CI is not set).
async fn s_client(lab: &Lab) -> Option<ToolOutput> {
    if !require_tool("openssl") {
        return None;
    }
    let connect = format!("127.0.0.1:{}", lab.addr().port());
    let mut args = os(&[
        "s_client",
        "-starttls",
        "smtp",
        "-name",
        "um.lab.test",
        "-connect",
        &connect,
        match lab.server.report().shape.version {
            TlsVersion::Tls12 => "-tls1_2",
            TlsVersion::Tls13 => "-tls1_3",
        },
    ]);
    for (flag, file) in [
        ("-cert", "um.pem"),
        ("-key", "um.key"),
        ("-CAfile", "ca.pem"),
    ] {
        args.push(flag.into());
        args.push(arg(&lab.pki_file(file)));
    }
    let out = run_tool("openssl", args, b"QUIT\n".to_vec(), TOOL_TIMEOUT).await;
    out.assert_success("openssl s_client");
    assert!(
        out.stdout.contains("Verify return code: 0 (ok)"),
        "s_client did not verify the Hub: {}",
        out.dump()
    );
    Some(out)
}

/// The lines of s_client's "Acceptable client certificate CA names" section.
fn acceptable_ca_names(stdout: &str) -> Option<Vec<String>> {
    let mut lines = stdout.lines();
    lines.find(|l| l.trim_end() == "Acceptable client certificate CA names")?;
    Some(
        lines
            .take_while(|l| {
                !(l.starts_with("Client Certificate Types")
                    || l.starts_with("Requested Signature Algorithms")
                    || l.starts_with("---"))
            })
            .map(str::to_owned)
            .collect(),
    )
}

/// The subjects of `roots` as openssl prints names (s_client and `pkcs7
/// -print_certs` both use the apps' default -nameopt), in order.
async fn openssl_subjects(lab: &Lab, roots: &[Root]) -> Vec<String> {
    let bundle = lab.path("expected.pem");
    let p7b = lab.path("expected.p7b");
    let pem: String = roots.iter().map(Root::to_pem).collect();
    std::fs::write(&bundle, pem).expect("bundle");
    let mut args = os(&["crl2pkcs7", "-nocrl", "-certfile"]);
    args.extend([arg(&bundle), "-out".into(), arg(&p7b)]);
    run_tool("openssl", args, Vec::new(), TOOL_TIMEOUT)
        .await
        .assert_success("openssl crl2pkcs7");
    let mut args = os(&["pkcs7", "-print_certs", "-noout", "-in"]);
    args.push(arg(&p7b));
    let out = run_tool("openssl", args, Vec::new(), TOOL_TIMEOUT).await;
    out.assert_success("openssl pkcs7 -print_certs");
    let subjects: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("subject="))
        .map(str::to_owned)
        .collect();
    assert_eq!(subjects.len(), roots.len(), "{}", out.dump());
    subjects
}

/// Runs s_client against a 355-root store under `p` and compares the names it
/// printed with the first `kept` subjects of the store, in order.
async fn s_client_lists_the_policy(p: Policy, v: TlsVersion) -> Option<(Lab, Vec<String>)> {
    let mut lab = start(INCIDENT_ROOTS, policy(p, v)).await;
    let out = s_client(&lab).await?;
    let report = lab.server.report().clone();
    assert_eq!(report.roots, 355);
    let ev = lab.next_event().await;
    assert_handshake_event(&ev, &report);
    let printed = acceptable_ca_names(&out.stdout)
        .unwrap_or_else(|| panic!("no CA names section: {}", out.dump()));
    let expected = openssl_subjects(&lab, &lab.store.roots()[..report.kept]).await;
    assert_eq!(
        printed.len(),
        report.kept,
        "s_client printed {} names, the policy kept {}",
        printed.len(),
        report.kept
    );
    if let Some(i) = (0..printed.len()).find(|&i| printed[i] != expected[i]) {
        panic!(
            "name {i} differs:\n  s_client: {}\n  store:    {}",
            printed[i], expected[i]
        );
    }
    Some((lab, printed))
}

#[tokio::test(flavor = "multi_thread")]
async fn s_client_full_lists_all_355_names_in_store_order() {
    let Some((lab, printed)) = s_client_lists_the_policy(Policy::Full, TlsVersion::Tls12).await
    else {
        return;
    };
    let report = lab.server.report();
    assert_eq!((report.kept, report.dropped), (355, 0));
    assert!(!report.truncated);
    // Past Schannel's 16 KB, within TLS 1.2's 65,535: three records.
    assert!(report.list_bytes > 2 * 16_384, "{report:?}");
    assert_eq!(report.records, 3, "{report:?}");
    assert_eq!(report.named, [("ca".to_owned(), Some(354))]);
    assert_eq!(
        printed.last().map(String::as_str),
        Some("C = US, O = umlab, OU = Lab PKI, CN = umlab Enterprise Root CA")
    );
}

/// TLS 1.3 on request: the list travels encrypted in the certificate_authorities
/// extension; s_client decrypts and prints it, so the same prefix must appear.
#[tokio::test(flavor = "multi_thread")]
async fn s_client_tls13_lists_the_kept_prefix() {
    let Some((lab, printed)) = s_client_lists_the_policy(Policy::Schannel, TlsVersion::Tls13).await
    else {
        return;
    };
    let report = lab.server.report();
    assert_eq!(report.shape.version, TlsVersion::Tls13);
    assert!(
        report.truncated && report.list_bytes <= 16_384,
        "{report:?}"
    );
    assert!(!printed.iter().any(|n| n.contains("umlab")), "{printed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s_client_schannel_lists_the_kept_prefix_without_the_ca() {
    let Some((lab, printed)) = s_client_lists_the_policy(Policy::Schannel, TlsVersion::Tls12).await
    else {
        return;
    };
    let report = lab.server.report();
    assert!(report.truncated, "{report:?}");
    assert!(report.kept > 100 && report.kept < 355, "{report:?}");
    assert!(report.list_bytes <= 16_384, "{report:?}");
    assert_eq!(report.named, [("ca".to_owned(), None)]);
    assert!(!printed.iter().any(|n| n.contains("umlab")), "{printed:?}");
    assert_eq!(lab.server.startup_log().len(), 1);
    assert!(lab.server.startup_log()[0].contains("Event ID:      36885"));
}

#[tokio::test(flavor = "multi_thread")]
async fn s_client_omit_is_told_no_names() {
    let mut lab = start(INCIDENT_ROOTS, policy(Policy::Omit, TlsVersion::Tls12)).await;
    let Some(out) = s_client(&lab).await else {
        return;
    };
    assert!(
        out.stdout.contains("No client certificate CA names sent"),
        "{}",
        out.dump()
    );
    assert!(acceptable_ca_names(&out.stdout).is_none());
    let report = lab.server.report().clone();
    assert_eq!((report.kept, report.list_bytes), (0, 0));
    // The lenient client sends its certificate anyway; the Hub verifies it
    // against the whole store.
    assert_handshake_event(&lab.next_event().await, &report);
}

/// A small RIFF/WAVE file: header + 400 bytes of 8-bit samples.
fn wav() -> Vec<u8> {
    let samples: Vec<u8> = (0..400u32).map(|i| (i * 37 % 251) as u8).collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    w.extend_from_slice(&samples);
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn swaks_delivers_an_attachment_into_the_maildir() {
    let mut lab = start(20, policy(Policy::Full, TlsVersion::Tls12)).await;
    if !require_tool("swaks") {
        return;
    }
    let audio = wav();
    let wav_path = lab.path("voice.wav");
    std::fs::File::create(&wav_path)
        .and_then(|mut f| f.write_all(&audio))
        .expect("wav file");
    let server = format!("127.0.0.1:{}", lab.addr().port());
    let mut args = os(&[
        "--server",
        &server,
        "--tls",
        "--to",
        "hub@lab.test",
        "--from",
        "um@lab.test",
        "--ehlo",
        "um.lab.test",
        "--timeout",
        "15",
        "--attach-type",
        "audio/wav",
    ]);
    args.push("--attach".into());
    let mut at = OsString::from("@");
    at.push(&wav_path);
    args.push(at);
    for (flag, file) in [("--tls-cert", "um.pem"), ("--tls-key", "um.key")] {
        args.push(flag.into());
        args.push(arg(&lab.pki_file(file)));
    }
    let out = run_tool("swaks", args, Vec::new(), TOOL_TIMEOUT).await;
    out.assert_success("swaks");

    let ev = lab.next_event().await;
    assert_handshake_event(&ev, lab.server.report());
    assert_eq!(ev.stored.len(), 1, "{ev:#?}");
    let files = lab.maildir_files("new");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(lab.maildir_files("tmp").is_empty());
    let stored = &ev.stored[0];
    assert_eq!(stored.path, files[0].display().to_string());
    assert_eq!(
        (stored.from.as_str(), &stored.to[..]),
        ("um@lab.test", &["hub@lab.test".to_owned()][..])
    );
    assert_eq!(stored.voicemail.audio_attachments, 1, "{stored:?}");
    let message = std::fs::read(&files[0]).expect("stored message");
    assert_eq!(stored.bytes, message.len());
    let text = String::from_utf8_lossy(&message);
    assert!(text.starts_with("Received: from um.lab.test ("), "{text}");
    assert!(
        text.contains("with ESMTPS (TLSv1_2, client certificate")
            && text.lines().take(3).any(|l| l.contains("um.lab.test)")),
        "{text}"
    );
    let unfolded: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    assert!(
        unfolded.contains(&base64(&audio)),
        "the attachment's base64 is not in the message:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gnutls_cli_completes_the_handshake() {
    let mut lab = start(20, policy(Policy::Schannel, TlsVersion::Tls12)).await;
    if !require_tool("gnutls-cli") {
        return;
    }
    let port = lab.addr().port().to_string();
    let mut args = os(&["--starttls-proto=smtp", "--port", &port, "127.0.0.1"]);
    for (flag, file) in [
        ("--x509cafile", "ca.pem"),
        ("--x509certfile", "um.pem"),
        ("--x509keyfile", "um.key"),
    ] {
        args.push(flag.into());
        args.push(arg(&lab.pki_file(file)));
    }
    let out = run_tool("gnutls-cli", args, b"QUIT\r\n".to_vec(), TOOL_TIMEOUT).await;
    assert!(!out.timed_out, "{}", out.dump());
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("Handshake was completed"), "{}", out.dump());
    let report = lab.server.report().clone();
    assert!(!report.truncated && report.named == [("ca".to_owned(), Some(20))]);
    let ev = lab.next_event().await;
    assert_handshake_event(&ev, &report);
    // The QUIT fed on stdin went over TLS.
    assert!(
        ev.smtp.iter().any(|x| x.command == "QUIT" && x.code == 221),
        "{ev:#?}"
    );
    out.assert_success("gnutls-cli");
}

/// One record of the server's first flight.
struct Record {
    content_type: u8,
    /// Offset of its payload in the concatenated handshake stream.
    at: usize,
    len: usize,
}

/// Reads records off `tcp` until the handshake stream holds a complete
/// ServerHelloDone. Returns the raw bytes, the records and the handshake stream.
async fn read_first_flight(tcp: &mut TcpStream) -> (Vec<u8>, Vec<Record>, Vec<u8>) {
    let mut raw = Vec::new();
    let mut records = Vec::new();
    let mut stream = Vec::new();
    let mut parsed = 0;
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        while let Ok(h) = RecordHeader::parse(raw.get(parsed..).unwrap_or_default()) {
            let Some(payload) =
                raw.get(parsed + RECORD_HEADER_LEN..parsed + RECORD_HEADER_LEN + h.len)
            else {
                break;
            };
            assert_eq!(h.content_type, CONTENT_HANDSHAKE, "first flight: {h:?}");
            records.push(Record {
                content_type: h.content_type,
                at: stream.len(),
                len: h.len,
            });
            stream.extend_from_slice(payload);
            parsed += RECORD_HEADER_LEN + h.len;
        }
        if messages(&stream)
            .iter()
            .any(|&(t, _, _)| t == HS_SERVER_HELLO_DONE)
        {
            assert_eq!(parsed, raw.len(), "bytes after ServerHelloDone");
            return (raw, records, stream);
        }
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("first flight within the deadline")
            .expect("read");
        assert!(n > 0, "server closed during the first flight");
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Complete handshake messages of a stream: (type, offset, length with header).
fn messages(stream: &[u8]) -> Vec<(u8, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(h) = HandshakeHeader::parse(stream.get(at..).unwrap_or_default()) {
        let len = HANDSHAKE_HEADER_LEN + h.len;
        if at + len > stream.len() {
            break;
        }
        out.push((h.msg_type, at, len));
        at += len;
    }
    out
}

/// Where the CertificateRequest sits in the records of a first flight.
struct Placement {
    /// Message length, header included.
    len: usize,
    /// Whether a record starts exactly where the message starts.
    starts_record: bool,
    /// Whether a record ends exactly where the message ends.
    ends_record: bool,
    /// Records that carry some of its bytes.
    records: usize,
    /// Its body parsed.
    body: CertificateRequest12,
}

fn placement(records: &[Record], stream: &[u8]) -> Placement {
    let (_, at, len) = messages(stream)
        .into_iter()
        .find(|&(t, _, _)| t == HS_CERTIFICATE_REQUEST)
        .expect("a CertificateRequest in the first flight");
    let body = CertificateRequest12::parse(&stream[at + HANDSHAKE_HEADER_LEN..at + len])
        .expect("a well-formed TLS 1.2 CertificateRequest");
    Placement {
        len,
        starts_record: records.iter().any(|r| r.at == at),
        ends_record: records.iter().any(|r| r.at + r.len == at + len),
        records: records
            .iter()
            .filter(|r| r.at < at + len && at < r.at + r.len)
            .count(),
        body,
    }
}

/// EHLO/STARTTLS by hand, a TLS 1.2 ClientHello from rustls, the server's
/// first flight read raw; then the handshake is finished so the event exists.
async fn first_flight_with(layout: Layout) -> (Lab, Vec<Record>, Placement, ConnectionEvent) {
    let mut lab = start(195, |s| {
        s.policy.policy = Policy::Full;
        s.max_fragment = 4096;
        s.layout = layout;
    })
    .await;
    let mut smtp = Smtp::greeted(lab.addr()).await;
    assert_eq!(smtp.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(
        smtp.cmd("STARTTLS").await.first(),
        "220 2.0.0 Ready to start TLS"
    );
    let local = smtp.local;
    let mut tcp = smtp.into_tcp();
    let mut conn = rustls::ClientConnection::new(common::client_config(), common::hub_name())
        .expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("ClientHello");
    }
    tcp.write_all(&hello).await.expect("send ClientHello");
    let (raw, records, stream) = read_first_flight(&mut tcp).await;
    assert!(records.iter().all(|r| r.content_type == CONTENT_HANDSHAKE));
    let place = placement(&records, &stream);
    common::finish_handshake(&mut conn, &mut tcp, &raw).await;
    let ev = lab.event_for(local).await;
    (lab, records, place, ev)
}

#[tokio::test(flavor = "multi_thread")]
async fn per_message_layout_starts_the_request_on_a_record_and_cuts_at_4091() {
    let (lab, records, place, ev) = first_flight_with(Layout::PerMessage).await;
    let report = lab.server.report().clone();
    assert!(
        (18_000..24_000).contains(&place.len),
        "want a ~20 KB CertificateRequest, got {}",
        place.len
    );
    assert_eq!(place.len, report.message_bytes);
    assert_eq!(place.body.ca_names.len(), report.kept);
    let subjects: Vec<&[u8]> = lab.store.roots().iter().map(Root::subject_der).collect();
    assert_eq!(place.body.ca_names, subjects, "names and order on the wire");
    assert!(
        place.starts_record,
        "the CertificateRequest must start a record"
    );
    assert!(
        place.ends_record,
        "the next message must start a new record"
    );
    assert_eq!(place.records, place.len.div_ceil(4091));
    assert_eq!(place.records, report.records);
    assert!(
        records.iter().all(|r| r.len <= 4091),
        "a record over 4091 bytes"
    );
    let sizes: Vec<usize> = records.iter().map(|r| r.len).collect();
    // Every message starts its own record: each full record is exactly 4091.
    let full = sizes.iter().filter(|&&l| l == 4091).count();
    assert!(full >= place.records - 1, "{sizes:?}");
    assert_handshake_event(&ev, &report);
}

#[tokio::test(flavor = "multi_thread")]
async fn coalesced_layout_does_not_start_the_request_on_a_record() {
    let (lab, records, place, ev) = first_flight_with(Layout::Coalesced).await;
    let report = lab.server.report().clone();
    assert_eq!(place.len, report.message_bytes);
    assert!(
        !place.starts_record,
        "rustls coalesces the flight: the CertificateRequest shares a record"
    );
    assert!(
        records.iter().all(|r| r.len <= 4091),
        "a record over 4091 bytes"
    );
    let cr = ev
        .certificate_request
        .as_ref()
        .expect("certificate_request");
    assert_eq!(cr.records, place.records, "event vs wire");
    assert_eq!(cr.bytes, place.len);
    assert_eq!(cr.ca_names, report.kept);
    assert_eq!(ev.handshake.as_ref().map(|h| h.outcome), Some("ok"));
}
