//! A private Postfix instance for tests that need the real server: its own
//! config, queue and data folders in a temporary folder, smtpd on a free
//! loopback port with `smtpd_tls_req_ccert` (the CA file advertised and
//! trusted), the master in the foreground, stopped when dropped. Used by
//! lab-server's persona tests and, through `#[path]`, by the root probe tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Postfix may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private Postfix.
pub struct Postfix {
    /// The loopback port its smtpd listens on.
    pub port: u16,
    config: PathBuf,
    master: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something listens on `port`, at most `within`.
pub fn wait_listening(port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a private Postfix can run here: the binary, the `postfix` user,
/// and root (the master needs it). Missing: prints why and returns false,
/// or fails under CI=true.
pub fn usable() -> bool {
    let binary = Command::new("postfix")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let user = Command::new("id")
        .arg("postfix")
        .output()
        .is_ok_and(|o| o.status.success());
    if binary && root && user {
        return true;
    }
    let why = "a private Postfix needs the postfix package (apt-get install postfix), root \
               and the postfix user";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} when CI=true");
    }
    eprintln!("skipping: {why}");
    false
}

/// Starts Postfix serving `chain` (PEM, leaf first) with `key` (PEM), and
/// `cafile` (PEM) as `smtpd_tls_CAfile`: what it advertises, in file order,
/// and trusts for client certificates, which it requires. Mail from the
/// loopback is accepted for any recipient and discarded. TLS 1.2 only: the
/// version the Hub and the UM server of the incident speak, and the one whose
/// CertificateRequest crosses the wire in the clear.
pub fn start(chain: &Path, key: &Path, cafile: &Path) -> Postfix {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path();
    let (etc, queue, data) = (base.join("etc"), base.join("queue"), base.join("data"));
    for d in [&etc, &queue, &data] {
        std::fs::create_dir_all(d).expect("postfix folder");
    }
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let chown = Command::new("chown").arg("postfix").arg(&data).status();
    assert!(
        chown.is_ok_and(|s| s.success()),
        "chown postfix {}",
        data.display()
    );
    let port = free_port();
    let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("master.cf");
    let master: String = master
        .lines()
        .map(|l| {
            if l.starts_with("smtp ") && l.ends_with("smtpd") {
                format!("127.0.0.1:{port} inet n - n - - smtpd")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(etc.join("master.cf"), master + "\n").expect("master.cf");
    for (from, to) in [(chain, "hub.pem"), (key, "hub.key"), (cafile, "cafile.pem")] {
        std::fs::copy(from, etc.join(to)).expect("TLS file");
    }
    let main = format!(
        "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {d}\n\
         mail_owner = postfix\nmyhostname = hub.lab.test\nmydestination =\n\
         inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmaillog_file = /dev/stdout\n\
         smtpd_tls_security_level = encrypt\n\
         smtpd_tls_chain_files = {e}/hub.key, {e}/hub.pem\nsmtpd_tls_CAfile = {e}/cafile.pem\n\
         smtpd_tls_ask_ccert = yes\nsmtpd_tls_req_ccert = yes\n\
         mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject\n\
         default_transport = discard\n\
         smtpd_tls_protocols = >=TLSv1.2, <=TLSv1.2\n\
         smtpd_tls_mandatory_protocols = >=TLSv1.2, <=TLSv1.2\n",
        q = queue.display(),
        d = data.display(),
        e = etc.display()
    );
    std::fs::write(etc.join("main.cf"), main).expect("main.cf");
    let master = Command::new("postfix")
        .arg("-c")
        .arg(&etc)
        .arg("start-fg")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postfix start-fg");
    // Built before waiting, so a Postfix that never listens is stopped too.
    let postfix = Postfix {
        port,
        config: etc,
        master,
        _dir: dir,
    };
    wait_listening(port, "postfix", START_TIMEOUT);
    postfix
}
