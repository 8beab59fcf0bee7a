//! Personas against the real servers they model, run for real over TCP:
//! the `openssl` persona against `openssl s_server` on the same store (the
//! CertificateRequest's names, order, records and body; the alert without a
//! client certificate; the internal_error past 65,535 bytes), and the
//! `postfix` persona against a private Postfix instance (the replies after
//! TLS without a certificate, with a foreign one and with a good one).
//!
//! Tools missing: skipped with a note outside CI, a failure when CI=true.

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certgen::{Profile, Root};
use common::postfix::{self, free_port};
use common::{Lab, Smtp, TOOL_TIMEOUT, ToolOutput, arg, require_tool, run_tool, start, start_with};
use lab_server::persona::{OPENSSL_CERT_TYPES, OPENSSL_SCHEMES_TLS12, PersonaName};
use lab_server::policy::TlsVersion;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A background process killed when dropped.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16, what: &str) {
    postfix::wait_listening(port, what, TOOL_TIMEOUT);
}

/// `openssl s_server -tls1_2 -Verify 1 -CAfile store` on a free port with the
/// Hub's certificate; stdin stays open so it keeps serving.
fn s_server(lab: &Lab, store_pem: &Path) -> (Bg, u16) {
    let port = free_port();
    let accept = format!("127.0.0.1:{port}");
    let child = Command::new("openssl")
        .args([
            "s_server", "-accept", &accept, "-tls1_2", "-Verify", "1", "-CAfile",
        ])
        .arg(store_pem)
        .arg("-cert")
        .arg(lab.pki_file("hub.pem"))
        .arg("-key")
        .arg(lab.pki_file("hub.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let bg = Bg(child);
    wait_listening(port, "s_server");
    (bg, port)
}

/// `openssl s_client -msg -tls1_2` against `port` (STARTTLS when `smtp`),
/// with the UM certificate when `with_cert`.
async fn s_client_msg(lab: &Lab, port: u16, smtp: bool, with_cert: bool) -> ToolOutput {
    let connect = format!("127.0.0.1:{port}");
    let mut args = os(&["s_client", "-connect", &connect, "-tls1_2", "-msg"]);
    if smtp {
        args.extend(os(&["-starttls", "smtp"]));
    }
    args.push("-CAfile".into());
    args.push(arg(&lab.pki_file("ca.pem")));
    if with_cert {
        for (flag, file) in [("-cert", "um.pem"), ("-key", "um.key")] {
            args.push(flag.into());
            args.push(arg(&lab.pki_file(file)));
        }
    }
    run_tool("openssl", args, b"QUIT\n".to_vec(), TOOL_TIMEOUT).await
}

/// The server's side of an s_client -msg trace: each `<<<` line without its
/// lengths (record headers, message types, alerts), in order.
fn server_trace(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("<<<"))
        .map(|l| match l.split_once(" [length ") {
            Some((head, tail)) => format!("{head}{}", tail.split_once(']').map_or("", |t| t.1)),
            None => l.to_owned(),
        })
        .collect()
}

/// The bytes of the message `<<< ... <kind>` in an s_client -msg trace.
fn message_bytes(out: &str, kind: &str) -> Option<Vec<u8>> {
    let mut lines = out.lines();
    lines.find(|l| l.starts_with("<<<") && l.ends_with(kind))?;
    let mut bytes = Vec::new();
    for l in lines {
        if l.starts_with("<<<") || l.starts_with(">>>") || !l.starts_with("    ") {
            break;
        }
        for h in l.split_whitespace() {
            bytes.push(u8::from_str_radix(h, 16).ok()?);
        }
    }
    Some(bytes)
}

/// Writes the store as a PEM bundle, in its order.
fn store_pem(lab: &Lab) -> PathBuf {
    let path = lab.path("store.pem");
    let pem: String = lab.store.roots().iter().map(Root::to_pem).collect();
    std::fs::write(&path, pem).expect("store bundle");
    path
}

/// The lab's request body expected from OpenSSL's: the same names, the
/// certificate types rustls writes (rsa_sign, ecdsa_sign: dss_sign, 2, is the
/// byte rustls cannot write) and OpenSSL's schemes in its order, less those
/// rustls 0.23 cannot write in TLS 1.2.
fn lab_body_from_openssl(real: &[u8], lab_schemes: &[u16]) -> Vec<u8> {
    let types = usize::from(real[0]);
    assert_eq!(&real[1..1 + types], OPENSSL_CERT_TYPES, "OpenSSL's types");
    let at = 1 + types;
    let len = usize::from(u16::from_be_bytes([real[at], real[at + 1]]));
    let real_schemes: Vec<u16> = real[at + 2..at + 2 + len]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(real_schemes, OPENSSL_SCHEMES_TLS12, "OpenSSL's schemes");
    let kept: Vec<u16> = real_schemes
        .into_iter()
        .filter(|s| lab_schemes.contains(s))
        .collect();
    let mut out = vec![2, 1, 64];
    out.extend_from_slice(&((kept.len() * 2) as u16).to_be_bytes());
    for s in kept {
        out.extend_from_slice(&s.to_be_bytes());
    }
    out.extend_from_slice(&real[at + 2 + len..]);
    out
}

fn openssl_persona(s: &mut lab_server::server::Settings) {
    s.use_persona(PersonaName::Openssl);
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_request_is_s_servers_but_for_the_documented_bytes() {
    if !require_tool("openssl") {
        return;
    }
    let lab = start(40, openssl_persona).await;
    let (_server, port) = s_server(&lab, &store_pem(&lab));
    let real = s_client_msg(&lab, port, false, true).await;
    let ours = s_client_msg(&lab, lab.addr().port(), true, true).await;
    let real_cr = message_bytes(&real.stdout, "CertificateRequest")
        .unwrap_or_else(|| panic!("no request from s_server: {}", real.dump()));
    let lab_cr = message_bytes(&ours.stdout, "CertificateRequest")
        .unwrap_or_else(|| panic!("no request from the lab: {}", ours.dump()));
    // Names, order and everything else: the lab's body is OpenSSL's with
    // dss_sign and the schemes rustls cannot write taken out.
    let lab_schemes = lab_server::tls::schemes_on_wire(TlsVersion::Tls12, OPENSSL_SCHEMES_TLS12);
    assert_eq!(
        lab_cr[4..],
        lab_body_from_openssl(&real_cr[4..], &lab_schemes)[..],
        "the lab's CertificateRequest body"
    );
    let p = lab.server.persona_report();
    assert_eq!(p.real_overhead, Some(48));
    assert_eq!(real_cr.len() - lab_cr.len(), 48 - p.overhead);
    assert_eq!(48 - p.overhead, 1 + 2 * (20 - lab_schemes.len()));
    // Records: one per message in both, the same messages in the same order.
    // The first flight, to ServerHelloDone (after it OpenSSL sends a TLS 1.2
    // NewSessionTicket, rustls by default none: not the request's concern).
    let first_flight = |t: Vec<String>| -> Vec<String> {
        let end = t
            .iter()
            .position(|l| l.ends_with("ServerHelloDone"))
            .expect("a ServerHelloDone");
        t[..=end].to_vec()
    };
    assert_eq!(
        first_flight(server_trace(&ours.stdout)),
        first_flight(server_trace(&real.stdout)),
        "records and messages of the first flight"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_without_a_certificate_alerts_as_s_server_does() {
    if !require_tool("openssl") {
        return;
    }
    let mut lab = start(10, openssl_persona).await;
    let (_server, port) = s_server(&lab, &store_pem(&lab));
    let real = s_client_msg(&lab, port, false, false).await;
    let ours = s_client_msg(&lab, lab.addr().port(), true, false).await;
    let alert = |out: &ToolOutput| {
        server_trace(&out.stdout)
            .into_iter()
            .find(|l| l.contains("Alert"))
            .unwrap_or_else(|| panic!("no alert: {}", out.dump()))
    };
    assert_eq!(alert(&ours), alert(&real));
    assert!(
        alert(&real).ends_with("fatal handshake_failure"),
        "{}",
        real.dump()
    );
    let ev = lab.next_event().await;
    let hs = ev.handshake.expect("handshake");
    assert_eq!(hs.alert.as_deref(), Some("sent HandshakeFailure"), "{hs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_past_65535_fails_each_handshake_as_s_server_and_keeps_serving() {
    if !require_tool("openssl") {
        return;
    }
    // 66 names of 1,000 bytes: 66,132 bytes of list, past 65,535.
    let (store, ca) = common::store_with(66, Profile::Fixed(1000));
    let mut lab = start_with(store, ca, openssl_persona).await;
    assert!(lab.server.persona_report().fails_each_handshake);
    assert!(lab.server.report().list_bytes > 65_535);
    let (_server, port) = s_server(&lab, &store_pem(&lab));
    let real = s_client_msg(&lab, port, false, true).await;
    for _ in 0..2 {
        let ours = s_client_msg(&lab, lab.addr().port(), true, true).await;
        let flight = |out: &ToolOutput| {
            server_trace(&out.stdout)
                .into_iter()
                .filter(|l| !l.contains("RecordHeader"))
                .collect::<Vec<_>>()
        };
        assert_eq!(flight(&ours), flight(&real), "{}", ours.dump());
        assert!(
            flight(&real)
                .last()
                .is_some_and(|l| l.ends_with("fatal internal_error")),
            "{}",
            real.dump()
        );
        let ev = lab.next_event().await;
        assert_eq!(
            ev.handshake.map(|h| h.alert),
            Some(Some("sent InternalError".to_owned()))
        );
    }
    common::assert_still_serving(lab.addr()).await;
}

// ---------------------------------------------------------------------------
// Postfix

/// Postfix serving the Hub's certificate with the lab's store as its CA file.
fn start_postfix(lab: &Lab) -> postfix::Postfix {
    postfix::start(
        &lab.pki_file("hub.pem"),
        &lab.pki_file("hub.key"),
        &store_pem(lab),
    )
}

/// A TLS 1.2 client with the given certificate (or none) that trusts nothing
/// in particular: it reads what the server answers after TLS.
fn client(cert: Option<(&[u8], &[u8])>) -> Arc<rustls::ClientConfig> {
    let chain = cert.map(|(cert, key)| (vec![cert.to_vec()], key.to_vec()));
    common::client_presenting(chain, &[&rustls::version::TLS12])
}

/// EHLO, STARTTLS, TLS with `config`, then EHLO: the reply, and whether the
/// server closed after it.
async fn after_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> (String, bool) {
    let mut s = Smtp::connect(addr).await;
    assert_eq!(s.reply().await.map(|r| r.code), Some(220));
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    let local = s.local;
    let tcp = s.into_tcp();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(common::hub_name(), tcp)
        .await
        .expect("TLS completes");
    let mut s = Smtp::wrap(tls, local);
    let reply = s.cmd("EHLO um.lab.test").await;
    let closed = if reply.code == 421 {
        s.until_closed(Duration::from_secs(5)).await.is_empty()
    } else {
        assert_eq!(s.cmd("QUIT").await.code, 221);
        false
    };
    (reply.first(), closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_persona_answers_as_postfix_3_7() {
    if !postfix::usable() {
        return;
    }
    let mut lab = start(10, |s| s.use_persona(PersonaName::Postfix)).await;
    let postfix = start_postfix(&lab);
    let real: SocketAddr = ([127, 0, 0, 1], postfix.port).into();
    let pki = common::pki();
    let um_key = pki.um.key.pkcs8_der().expect("UM key");
    let foreign = certgen::pki::generate(Some(7), certgen::KeyAlg::EcdsaP256).expect("other PKI");
    let foreign_key = foreign.um.key.pkcs8_der().expect("foreign key");
    let cases = [
        ("no certificate", client(None)),
        (
            "foreign certificate",
            client(Some((&foreign.um.cert_der, foreign_key))),
        ),
        ("good certificate", client(Some((&pki.um.cert_der, um_key)))),
    ];
    for (what, config) in cases {
        let (theirs, their_close) = after_tls(real, config.clone()).await;
        let (ours, our_close) = after_tls(lab.addr(), config).await;
        match what {
            "no certificate" => assert_eq!(
                theirs,
                "421 4.7.1 hub.lab.test Error: No client certificate presented"
            ),
            "foreign certificate" => assert_eq!(
                theirs,
                "421 4.7.1 hub.lab.test Error: Client certificate not trusted"
            ),
            _ => assert!(theirs.starts_with("250 "), "{theirs}"),
        }
        if theirs.starts_with("250 ") {
            // The greeting names the server; only the code and the TLS
            // outcome are Postfix's.
            assert!(ours.starts_with("250 "), "{what}: {ours}");
        } else {
            assert_eq!(ours, theirs, "{what}");
        }
        assert_eq!(our_close, their_close, "{what}: closed after the reply");
        let ev = lab.next_event().await;
        assert_eq!(ev.handshake.map(|h| h.outcome), Some("ok"), "{what}");
    }
}

// ---------------------------------------------------------------------------
// Refusals at start and Schannel 2012's stores (in-process)

/// Starts a server with `tweak`, returning the start error's text if any.
async fn start_error(
    realistic: u64,
    tweak: impl FnOnce(&mut lab_server::server::Settings),
) -> Option<String> {
    let (store, _) = common::store(realistic);
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = common::pki();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        pki.hub.key.pkcs8_der().expect("hub key").to_vec(),
    ));
    let chain = vec![CertificateDer::from(pki.hub.cert_der.clone())];
    let mut settings = lab_server::server::Settings::new(store, chain, key, dir.path().join("m"));
    settings.listen = ([127, 0, 0, 1], 0).into();
    tweak(&mut settings);
    match lab_server::server::Server::start(settings).await {
        Ok(server) => {
            server.shutdown(Duration::from_secs(1)).await;
            None
        }
        Err(e) => Some(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s2n_and_alb_refuse_past_their_limits_and_start_below() {
    // ~100 bytes a name: 250 names pass 20,000 bytes of list; 20 do not.
    let big = start_error(250, |s| s.use_persona(PersonaName::S2n)).await;
    assert!(
        big.as_deref()
            .is_some_and(|e| e.contains("S2N_ERR_TOO_MANY_CAS")),
        "{big:?}"
    );
    assert_eq!(
        start_error(20, |s| s.use_persona(PersonaName::S2n)).await,
        None
    );
    let alb = start_error(120, |s| s.use_persona(PersonaName::AwsAlb)).await;
    assert!(
        alb.as_deref().is_some_and(|e| e.contains("10,000")),
        "{alb:?}"
    );
    assert_eq!(
        start_error(20, |s| s.use_persona(PersonaName::AwsAlb)).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alb_advertises_only_when_told_and_s2n_sends_no_names_in_tls12() {
    let lab = start(20, |s| s.use_persona(PersonaName::AwsAlb)).await;
    assert_eq!(
        lab.server.report().kept,
        0,
        "AdvertiseTrustStoreCaNames off"
    );
    let lab = start(20, |s| {
        s.use_persona(PersonaName::AwsAlb);
        s.advertise(true);
    })
    .await;
    assert_eq!(lab.server.report().kept, 21);
    let lab = start(20, |s| s.use_persona(PersonaName::S2n)).await;
    assert_eq!(lab.server.report().kept, 0, "s2n: no names in TLS 1.2");
}

#[tokio::test(flavor = "multi_thread")]
async fn schannel_2012_trust_mode_2_advertises_and_trusts_only_the_issuers_store() {
    let pki = common::pki();
    let ca = pki.ca.root().expect("CA");
    let issuers = certgen::Store::from_roots(vec![ca]);
    // The Root store lacks the CA: only the issuers store can trust the UM.
    let (roots, _) = common::store(30);
    let without_ca = certgen::Store::from_roots(roots.roots()[..30].to_vec());
    let mut lab = start_with(without_ca, 0, |s| {
        s.use_persona(PersonaName::Schannel2012);
        s.advertise(true);
        s.issuers = Some(issuers.clone());
        s.trust_mode = lab_server::persona::TrustMode::ExclusiveCa;
    })
    .await;
    assert_eq!(lab.server.report().kept, 1);
    let s = Smtp::greeted(lab.addr()).await;
    let mut s = s;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    let tls = s
        .tls()
        .await
        .expect("the issuers store trusts the UM certificate");
    drop(tls);
    let ev = lab.next_event().await;
    assert_eq!(ev.certificate_request.map(|c| c.ca_names), Some(1));
    assert_eq!(ev.handshake.map(|h| h.outcome), Some("ok"));
    // Without the issuers store, mode 2 cannot start.
    let e = start_error(5, |s| {
        s.use_persona(PersonaName::Schannel2012);
        s.trust_mode = lab_server::persona::TrustMode::ExclusiveCa;
    })
    .await;
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("--client-auth-issuers")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls13_s2n_server_takes_tls13_only() {
    // s2n sends its names in TLS 1.3 and none in TLS 1.2; the lab plans one
    // list, so its TLS 1.3 s2n server refuses a TLS 1.2 client instead of
    // sending it names s2n would not.
    let mut lab = start(20, |s| {
        s.use_persona(PersonaName::S2n);
        s.tls_version = lab_server::policy::TlsVersion::Tls13;
    })
    .await;
    assert!(lab.server.report().kept > 0, "names in TLS 1.3");
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    // common's client offers TLS 1.2 only.
    let refused = s.tls().await;
    assert!(refused.is_err(), "a TLS 1.2 client was taken");
    let ev = lab.next_event().await;
    assert_eq!(ev.handshake.map(|h| h.outcome), Some("failed"));
    // Another persona's TLS 1.3 server takes the same client over TLS 1.2.
    let mut lab = start(20, |s| {
        s.use_persona(PersonaName::Openssl);
        s.tls_version = lab_server::policy::TlsVersion::Tls13;
    })
    .await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    drop(s.tls().await.expect("TLS 1.2 beside TLS 1.3"));
    let ev = lab.next_event().await;
    assert_eq!(ev.tls_version.as_deref(), Some("TLSv1_2"));
}
