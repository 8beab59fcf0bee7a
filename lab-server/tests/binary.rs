//! The `lab-server` binary: flags and TOML config, the start-up report with
//! event 36885, SSLKEYLOGFILE, bad settings, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certgen::roots::{self, RootsSpec};
use certgen::{KeyAlg, Position, Profile, pki};

/// Writes the lab PKI and a store of `n` synthetic roots with the CA last.
fn lab(dir: &Path, n: u64) {
    let lab = pki::generate(Some(9), KeyAlg::EcdsaP256).unwrap();
    lab.save(&dir.join("lab")).unwrap();
    let spec = RootsSpec {
        count: n,
        seed: Some(9),
        profile: Profile::Fixed(100),
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let (mut store, _) = roots::generate(&spec, &|_| {}).unwrap();
    store.insert(lab.ca.root().unwrap(), Position::Last);
    store.save(&dir.join("store"), None).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server and reads its stdout up to "listening on".
fn start(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab-server starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text.contains("listening on") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("lab-server did not start:\n{text}\n{err}");
        }
        text.push_str(&line);
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, text)
}

fn smtp_greeting(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    s.write_all(b"QUIT\r\n").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "lab-server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn config_file_flags_report_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    lab(d, 200);
    let port = free_port();
    // The file asks for `omit`; the flag wins with `schannel`.
    let config = d.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstore = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
             policy = \"omit\"\nmaildir = \"{}\"\nhostname = \"hub.config.test\"\n",
            d.join("store").display(),
            d.join("lab/hub.pem").display(),
            d.join("lab/hub.key").display(),
            d.join("md").display()
        ),
    )
    .unwrap();
    let keylog = d.join("keys.log");
    let (mut child, report) = start(
        Command::new(env!("CARGO_BIN_EXE_lab-server"))
            .arg("--config")
            .arg(&config)
            .args(["--policy", "schannel", "--track"])
            .arg(d.join("lab/ca.pem"))
            .arg("--log")
            .arg(d.join("hub.log"))
            .env("SSLKEYLOGFILE", &keylog),
    );
    // 201 roots of 100-byte subjects: 160 x 102 = 16,320 fit 16,384.
    assert!(
        report.contains("roots in store: 201; names sent: 160; dropped: 41"),
        "{report}"
    );
    assert!(
        report.contains("umlab Enterprise Root CA: DROPPED"),
        "{report}"
    );
    assert!(report.contains("Event ID:      36885"), "{report}");
    assert!(
        report.contains("This list has thus been truncated."),
        "{report}"
    );
    let log = std::fs::read_to_string(d.join("hub.log")).unwrap();
    assert!(
        log.contains("Source:        Schannel") && log.contains("36885"),
        "{log}"
    );
    assert!(smtp_greeting(port).starts_with("220 hub.config.test ESMTP"));

    // A TLS session through openssl, when present, writes the key log.
    if Command::new("openssl").arg("version").output().is_ok() {
        let mut s_client = Command::new("openssl")
            .args(["s_client", "-starttls", "smtp", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(d.join("lab/um.pem"))
            .arg("-key")
            .arg(d.join("lab/um.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while s_client.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = s_client.kill();
        let keys = std::fs::read_to_string(&keylog).unwrap_or_default();
        assert!(
            keys.contains("CLIENT_RANDOM "),
            "SSLKEYLOGFILE not written: {keys:?}"
        );
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("openssl is required under CI");
    }

    let status = sigterm(&mut child);
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn bad_settings_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    lab(d, 700);
    let base = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lab-server"))
            .arg("--store")
            .arg(d.join("store"))
            .arg("--cert")
            .arg(d.join("lab/hub.pem"))
            .arg("--key")
            .arg(d.join("lab/hub.key"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    // 700 x 102 bytes of synthetic names plus the CA's: over what TLS 1.2 carries.
    let ca = pki::generate(Some(9), KeyAlg::EcdsaP256)
        .unwrap()
        .ca
        .root()
        .unwrap();
    let list = 700 * 102 + 2 + ca.subject_der().len();
    let (code, err) = base(&["--policy", "full"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&list.to_string()) && err.contains("65535"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for (flags, needle) in [
        (&["--policy", "truncate"][..], "unknown policy"),
        (&["--max-fragment", "20"][..], "--max-fragment 20"),
        (&["--tls", "1.1"][..], "unknown TLS version"),
        (&["--config", "/nonexistent.toml"][..], "/nonexistent.toml"),
        // Each of these used to start a server that could serve nobody.
        (
            &["--idle-timeout", "0"][..],
            "idle timeout must be above zero",
        ),
        (
            &["--pre-tls-timeout", "0"][..],
            "pre-TLS timeout must be above zero",
        ),
        (
            &["--max-per-address", "0"][..],
            "per-address connection limit",
        ),
        (&["--hostname", "hub\r\n250 forged"][..], "is not a domain"),
        (&["--hostname", "hub lab"][..], "is not a domain"),
        (&["--config", "/dev/zero"][..], "larger than 1048576 bytes"),
    ] {
        let (code, err) = base(flags);
        assert_eq!(code, Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{flags:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lab-server"))
        .args(["--store", "/nonexistent", "--cert", "x", "--key", "y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent"));
}
