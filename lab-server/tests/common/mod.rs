//! Shared fixtures of the lab-server integration tests: the lab PKI, seeded
//! stores with the enterprise CA last, an in-process server on 127.0.0.1:0, a
//! small SMTP client, a TLS 1.2 rustls client, and a runner for external tools
//! that always has a deadline.
//!
//! Every test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod postfix;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use certgen::pki::LabPki;
use certgen::roots::RootsSpec;
use certgen::{KeyAlg, Position, Profile, Store};
use lab_server::events::ConnectionEvent;
use lab_server::server::{Server, Settings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// Seed of the lab PKI.
pub const PKI_SEED: u64 = 0x0075_6d6c_6162;
/// Seed of the synthetic roots.
pub const STORE_SEED: u64 = 355;
/// Deadline for one network read or one event.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for one external tool.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
/// The name the Hub's certificate is issued to.
pub const HUB: &str = "hub.lab.test";

/// The lab PKI (enterprise CA, UM client, Hub server), issued once per test
/// binary.
pub fn pki() -> &'static LabPki {
    static PKI: OnceLock<LabPki> = OnceLock::new();
    PKI.get_or_init(|| certgen::pki::generate(Some(PKI_SEED), KeyAlg::EcdsaP256).expect("lab PKI"))
}

/// `realistic` seeded synthetic roots (DN-only, Ed25519: fast) followed by the
/// enterprise CA, and the CA's index.
pub fn store(realistic: u64) -> (Store, usize) {
    store_with(realistic, Profile::Realistic)
}

/// Like [`store`] with another subject profile.
pub fn store_with(count: u64, profile: Profile) -> (Store, usize) {
    let spec = RootsSpec {
        count,
        seed: Some(STORE_SEED),
        profile,
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let (mut store, _) = certgen::roots::generate(&spec, &|_| {}).expect("synthetic roots");
    let ca = pki().ca.root().expect("the CA as a root");
    let at = store.insert(ca, Position::Last);
    (store, at)
}

/// A running server with its store, files and event stream.
pub struct Lab {
    /// The server.
    pub server: Server,
    /// Connection events, subscribed before the first connection.
    pub events: broadcast::Receiver<ConnectionEvent>,
    /// The store the server was given, in enumeration order.
    pub store: Store,
    /// Index of the enterprise CA in `store`.
    pub ca_index: usize,
    /// Holds `pki/` (PEM files for external tools) and `maildir/`.
    pub dir: tempfile::TempDir,
}

/// Starts a server on 127.0.0.1:0 with a store of `realistic` roots plus the
/// CA last; `tweak` adjusts the settings before the start.
pub async fn start(realistic: u64, tweak: impl FnOnce(&mut Settings)) -> Lab {
    let (store, ca_index) = store(realistic);
    start_with(store, ca_index, tweak).await
}

/// Starts a server on 127.0.0.1:0 with this store.
pub async fn start_with(store: Store, ca_index: usize, tweak: impl FnOnce(&mut Settings)) -> Lab {
    let dir = tempfile::tempdir().expect("temp dir");
    let lab = pki();
    lab.save(&dir.path().join("pki")).expect("PKI files");
    let chain = vec![CertificateDer::from(lab.hub.cert_der.clone())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        lab.hub.key.pkcs8_der().expect("hub key").to_vec(),
    ));
    let mut settings = Settings::new(store.clone(), chain, key, dir.path().join("maildir"));
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.named = vec![("ca".into(), ca_index)];
    tweak(&mut settings);
    let server = Server::start(settings)
        .await
        .unwrap_or_else(|e| panic!("the server did not start: {e}"));
    let events = server.subscribe();
    Lab {
        server,
        events,
        store,
        ca_index,
        dir,
    }
}

impl Lab {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A file of the lab PKI: `ca.pem`, `um.pem`, `um.key`, `hub.pem`, ...
    pub fn pki_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// A path in the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The Maildir the server delivers to.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Files in the Maildir's `sub` folder (`new`, `tmp`, `cur`), sorted.
    pub fn maildir_files(&self, sub: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.maildir().join(sub))
            .expect("maildir folder")
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        files
    }

    /// The next connection event (any connection).
    pub async fn next_event(&mut self) -> ConnectionEvent {
        match tokio::time::timeout(IO_TIMEOUT, self.events.recv()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => panic!("event stream: {e}"),
            Err(_) => panic!("no connection event within {IO_TIMEOUT:?}"),
        }
    }

    /// The event of the connection whose client side was `local`.
    pub async fn event_for(&mut self, local: SocketAddr) -> ConnectionEvent {
        let peer = local.to_string();
        loop {
            let ev = self.next_event().await;
            if ev.peer == peer {
                return ev;
            }
        }
    }
}

/// One SMTP reply: its code and its text lines (code and separator removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code.
    pub code: u16,
    /// Text after `NNN-` / `NNN `, one per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// `NNN first-line`, as the wire shows it.
    pub fn first(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
}

/// A line-oriented SMTP client over any stream, every read under a deadline.
pub struct Smtp<S> {
    io: BufReader<S>,
    /// Client-side address of the TCP connection.
    pub local: SocketAddr,
}

impl Smtp<TcpStream> {
    /// Connects (without reading the greeting).
    pub async fn connect(addr: SocketAddr) -> Smtp<TcpStream> {
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let local = tcp.local_addr().expect("local address");
        Smtp {
            io: BufReader::new(tcp),
            local,
        }
    }

    /// Wraps a connected stream (without reading the greeting).
    pub fn from_tcp(tcp: TcpStream, local: SocketAddr) -> Smtp<TcpStream> {
        Smtp {
            io: BufReader::new(tcp),
            local,
        }
    }

    /// Connects and reads the 220 greeting.
    pub async fn greeted(addr: SocketAddr) -> Smtp<TcpStream> {
        let mut s = Smtp::connect(addr).await;
        let greeting = s.reply().await.expect("a greeting");
        assert_eq!(greeting.first(), "220 hub.lab.test ESMTP umlab lab-server");
        s
    }

    /// The TCP stream, once no byte is left unread in the buffer.
    pub fn into_tcp(self) -> TcpStream {
        assert!(
            self.io.buffer().is_empty(),
            "unread bytes before TLS: {:?}",
            String::from_utf8_lossy(self.io.buffer())
        );
        self.io.into_inner()
    }

    /// Runs a TLS 1.2 handshake with the lab client configuration (the UM
    /// certificate) over this connection. The STARTTLS exchange must be done.
    pub async fn tls(self) -> std::io::Result<Smtp<tokio_rustls::client::TlsStream<TcpStream>>> {
        let local = self.local;
        let tcp = self.into_tcp();
        let connector = tokio_rustls::TlsConnector::from(client_config());
        let tls = tokio::time::timeout(IO_TIMEOUT, connector.connect(hub_name(), tcp))
            .await
            .expect("TLS handshake timed out")?;
        Ok(Smtp {
            io: BufReader::new(tls),
            local,
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    /// Wraps any connected stream, e.g. a TLS stream set up by the test.
    pub fn wrap(stream: S, local: SocketAddr) -> Smtp<S> {
        Smtp {
            io: BufReader::new(stream),
            local,
        }
    }

    /// Writes bytes as they are, in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        let s = self.io.get_mut();
        s.write_all(bytes).await.expect("write");
        s.flush().await.expect("flush");
    }

    /// Reads one reply (all its lines); `None` at end of stream.
    pub async fn reply(&mut self) -> Option<Reply> {
        let mut code = 0;
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let n = tokio::time::timeout(IO_TIMEOUT, self.io.read_until(b'\n', &mut raw))
                .await
                .expect("no reply within the deadline")
                .ok()?;
            if n == 0 {
                assert!(lines.is_empty(), "end of stream inside a reply: {lines:?}");
                return None;
            }
            let text = String::from_utf8_lossy(&raw);
            let text = text.trim_end_matches(['\r', '\n']);
            let (c, sep, rest) = (
                text.get(..3).and_then(|c| c.parse::<u16>().ok()),
                text.get(3..4).unwrap_or(" "),
                text.get(4..).unwrap_or(""),
            );
            let c = c.unwrap_or_else(|| panic!("not an SMTP reply line: {text:?}"));
            assert!(
                code == 0 || code == c,
                "code changed inside a reply: {text:?}"
            );
            code = c;
            lines.push(rest.to_owned());
            if sep != "-" {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Sends `line` + CRLF and reads the reply, which must come.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply()
            .await
            .unwrap_or_else(|| panic!("connection closed instead of a reply to {line:?}"))
    }

    /// Reads until the peer closes; returns the bytes read. Panics when the
    /// connection stays open past the deadline.
    pub async fn until_closed(&mut self, within: Duration) -> Vec<u8> {
        let mut rest = Vec::new();
        match tokio::time::timeout(within, self.io.read_to_end(&mut rest)).await {
            Ok(_) => rest,
            Err(_) => panic!("the server kept the connection open past {within:?}"),
        }
    }
}

/// Connects, reads 220, EHLO gets 250, QUIT gets 221: the server still serves.
pub async fn assert_still_serving(addr: SocketAddr) {
    let mut s = Smtp::greeted(addr).await;
    let ehlo = s.cmd("EHLO other.lab.test").await;
    assert_eq!(ehlo.code, 250, "{ehlo:?}");
    assert_eq!(
        ehlo.lines.first().map(String::as_str),
        Some("hub.lab.test greets other.lab.test")
    );
    assert_eq!(s.cmd("QUIT").await.first(), "221 2.0.0 Bye");
}

/// The Hub's name for server certificate verification.
pub fn hub_name() -> ServerName<'static> {
    ServerName::try_from(HUB).expect("DNS name")
}

/// A rustls client that offers TLS 1.2 only, trusts the lab CA and presents
/// the UM certificate.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    let lab = pki();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(lab.ca.cert_der.clone()))
        .expect("lab CA as an anchor");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        lab.um.key.pkcs8_der().expect("UM key").to_vec(),
    ));
    let config = rustls::ClientConfig::builder_with_provider(lab_server::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(lab.um.cert_der.clone())], key)
        .expect("client certificate");
    Arc::new(config)
}

/// A client of `versions` that accepts any server certificate and presents
/// `chain` (DER, leaf first) with its PKCS#8 key, or no certificate: for
/// tests of how the server judges a client, whatever the client's PKI.
pub fn client_presenting(
    chain: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyServer;
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            lab_server::tls::provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(lab_server::tls::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    let config = match chain {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("client certificate"),
    };
    Arc::new(config)
}

/// What an external tool did.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit code (`None` when killed).
    pub code: Option<i32>,
    /// Standard output, lossy UTF-8.
    pub stdout: String,
    /// Standard error, lossy UTF-8.
    pub stderr: String,
    /// Killed at the deadline.
    pub timed_out: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl ToolOutput {
    /// Everything, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit {:?}{} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            if self.timed_out {
                " (killed at the deadline)"
            } else {
                ""
            },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    /// Panics with the whole output unless the tool exited 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.code == Some(0) && !self.timed_out,
            "{what} failed: {}",
            self.dump()
        );
    }
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Whether the test can use `program`. Missing: a failure when CI=true;
/// anywhere else the test says why it stops and the caller returns early.
pub fn require_tool(program: &str) -> bool {
    if on_path(program) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{program} is required when CI=true, but it is not on PATH");
    }
    eprintln!("skipping: {program} is not on PATH (set CI=true to make this fatal)");
    false
}

/// Runs `program args` with `stdin` written to it (then closed), on a
/// blocking thread, killing it at `deadline`.
pub async fn run_tool(
    program: &str,
    args: Vec<OsString>,
    stdin: Vec<u8>,
    deadline: Duration,
) -> ToolOutput {
    let program = program.to_owned();
    tokio::task::spawn_blocking(move || run_blocking(&program, &args, stdin, deadline))
        .await
        .expect("tool runner thread")
}

fn run_blocking(
    program: &str,
    args: &[OsString],
    stdin: Vec<u8>,
    deadline: Duration,
) -> ToolOutput {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().expect("stdin pipe");
    let writer = std::thread::spawn(move || {
        // The tool may exit before reading everything: ignore EPIPE.
        let _ = input.write_all(&stdin);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("wait for the tool") {
            Some(status) => break status,
            None if started.elapsed() > deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let _ = writer.join();
    ToolOutput {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
        elapsed: started.elapsed(),
    }
}

/// `path` as an argument.
pub fn arg(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

/// Standard base64 with padding, no line breaks.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Drives a rustls client to the end of the handshake over `tcp`, starting
/// with server bytes already read; then QUIT, and the server's close.
pub async fn finish_handshake(
    conn: &mut rustls::ClientConnection,
    tcp: &mut TcpStream,
    first: &[u8],
) {
    let mut input = first.to_vec();
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        let mut rd = &input[..];
        while !rd.is_empty() {
            conn.read_tls(&mut rd).expect("read_tls");
            conn.process_new_packets()
                .unwrap_or_else(|e| panic!("client handshake: {e}"));
        }
        while conn.wants_write() {
            let mut out = Vec::new();
            conn.write_tls(&mut out).expect("write_tls");
            tcp.write_all(&out).await.expect("write");
        }
        if !conn.is_handshaking() {
            break;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("handshake within the deadline")
            .expect("read");
        assert!(n > 0, "server closed during the handshake");
        input = buf[..n].to_vec();
    }
    use std::io::Write as _;
    conn.writer().write_all(b"QUIT\r\n").expect("plaintext");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    tcp.write_all(&out).await.expect("write");
    let mut rest = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, tcp.read_to_end(&mut rest))
        .await
        .expect("server closes after QUIT")
        .expect("read");
}
