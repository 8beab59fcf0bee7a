//! Fault injection on the wire: each TLS fault seen by a raw client reading
//! the server's first flight record by record, each SMTP fault in a real
//! SMTP dialogue over TLS, and `/api/faults` changing what the next
//! connection gets.

mod common;

use std::time::{Duration, Instant};

use certgen::Root;
use certgen::wire::{
    CONTENT_HANDSHAKE, CertificateRequest12, HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST,
    HS_SERVER_HELLO_DONE, HandshakeHeader, RECORD_HEADER_LEN, RecordHeader,
};
use common::{IO_TIMEOUT, Lab, Smtp, start};
use lab_server::faults::{self, Fault};
use lab_server::server::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_faults(specs: &'static [&'static str]) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.faults = faults::parse_all(specs).expect("fault specs");
        s.fault_seed = Some(1);
    }
}

/// One record of the server's first flight and when its last byte arrived.
struct Record {
    content_type: u8,
    /// Offset of its payload in the handshake stream.
    at: usize,
    len: usize,
    arrived: Instant,
}

/// The first flight as read.
struct Flight {
    raw: Vec<u8>,
    records: Vec<Record>,
    stream: Vec<u8>,
    /// The server closed the connection.
    eof: bool,
    /// When the ClientHello was sent.
    hello_sent: Instant,
}

impl Flight {
    /// Complete handshake messages: (type, offset, length with header).
    fn messages(&self) -> Vec<(u8, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(h) = HandshakeHeader::parse(self.stream.get(at..).unwrap_or_default()) {
            let len = HANDSHAKE_HEADER_LEN + h.len;
            if at + len > self.stream.len() {
                break;
            }
            out.push((h.msg_type, at, len));
            at += len;
        }
        out
    }

    fn message(&self, kind: u8) -> Option<(usize, usize)> {
        self.messages()
            .into_iter()
            .find(|&(t, _, _)| t == kind)
            .map(|(_, at, len)| (at, len))
    }

    /// The records carrying bytes of the message at `at..at + len`.
    fn records_of(&self, (at, len): (usize, usize)) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| r.at < at + len && at < r.at + r.len)
            .collect()
    }

    fn request(&self) -> CertificateRequest12 {
        let (at, len) = self
            .message(HS_CERTIFICATE_REQUEST)
            .expect("a CertificateRequest in the flight");
        CertificateRequest12::parse(&self.stream[at + HANDSHAKE_HEADER_LEN..at + len])
            .expect("a TLS 1.2 CertificateRequest that parses")
    }
}

/// EHLO, STARTTLS, a rustls ClientHello; then the first flight read raw
/// until its ServerHelloDone or the server's close.
async fn first_flight(lab: &Lab) -> (TcpStream, rustls::ClientConnection, Flight, String) {
    let mut smtp = Smtp::greeted(lab.addr()).await;
    assert_eq!(smtp.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(smtp.cmd("STARTTLS").await.code, 220);
    let local = smtp.local.to_string();
    let mut tcp = smtp.into_tcp();
    let mut conn = rustls::ClientConnection::new(common::client_config(), common::hub_name())
        .expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("ClientHello");
    }
    tcp.write_all(&hello).await.expect("send ClientHello");
    let mut flight = Flight {
        raw: Vec::new(),
        records: Vec::new(),
        stream: Vec::new(),
        eof: false,
        hello_sent: Instant::now(),
    };
    let mut parsed = 0;
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        while let Ok(h) = RecordHeader::parse(flight.raw.get(parsed..).unwrap_or_default()) {
            let start = parsed + RECORD_HEADER_LEN;
            let Some(payload) = flight.raw.get(start..start + h.len) else {
                break;
            };
            flight.records.push(Record {
                content_type: h.content_type,
                at: flight.stream.len(),
                len: h.len,
                arrived: Instant::now(),
            });
            flight.stream.extend_from_slice(payload);
            parsed = start + h.len;
        }
        if flight.message(HS_SERVER_HELLO_DONE).is_some() {
            return (tcp, conn, flight, local);
        }
        let mut buf = [0u8; 16 * 1024];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("the first flight (or the close) within the deadline")
            .unwrap_or(0);
        if n == 0 {
            flight.eof = true;
            return (tcp, conn, flight, local);
        }
        flight.raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fragment_request_sends_the_request_in_records_of_n_bytes_that_reassemble() {
    let mut lab = start(20, with_faults(&["tls:fragment-request=100"])).await;
    let (mut tcp, mut conn, flight, local) = first_flight(&lab).await;
    assert!(!flight.eof);
    let cr = flight.message(HS_CERTIFICATE_REQUEST).expect("request");
    let records = flight.records_of(cr);
    assert!(cr.1 > 1_000, "a request of {} bytes", cr.1);
    assert_eq!(records.len(), cr.1.div_ceil(100), "records of the request");
    assert!(
        records.iter().all(|r| r.len <= 100),
        "a record over 100 bytes"
    );
    assert!(
        records.iter().all(|r| r.content_type == CONTENT_HANDSHAKE),
        "valid framing"
    );
    // The request starts and ends on record edges (one message per record).
    assert_eq!(records.first().map(|r| r.at), Some(cr.0));
    assert_eq!(records.last().map(|r| r.at + r.len), Some(cr.0 + cr.1));
    // Every other message is whole in its own record.
    let shd = flight.message(HS_SERVER_HELLO_DONE).expect("done");
    assert_eq!(flight.records_of(shd).len(), 1);
    // rustls reassembles: the handshake completes.
    common::finish_handshake(&mut conn, &mut tcp, &flight.raw).await;
    let ev = lab.event_for(local.parse().unwrap()).await;
    assert_eq!(
        ev.handshake.as_ref().map(|h| h.outcome),
        Some("ok"),
        "{ev:#?}"
    );
    assert_eq!(ev.faults, ["tls:fragment-request=100 at handshake 1"]);
    let info = ev.certificate_request.expect("request info");
    assert_eq!(info.records, records.len());
    let view = lab.server.faults().lock().view();
    assert_eq!(view.faults[0].fired, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn close_after_request_stops_the_flight_and_closes() {
    let mut lab = start(20, with_faults(&["tls:close-after-request@nth=1"])).await;
    let (_tcp, _conn, flight, local) = first_flight(&lab).await;
    assert!(flight.eof, "the server must close the connection");
    let kinds: Vec<u8> = flight.messages().iter().map(|m| m.0).collect();
    assert_eq!(
        kinds.last(),
        Some(&HS_CERTIFICATE_REQUEST),
        "the flight ends with the request: {kinds:?}"
    );
    assert!(!kinds.contains(&HS_SERVER_HELLO_DONE), "{kinds:?}");
    let cr = flight.message(HS_CERTIFICATE_REQUEST).unwrap();
    assert_eq!(cr.0 + cr.1, flight.stream.len(), "bytes after the request");
    let ev = lab.event_for(local.parse().unwrap()).await;
    let hs = ev.handshake.as_ref().expect("handshake");
    assert_eq!(hs.outcome, "failed");
    assert!(
        hs.error
            .as_deref()
            .unwrap_or_default()
            .contains("close-after-request"),
        "{hs:?}"
    );
    assert_eq!(ev.faults, ["tls:close-after-request@nth=1 at handshake 1"]);
    // @nth=1: the second handshake gets the whole flight.
    let (mut tcp, mut conn, flight, local) = first_flight(&lab).await;
    assert!(flight.message(HS_SERVER_HELLO_DONE).is_some());
    common::finish_handshake(&mut conn, &mut tcp, &flight.raw).await;
    let ev = lab.event_for(local.parse().unwrap()).await;
    assert!(ev.faults.is_empty(), "{:?}", ev.faults);
    assert_eq!(ev.handshake.map(|h| h.outcome), Some("ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_before_done_holds_the_server_hello_done() {
    const MS: u64 = 700;
    let mut lab = start(5, with_faults(&["tls:delay-before-done=700"])).await;
    let (mut tcp, mut conn, flight, local) = first_flight(&lab).await;
    let cr = flight.message(HS_CERTIFICATE_REQUEST).expect("request");
    let shd = flight.message(HS_SERVER_HELLO_DONE).expect("done");
    let cr_at = flight.records_of(cr).last().unwrap().arrived;
    let shd_at = flight.records_of(shd)[0].arrived;
    let since_hello = shd_at - flight.hello_sent;
    eprintln!(
        "ServerHelloDone {since_hello:?} after the ClientHello, {:?} after the CertificateRequest",
        shd_at - cr_at
    );
    assert!(
        since_hello >= Duration::from_millis(MS),
        "ServerHelloDone after {since_hello:?}"
    );
    assert!(cr_at < shd_at, "the request came first, on its own");
    common::finish_handshake(&mut conn, &mut tcp, &flight.raw).await;
    let ev = lab.event_for(local.parse().unwrap()).await;
    assert_eq!(ev.handshake.map(|h| h.outcome), Some("ok"));
    assert_eq!(ev.faults, ["tls:delay-before-done=700 at handshake 1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_list_at_advertises_the_list_cut_at_n_bytes() {
    let subjects = |lab: &Lab| -> Vec<Vec<u8>> {
        lab.store
            .roots()
            .iter()
            .map(|r: &Root| r.subject_der().to_vec())
            .collect()
    };
    // Mid-name: the third name keeps 10 bytes.
    let probe = start(20, |_| {}).await;
    let names = subjects(&probe);
    drop(probe);
    let mid = 2 + names[0].len() + 2 + names[1].len() + 2 + 10;
    for (at, want_last) in [(mid, Some(10)), (mid - 11, None), (0, None)] {
        let spec: &'static str = Box::leak(format!("tls:cut-list-at={at}").into_boxed_str());
        let specs: &'static [&'static str] = Box::leak(vec![spec].into_boxed_slice());
        let mut lab = start(20, with_faults(specs)).await;
        let (mut tcp, mut conn, flight, local) = first_flight(&lab).await;
        let sent = flight.request().ca_names;
        let want = faults::cut_ca_list(&subjects(&lab), at);
        assert_eq!(sent, want, "cut at {at}");
        let encoded: usize = sent.iter().map(|n| 2 + n.len()).sum();
        assert!(encoded <= at, "{encoded} > {at}");
        match want_last {
            Some(len) => {
                assert_eq!(sent.len(), 3);
                assert_eq!(sent[2].len(), len);
                assert_eq!(sent[2][..], names[2][..len], "the head of the third name");
                assert_eq!(encoded, at);
            }
            // A cut inside (or right after) the third name's prefix drops it.
            None => assert!(sent.len() <= 2, "{}", sent.len()),
        }
        // The client's certificate still verifies against the whole store.
        common::finish_handshake(&mut conn, &mut tcp, &flight.raw).await;
        let ev = lab.event_for(local.parse().unwrap()).await;
        assert_eq!(ev.handshake.map(|h| h.outcome), Some("ok"), "cut at {at}");
        assert_eq!(ev.faults, [format!("{spec} at handshake 1")]);
        assert_eq!(ev.certificate_request.map(|c| c.ca_names), Some(sent.len()));
    }
    // A TLS 1.3 server also takes a TLS 1.2 client, with the cut list too.
    let mut lab = start(20, |s| {
        s.tls_version = lab_server::policy::TlsVersion::Tls13;
        s.faults = faults::parse_all(&[format!("tls:cut-list-at={mid}")]).unwrap();
    })
    .await;
    let (mut tcp, mut conn, flight, local) = first_flight(&lab).await;
    assert_eq!(
        flight.request().ca_names,
        faults::cut_ca_list(&subjects(&lab), mid)
    );
    common::finish_handshake(&mut conn, &mut tcp, &flight.raw).await;
    let ev = lab.event_for(local.parse().unwrap()).await;
    assert_eq!(ev.tls_version.as_deref(), Some("TLSv1_2"));
    assert_eq!(ev.handshake.map(|h| h.outcome), Some("ok"));
    let info = ev.certificate_request.expect("the request");
    assert_eq!((info.ca_names, info.source), (3, "wire"));
    assert!(
        info.difference
            .starts_with("TLS 1.2 on a server planned for TLS 1.3"),
        "{}",
        info.difference
    );
    assert_eq!(info.real_overhead, None);
}

/// EHLO, STARTTLS, TLS, EHLO: a session ready for MAIL.
async fn tls_session(lab: &Lab) -> Smtp<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut smtp = Smtp::greeted(lab.addr()).await;
    assert_eq!(smtp.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(smtp.cmd("STARTTLS").await.code, 220);
    let mut tls = smtp.tls().await.expect("TLS");
    assert_eq!(tls.cmd("EHLO um.lab.test").await.code, 250);
    tls
}

const MESSAGE: &[u8] = b"Subject: fault\r\n\r\nhello\r\n.\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn smtp_faults_answer_and_leave_the_session_as_rfc5321_says() {
    let mut lab = start(
        3,
        with_faults(&[
            "smtp:mail:451@nth=1",
            "smtp:rcpt:550@nth=2",
            "smtp:data:554@nth=3",
            "smtp:rcpt:452@nth=4",
            "smtp:data:451@nth=5",
        ]),
    )
    .await;
    let mut s = tls_session(&lab).await;
    // Message 1: MAIL refused, so no transaction: RCPT is out of sequence.
    let r = s.cmd("MAIL FROM:<um@um.lab.test>").await;
    assert_eq!(r.code, 451);
    assert!(r.first().starts_with("451 4.3.0 "), "{}", r.first());
    assert!(r.first().contains("smtp:mail:451@nth=1"), "{}", r.first());
    assert_eq!(s.cmd("RCPT TO:<a@lab.test>").await.code, 503);
    // Message 2: the recipient refused; with none accepted DATA gets 554.
    assert_eq!(s.cmd("MAIL FROM:<um@um.lab.test>").await.code, 250);
    let r = s.cmd("RCPT TO:<a@lab.test>").await;
    assert!(r.first().starts_with("550 5.7.1 "), "{}", r.first());
    assert_eq!(s.cmd("DATA").await.first(), "554 5.5.1 No valid recipients");
    assert_eq!(s.cmd("RSET").await.code, 250);
    // Message 3: refused at the end of DATA, nothing stored.
    assert_eq!(s.cmd("MAIL FROM:<um@um.lab.test>").await.code, 250);
    assert_eq!(s.cmd("RCPT TO:<a@lab.test>").await.code, 250);
    assert_eq!(s.cmd("DATA").await.code, 354);
    s.send(MESSAGE).await;
    let r = s.reply().await.expect("reply to the message");
    assert!(r.first().starts_with("554 5.6.0 "), "{}", r.first());
    // Message 4: 452 at RCPT, the transaction open: RSET and go on.
    assert_eq!(s.cmd("MAIL FROM:<um@um.lab.test>").await.code, 250);
    assert!(
        s.cmd("RCPT TO:<a@lab.test>")
            .await
            .first()
            .starts_with("452 4.3.1 Insufficient system storage")
    );
    assert_eq!(s.cmd("RSET").await.code, 250);
    // Message 5: 451 at the end of DATA.
    assert_eq!(s.cmd("MAIL FROM:<um@um.lab.test>").await.code, 250);
    assert_eq!(s.cmd("RCPT TO:<a@lab.test>").await.code, 250);
    assert_eq!(s.cmd("DATA").await.code, 354);
    s.send(MESSAGE).await;
    assert_eq!(s.reply().await.expect("reply").code, 451);
    assert!(lab.maildir_files("new").is_empty(), "nothing stored yet");
    // Message 6: no fault; stored.
    assert_eq!(s.cmd("MAIL FROM:<um@um.lab.test>").await.code, 250);
    assert_eq!(s.cmd("RCPT TO:<a@lab.test>").await.code, 250);
    assert_eq!(s.cmd("DATA").await.code, 354);
    s.send(MESSAGE).await;
    assert_eq!(s.reply().await.expect("reply").code, 250);
    assert_eq!(s.cmd("QUIT").await.code, 221);
    let ev = lab.next_event().await;
    assert_eq!(
        ev.faults,
        [
            "smtp:mail:451@nth=1 at MAIL, message 1",
            "smtp:rcpt:550@nth=2 at RCPT, message 2",
            "smtp:data:554@nth=3 at the end of DATA, message 3",
            "smtp:rcpt:452@nth=4 at RCPT, message 4",
            "smtp:data:451@nth=5 at the end of DATA, message 5",
        ]
    );
    assert_eq!(ev.stored.len(), 1);
    assert_eq!(lab.maildir_files("new").len(), 1);
    let view = lab.server.faults().lock().view();
    assert_eq!(view.messages, 6);
    assert!(view.faults.iter().all(|f| f.fired == 1), "{view:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_421_closes_the_connection() {
    let mut lab = start(3, with_faults(&["smtp:rcpt:421"])).await;
    let mut s = tls_session(&lab).await;
    assert_eq!(s.cmd("MAIL FROM:<um@um.lab.test>").await.code, 250);
    let r = s.cmd("RCPT TO:<a@lab.test>").await;
    assert!(r.first().starts_with("421 4.3.2 "), "{}", r.first());
    let rest = s.until_closed(IO_TIMEOUT).await;
    assert!(rest.is_empty(), "{rest:?}");
    let ev = lab.next_event().await;
    assert_eq!(ev.end, "closed after 421");
    assert_eq!(ev.faults, ["smtp:rcpt:421 at RCPT, message 1"]);
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .expect("a response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The reply a fresh session gets to MAIL.
async fn mail_reply(lab: &Lab) -> u16 {
    let mut s = tls_session(lab).await;
    let code = s.cmd("MAIL FROM:<um@um.lab.test>").await.code;
    let _ = s.cmd("QUIT").await;
    code
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_replaces_and_clears_the_set_for_the_next_connection() {
    let lab = start(3, |s| {
        s.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        s.fault_seed = Some(5);
    })
    .await;
    let api = lab.server.http_addr().expect("inspector");
    let (status, body) = http(api, "GET", "/api/faults", "").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["faults"], serde_json::json!([]));
    assert_eq!(v["seed"], 5);
    assert_eq!(mail_reply(&lab).await, 250);

    let (status, body) = http(api, "PUT", "/api/faults", r#"["smtp:mail:451"]"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mail_reply(&lab).await, 451);
    let (_, body) = http(api, "GET", "/api/faults", "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["faults"],
        serde_json::json!([{"spec": "smtp:mail:451", "fired": 1}])
    );
    assert_eq!(v["messages"], 2);

    // A bad spec: 400 with the parse error, the set unchanged.
    let (status, body) = http(api, "PUT", "/api/faults", r#"["smtp:mail:500"]"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("421, 451, 452, 550, 554"), "{body}");
    let (status, body) = http(api, "PUT", "/api/faults", r#"{"not": "a list"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(mail_reply(&lab).await, 451);

    let (status, _) = http(api, "DELETE", "/api/faults", "").await;
    assert_eq!(status, 200);
    assert_eq!(mail_reply(&lab).await, 250);
    let (_, body) = http(api, "GET", "/api/faults", "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["faults"], serde_json::json!([]));
    assert_eq!(v["messages"], 4, "the run's count goes on");
}

#[tokio::test(flavor = "multi_thread")]
async fn framing_faults_are_refused_in_tls13_at_start() {
    let (store, ca) = common::store(3);
    let dir = tempfile::tempdir().unwrap();
    let lab = common::pki();
    let chain = vec![rustls::pki_types::CertificateDer::from(
        lab.hub.cert_der.clone(),
    )];
    let key =
        rustls::pki_types::PrivateKeyDer::Pkcs8(lab.hub.key.pkcs8_der().unwrap().to_vec().into());
    let mut s = Settings::new(store, chain, key, dir.path().join("maildir"));
    s.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    s.named = vec![("ca".into(), ca)];
    s.tls_version = lab_server::policy::TlsVersion::Tls13;
    s.faults = vec!["tls:fragment-request=512".parse::<Fault>().unwrap()];
    let err = lab_server::server::Server::start(s)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("TLS 1.3"), "{err}");
}

/// A client certificate resolver that records the names the server listed
/// (in TLS 1.3 the request is encrypted: this is where a client sees them).
#[derive(Debug)]
struct Recorder {
    seen: std::sync::Mutex<Option<Vec<Vec<u8>>>>,
    key: std::sync::Arc<rustls::sign::CertifiedKey>,
}

impl rustls::client::ResolvesClientCert for Recorder {
    fn resolve(
        &self,
        hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        *self.seen.lock().unwrap() = Some(hints.iter().map(|h| h.to_vec()).collect());
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_list_at_reaches_a_tls13_client() {
    let mut lab = start(20, |s| {
        s.tls_version = lab_server::policy::TlsVersion::Tls13;
        s.faults = faults::parse_all(&["tls:cut-list-at=150"]).unwrap();
    })
    .await;
    let pki = common::pki();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pki.ca.cert_der.clone(),
        ))
        .unwrap();
    let provider = lab_server::tls::provider();
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            pki.um.key.pkcs8_der().unwrap().to_vec().into(),
        ))
        .unwrap();
    let recorder = std::sync::Arc::new(Recorder {
        seen: std::sync::Mutex::new(None),
        key: std::sync::Arc::new(rustls::sign::CertifiedKey::new(
            vec![rustls::pki_types::CertificateDer::from(
                pki.um.cert_der.clone(),
            )],
            key,
        )),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(recorder.clone());
    let mut smtp = Smtp::greeted(lab.addr()).await;
    assert_eq!(smtp.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(smtp.cmd("STARTTLS").await.code, 220);
    let local = smtp.local;
    let tcp = smtp.into_tcp();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(common::hub_name(), tcp)
        .await
        .expect("TLS 1.3 handshake");
    let mut s = Smtp::wrap(tls, local);
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("QUIT").await.code, 221);
    let seen = recorder.seen.lock().unwrap().clone().expect("a request");
    let subjects: Vec<Vec<u8>> = lab
        .store
        .roots()
        .iter()
        .map(|r| r.subject_der().to_vec())
        .collect();
    let want = faults::cut_ca_list(&subjects, 150);
    assert_eq!(seen, want);
    assert!(!want.is_empty() && want.len() < subjects.len());
    let ev = lab.event_for(local).await;
    assert_eq!(ev.faults, ["tls:cut-list-at=150 at handshake 1"]);
    // The inspector decodes the cut list, and the chain is judged against
    // it, not against the planned list.
    assert_eq!(ev.cut_list.as_deref(), Some(&want));
    let ca = pki.ca.root().unwrap().subject_der().to_vec();
    assert!(subjects.contains(&ca), "the planned list holds the UM's CA");
    let issuer_listed = want.contains(&ca);
    assert!(!issuer_listed, "150 bytes hold a name or two, not the CA");
    assert_eq!(
        ev.client_chain.first().map(|c| c.issuer_listed),
        Some(false)
    );
    let info = ev.certificate_request.expect("request info");
    assert_eq!(info.source, "encoding");
    assert_eq!(info.ca_names, want.len());
    // The figures are the cut list's: shorter than the planned request by
    // exactly the names cut away.
    let planned = lab.server.report();
    let cut_bytes: usize = want.iter().map(|n| 2 + n.len()).sum();
    assert_eq!(
        planned.message_bytes - info.bytes,
        planned.list_bytes - cut_bytes
    );
    assert_eq!(info.records, 1);
}
