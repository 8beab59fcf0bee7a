//! lab-server's inspector over real HTTP: um-sim submits to a 355-root Hub
//! under the Schannel policy, and the JSON API shows what the page shows: the
//! connection with its CertificateRequest (names, running total, where the
//! cut fell, event 36885), the stored voicemail with its headers and a WAV
//! that plays, the raw message, deletion, and the live stream. The requests
//! are plain HTTP/1.1 over a TCP socket. The client's whole chain is judged
//! against the list each connection got, for one-tier and two-tier PKIs.

mod common;

use std::time::Duration;

use certgen::Profile;
use certgen::pki::{LabPki, Shape};
use common::{pki_of, start_server, start_server_for, store_for, store_with, submit_one};
use lab_server::policy::Policy;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response: status, headers (lower-case names) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request with `Connection: close`; the body is read to the end.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("a response in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_the_cut_the_handshake_and_the_voicemail() {
    let (store, ca) = store_with(354, Profile::Realistic);
    let mut lab = start_server(store, ca, |s| {
        s.policy.policy = Policy::Schannel;
        s.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await
    .expect("lab-server");
    let api = lab.server.http_addr().expect("the inspector serves");
    let report = lab.server.report().clone();

    // The page itself: markup from peers is put in as text only, and the
    // policy allows no inline script (only the inspector's own file).
    let page = http(api, "GET", "/").await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains(r#"<script src="/inspector.js""#));
    assert!(!html.contains("<script>"), "no inline script");
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let js = http(api, "GET", "/inspector.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let js = String::from_utf8_lossy(&js.body);
    assert!(js.contains("textContent"));
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "the page script uses {sink}");
    }
    assert_eq!(http(api, "GET", "/inspector.css").await.status, 200);

    // The store: every root with its fate.
    let policy = http(api, "GET", "/api/policy").await.json();
    let roots = policy["roots"].as_array().expect("roots");
    assert_eq!(roots.len(), 355);
    let sent = roots.iter().filter(|r| !r["sent_at"].is_null()).count();
    assert_eq!(sent, report.kept);
    assert_eq!(policy["startup_log"].as_array().map(Vec::len), Some(1));

    // The live stream, opened before the clients connect.
    let mut stream = TcpStream::connect(api).await.expect("stream");
    stream
        .write_all(format!("GET /api/stream HTTP/1.1\r\nHost: {api}\r\n\r\n").as_bytes())
        .await
        .expect("stream request");
    let mut stream = BufReader::new(stream);

    // The Exchange client fails (its CA is cut); a lenient one delivers.
    let failed = submit_one(&lab, "schannel-2008r2").await;
    assert!(!failed.delivered);
    let delivered = submit_one(&lab, "lenient").await;
    assert!(delivered.delivered, "{delivered:#?}");
    for _ in 0..2 {
        lab.next_event(common::EVENT_TIMEOUT)
            .await
            .expect("server event");
    }
    let mut live = Vec::new();
    while live.len() < 2 {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line))
            .await
            .expect("a live event in time")
            .expect("read");
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).expect("JSON");
            live.push(v["outcome"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(live, ["failed", "ok"]);

    let list = http(api, "GET", "/api/connections").await.json();
    let conns = list["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 2);
    let failed_id = conns
        .iter()
        .find(|c| c["outcome"] == "failed")
        .and_then(|c| c["id"].as_u64())
        .expect("the failed connection");
    let d = http(api, "GET", &format!("/api/connections/{failed_id}"))
        .await
        .json();
    let names = d["request"]["names"].as_array().expect("names");
    assert_eq!(names.len(), report.kept);
    assert_eq!(
        d["request"]["list_bytes"].as_u64(),
        Some(report.list_bytes as u64)
    );
    assert_eq!(
        names.last().and_then(|n| n["total"].as_u64()),
        Some(report.list_bytes as u64)
    );
    // The cut falls at the first root not sent, before the CA (the last).
    assert_eq!(
        d["request"]["first_dropped"]["index"].as_u64(),
        Some(report.kept as u64)
    );
    assert_eq!(
        d["request"]["dropped"].as_u64(),
        Some(report.dropped as u64)
    );
    assert!(d["events"][0].as_str().is_some_and(|e| e.contains("36885")));
    assert!(d["event"]["client_certificate"].is_null());
    assert_eq!(d["event"]["client_chain"], Value::Array(Vec::new()));
    // Schannel withheld its certificate (its CA was cut): an empty
    // Certificate, not a refused one.
    assert_eq!(d["event"]["client_certificate_message"], "empty");

    // The lenient client sent its certificate although its CA was cut: the
    // chain says its issuer was not in the list.
    let ok_id = conns
        .iter()
        .find(|c| c["outcome"] == "ok")
        .and_then(|c| c["id"].as_u64())
        .expect("the delivering connection");
    let ok = http(api, "GET", &format!("/api/connections/{ok_id}"))
        .await
        .json();
    assert_eq!(
        chain_of(&ok),
        expected_chain(common::pki(), &[false]),
        "{:#}",
        ok["event"]["client_chain"]
    );
    assert_eq!(
        ok["event"]["client_certificate"]["subject"],
        ok["event"]["client_chain"][0]["subject"]
    );
    assert_eq!(ok["event"]["client_certificate_message"], "sent");
    assert!(
        ok["event"]["client_chain_note"].is_null(),
        "the wire agrees"
    );
    assert_eq!(
        d["event"]["certificate_request"]["bytes"].as_u64(),
        Some(report.message_bytes as u64)
    );

    // The message: headers, the WAV, the raw file, deletion.
    let msgs = http(api, "GET", "/api/messages").await.json();
    let msgs = msgs.as_array().expect("messages");
    assert_eq!(msgs.len(), 1);
    let id = msgs[0]["id"].as_u64().expect("id");
    let m = http(api, "GET", &format!("/api/messages/{id}"))
        .await
        .json();
    assert_eq!(m["headers"]["Content-Class"], "voice-ca");
    assert!(
        m["headers"]["X-CallID"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    let wav = http(api, "GET", &format!("/api/messages/{id}/audio")).await;
    assert_eq!(wav.status, 200);
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav.body)).expect("a WAV");
    assert_eq!(reader.spec().sample_rate, 8_000);
    assert_eq!(reader.duration(), 8_000, "one second");
    let raw = http(api, "GET", &format!("/api/messages/{id}/raw")).await;
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert!(String::from_utf8_lossy(&raw.body).contains("X-CallID:"));
    let path = m["stored"]["path"].as_str().expect("path").to_owned();
    assert!(std::path::Path::new(&path).exists());
    assert_eq!(
        http(api, "DELETE", &format!("/api/messages/{id}"))
            .await
            .status,
        204
    );
    assert!(!std::path::Path::new(&path).exists());
    assert_eq!(
        http(api, "GET", "/api/messages").await.json(),
        Value::Array(Vec::new())
    );
    assert_eq!(
        http(api, "GET", &format!("/api/messages/{id}"))
            .await
            .status,
        404
    );
    assert_eq!(
        http(api, "GET", "/api/connections/999999").await.status,
        404
    );
}

/// A chain as (subject, issuer, issuer listed, itself listed).
type Chain = Vec<(String, String, bool, bool)>;

/// The chain of a `/api/connections/ID` answer.
fn chain_of(detail: &Value) -> Chain {
    detail["event"]["client_chain"]
        .as_array()
        .expect("client_chain")
        .iter()
        .map(|c| {
            assert!(c["error"].is_null(), "{c}");
            (
                c["subject"].as_str().expect("subject").to_owned(),
                c["issuer"].as_str().expect("issuer").to_owned(),
                c["issuer_listed"].as_bool().expect("issuer_listed"),
                c["listed"].as_bool().expect("listed"),
            )
        })
        .collect()
}

/// The UM's chain in `lab`, read from its certificates, with whether each
/// issuer was listed as given; no certificate of a UM chain is a root the
/// Hub lists.
fn expected_chain(lab: &LabPki, issuer_listed: &[bool]) -> Chain {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let chain = lab.um_chain();
    assert_eq!(chain.len(), issuer_listed.len());
    chain
        .into_iter()
        .zip(issuer_listed)
        .map(|(der, &listed)| {
            let (_, c) = X509Certificate::from_der(der).expect("a certificate");
            (
                c.subject().to_string(),
                c.issuer().to_string(),
                listed,
                false,
            )
        })
        .collect()
}

/// um-sim submits with a PKI's whole chain and the API shows each
/// certificate against the list that connection got. Ten roots then the
/// anchor, full list: one-tier, the leaf's issuer (the enterprise CA) is
/// listed; two-tier, the leaf's issuer (the issuing CA, not in the store) is
/// not, and the issuing CA's issuer (the root) is: the AD CS layout. In TLS
/// 1.3 (the request encrypted) the list is the one the server planned: with
/// 354 roots under Schannel's budget the CA is cut, so a lenient client's
/// leaf has its issuer unlisted although the CA is in the store.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_chain_is_judged_against_the_list_sent() {
    use lab_server::policy::TlsVersion;
    let cases = [
        (
            Shape::OneTier,
            TlsVersion::Tls12,
            10,
            Policy::Full,
            "schannel-2008r2",
            &[true][..],
        ),
        (
            Shape::TwoTier,
            TlsVersion::Tls12,
            10,
            Policy::Full,
            "schannel-2008r2",
            &[false, true][..],
        ),
        (
            Shape::TwoTier,
            TlsVersion::Tls13,
            10,
            Policy::Full,
            "lenient",
            &[false, true][..],
        ),
        (
            Shape::OneTier,
            TlsVersion::Tls13,
            354,
            Policy::Schannel,
            "lenient",
            &[false][..],
        ),
        // A TLS 1.3 server takes a client without TLS 1.3 (Schannel on
        // 2008 R2) over TLS 1.2: the chain is judged against the list read
        // off the wire.
        (
            Shape::TwoTier,
            TlsVersion::Tls13,
            10,
            Policy::Full,
            "schannel-2008r2",
            &[false, true][..],
        ),
    ];
    for (shape, version, roots, policy, profile, listed) in cases {
        let what = format!("{shape:?} {version:?} {roots} roots {policy:?} {profile}");
        let lab_pki = pki_of(shape);
        let (store, ca) = store_for(lab_pki, roots, Profile::Realistic);
        let mut lab = start_server_for(lab_pki, store, ca, |s| {
            s.policy.policy = policy;
            s.tls_version = version;
            s.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        })
        .await
        .expect("lab-server");
        let api = lab.server.http_addr().expect("the inspector serves");
        let attempt = submit_one(&lab, profile).await;
        assert!(attempt.delivered, "{what}: {attempt:#?}");
        let ev = lab
            .next_event(common::EVENT_TIMEOUT)
            .await
            .expect("server event");
        let tls12_only = profile == "schannel-2008r2";
        assert_eq!(
            ev.tls_version.as_deref(),
            Some(match version {
                TlsVersion::Tls13 if !tls12_only => "TLSv1_3",
                _ => "TLSv1_2",
            }),
            "{what}"
        );
        assert_eq!(
            ev.certificate_request.as_ref().map(|c| c.source),
            Some(if ev.tls_version.as_deref() == Some("TLSv1_2") {
                "wire"
            } else {
                "encoding"
            }),
            "{what}"
        );
        // The inspector collects the event on its own task: wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let d = loop {
            let r = http(api, "GET", &format!("/api/connections/{}", ev.id)).await;
            if r.status == 200 {
                break r.json();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: no connection"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(chain_of(&d), expected_chain(lab_pki, listed), "{what}");
        assert_eq!(
            d["event"]["client_chain"],
            serde_json::json!(ev.client_chain)
        );
    }
}

/// A refused certificate's chain is in the API too: Schannel 2012 with a
/// Trusted Root store past 16 KB (KB 2880390) fails every client
/// authentication. The two-tier anchor is enumerated first, so it is sent;
/// a lenient um-sim presents leaf and issuing CA, and the failed
/// connection's chain, read off the wire (TLS 1.2), says the issuing CA's
/// issuer was listed and the leaf's was not.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_chain_is_shown_for_the_failed_handshake() {
    use lab_server::persona::PersonaName;
    let lab_pki = pki_of(Shape::TwoTier);
    let (store, at) = store_for(lab_pki, 354, Profile::Realistic);
    let mut roots = store.into_roots();
    let anchor = roots.remove(at);
    roots.insert(0, anchor);
    let store = certgen::Store::from_roots(roots);
    let mut lab = start_server_for(lab_pki, store, 0, |s| {
        s.use_persona(PersonaName::Schannel2012);
        s.advertise(true);
        s.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await
    .expect("lab-server");
    let api = lab.server.http_addr().expect("the inspector serves");
    let attempt = submit_one(&lab, "lenient").await;
    assert!(!attempt.delivered, "KB 2880390 refuses: {attempt:#?}");
    let ev = lab
        .next_event(common::EVENT_TIMEOUT)
        .await
        .expect("server event");
    assert_eq!(ev.handshake.as_ref().map(|h| h.outcome), Some("failed"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let d = loop {
        let r = http(api, "GET", &format!("/api/connections/{}", ev.id)).await;
        if r.status == 200 {
            break r.json();
        }
        assert!(std::time::Instant::now() < deadline, "no connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(d["event"]["handshake"]["outcome"], "failed");
    assert_eq!(
        chain_of(&d),
        expected_chain(lab_pki, &[false, true]),
        "{:#}",
        d["event"]
    );
    assert_eq!(d["event"]["client_certificate_message"], "sent");
    assert!(
        d["event"]["client_chain_note"]
            .as_str()
            .is_some_and(|n| n.contains("read off the wire")),
        "{:#}",
        d["event"]
    );
    // The connections list names the refused client.
    let list = http(api, "GET", "/api/connections").await.json();
    assert_eq!(
        list["connections"][0]["client"],
        d["event"]["client_chain"][0]["subject"]
    );
}

#[tokio::test]
async fn the_inspector_is_off_unless_asked() {
    let (store, ca) = store_with(10, Profile::Realistic);
    let lab = start_server(store, ca, |_| {}).await.expect("lab-server");
    assert_eq!(lab.server.http_addr(), None);
}
