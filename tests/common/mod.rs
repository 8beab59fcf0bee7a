//! Shared fixtures of the root end-to-end tests (both ends of the lab at
//! once): the lab PKI, seeded stores with the enterprise CA last, lab-server
//! in-process on 127.0.0.1:0, the real `um-sim` binary, and a small JSON
//! reader for um-sim's `--events` lines.
//!
//! um-sim is driven as a binary rather than in-process: its in-process API
//! (`ClientSettings::server_roots: Arc<rustls::RootCertStore>`) cannot be built
//! without naming rustls, which the root package does not depend on. The
//! binary builds the very same `ClientSettings`, `Identity` and
//! `SubmitSettings` from PEM files (um-sim/src/main.rs) and runs
//! `submit::pass`; its JSON event lines carry the whole `Attempt`.
//!
//! Every test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use certgen::pki::LabPki;
use certgen::roots::RootsSpec;
use certgen::{KeyAlg, Position, Profile, Store};
use lab_server::events::ConnectionEvent;
use lab_server::server::{Server, Settings, StartError};
use tokio::sync::broadcast;

/// Seed of the lab PKI.
pub const PKI_SEED: u64 = 0x0075_6d6c_6162;
/// Seed of the synthetic roots.
pub const STORE_SEED: u64 = 355;
/// Deadline for one server event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for building the um-sim binary when it is missing or stale.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// The lab PKI (enterprise CA, UM client, Hub server), issued once per test
/// binary.
pub fn pki() -> &'static LabPki {
    static PKI: OnceLock<LabPki> = OnceLock::new();
    PKI.get_or_init(|| certgen::pki::generate(Some(PKI_SEED), KeyAlg::EcdsaP256).expect("lab PKI"))
}

/// The enterprise CA's subject, DER: the issuer of the UM certificate.
pub fn ca_subject() -> Vec<u8> {
    pki()
        .ca
        .root()
        .expect("the CA as a root")
        .subject_der()
        .to_vec()
}

/// `count` seeded DN-only Ed25519 roots of `profile`, then the enterprise CA
/// (`Position::Last`); returns the store and the CA's index.
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

/// `count` roots of `fixed:len`, then, when asked, one root of
/// `fixed:filler` (to reach an exact list size), then the enterprise CA last.
pub fn fixed_store(count: u64, len: usize, filler: Option<usize>) -> (Store, usize) {
    let spec = |count, len, seed| RootsSpec {
        count,
        seed: Some(seed),
        profile: Profile::Fixed(len),
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let (store, _) =
        certgen::roots::generate(&spec(count, len, STORE_SEED), &|_| {}).expect("synthetic roots");
    let mut roots = store.into_roots();
    if let Some(f) = filler {
        let (extra, _) =
            certgen::roots::generate(&spec(1, f, STORE_SEED + 1), &|_| {}).expect("filler root");
        roots.extend(extra.into_roots());
    }
    let mut store = Store::from_roots(roots);
    let ca = pki().ca.root().expect("the CA as a root");
    let at = store.insert(ca, Position::Last);
    (store, at)
}

/// A running lab-server with its files and event stream.
pub struct Lab {
    /// The server.
    pub server: Server,
    /// Connection events, subscribed before any client connects.
    pub events: broadcast::Receiver<ConnectionEvent>,
    /// Holds `pki/` (PEM files for um-sim) and `maildir/`.
    pub dir: tempfile::TempDir,
}

/// Starts lab-server in-process on 127.0.0.1:0 with lab defaults (TLS 1.2,
/// client certificate required, STARTTLS required, per-message layout, the
/// Hub certificate of the lab PKI); `tweak` adjusts the settings first.
pub async fn start_server(
    store: Store,
    ca_index: usize,
    tweak: impl FnOnce(&mut Settings),
) -> Result<Lab, StartError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let lab = pki();
    lab.save(&dir.path().join("pki")).expect("PKI files");
    let chain = vec![lab.hub.cert_der.clone().into()];
    let key = lab
        .hub
        .key
        .pkcs8_der()
        .expect("hub key")
        .to_vec()
        .try_into()
        .expect("hub key as a PrivateKeyDer");
    let mut settings = Settings::new(store, chain, key, dir.path().join("maildir"));
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.named = vec![("ca".into(), ca_index)];
    tweak(&mut settings);
    let server = Server::start(settings).await?;
    let events = server.subscribe();
    Ok(Lab {
        server,
        events,
        dir,
    })
}

impl Lab {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A file of the lab PKI: `ca.pem`, `um.pem`, `um.key`, ...
    pub fn pki_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// The Maildir the server delivers to.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// The next connection event, or `None` when none comes in time.
    pub async fn next_event(&mut self, within: Duration) -> Option<ConnectionEvent> {
        match tokio::time::timeout(within, self.events.recv()).await {
            Ok(Ok(ev)) => Some(ev),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                panic!("the test lost {n} server events")
            }
            Ok(Err(e)) => panic!("event stream: {e}"),
            Err(_) => None,
        }
    }

    /// The arguments of `um-sim submit` against this server.
    pub fn submit_args(&self, queue: &Path, profile: &str) -> Vec<String> {
        let p = |s: &str| self.pki_file(s).display().to_string();
        vec![
            "submit".into(),
            "--queue".into(),
            queue.display().to_string(),
            "--server".into(),
            self.addr().to_string(),
            "--cert".into(),
            p("um.pem"),
            "--key".into(),
            p("um.key"),
            "--server-ca".into(),
            p("ca.pem"),
            "--profile".into(),
            profile.into(),
            "--timeout".into(),
            "10".into(),
        ]
    }
}

/// The workspace root (the root package's manifest folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `um-sim` binary of this build profile: `target/<profile>/um-sim`, found
/// from this test executable (`target/<profile>/deps/<test>-<hash>`). The root
/// package's tests cannot use `CARGO_BIN_EXE_um-sim` (another package's
/// binary), and `cargo test` at the root does not build it, so it is built
/// here with `cargo build -p um-sim` when missing or older than its sources.
pub fn um_sim_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut dir = exe.parent().expect("deps folder").to_owned();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir = dir.parent().expect("profile folder").to_owned();
        }
        let bin = dir.join(format!("um-sim{}", std::env::consts::EXE_SUFFIX));
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let sources = newest_source();
        let why = match built {
            None => Some("missing"),
            Some(t) if sources.is_some_and(|s| s > t) => Some("older than its sources"),
            Some(_) => None,
        };
        if let Some(why) = why {
            build_um_sim(&dir, &bin, why);
        }
        bin
    })
    .clone()
}

/// The newest modification time among the sources um-sim is built from.
fn newest_source() -> Option<SystemTime> {
    let root = workspace_root();
    let mut newest = None;
    let mut consider = |p: &Path| {
        if let Ok(t) = std::fs::metadata(p).and_then(|m| m.modified()) {
            newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
        }
    };
    consider(&root.join("Cargo.lock"));
    for krate in ["um-sim", "certgen"] {
        consider(&root.join(krate).join("Cargo.toml"));
        let mut stack = vec![root.join(krate).join("src")];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    consider(&p);
                }
            }
        }
    }
    newest
}

fn build_um_sim(profile_dir: &Path, bin: &Path, why: &str) {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", "um-sim", "--bin", "um-sim"])
        .current_dir(workspace_root());
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("um-sim binary {} is {why}: running {cmd:?}", bin.display());
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    loop {
        match child.try_wait().expect("wait for cargo") {
            Some(status) => {
                assert!(status.success(), "cargo build -p um-sim failed: {status}");
                break;
            }
            None if started.elapsed() > BUILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cargo build -p um-sim did not finish within {BUILD_TIMEOUT:?} \
                     (a build lock held by the outer cargo?); build it first"
                );
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert!(
        bin.is_file(),
        "{} still missing after the build",
        bin.display()
    );
}

/// What one `um-sim` run did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Run {
    /// Everything, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `um-sim args` to completion (blocking), killing it after `deadline`.
pub fn run_um_sim(args: &[String], deadline: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(um_sim_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn um-sim");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        match child.try_wait().expect("wait for um-sim") {
            Some(s) => break s,
            None if started.elapsed() > deadline => {
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Files directly in `dir` (not folders), sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A JSON value: just enough to read um-sim's event lines (the root package
/// has no JSON library).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// null
    Null,
    /// true / false
    Bool(bool),
    /// a number
    Num(f64),
    /// a string
    Str(String),
    /// an array
    Arr(Vec<Json>),
    /// an object, keys in order
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON document.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: text.as_bytes(),
            at: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.at != p.b.len() {
            return Err(format!("trailing bytes at {}", p.at));
        }
        Ok(v)
    }

    /// A member of an object (`Null` when absent or not an object).
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(members) => members
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&Json::Null, |(_, v)| v),
            _ => &Json::Null,
        }
    }

    /// The string, if this is one.
    pub fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as an unsigned integer, if it is one.
    pub fn uint(&self) -> Option<usize> {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as usize),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.b.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.b.get(self.at..self.at + lit.len()) == Some(lit.as_bytes()) {
            self.at += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit:?} at {}", self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.peek() {
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.at)),
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    members.push((key, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.at)),
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(self.b.get(start..self.at).unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                text.parse()
                    .map(Json::Num)
                    .map_err(|e| format!("number {text:?}: {e}"))
            }
            _ => Err(format!("unexpected byte at {}", self.at)),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at {}", self.at))?;
        self.at += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.at += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = self.peek().ok_or("unterminated escape")?;
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp) && self.eat("\\u").is_ok() {
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo.wrapping_sub(0xdc00));
                            }
                            char::from_u32(cp).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(format!("bad escape at {}", self.at)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), seeded by the caller.
pub struct Rng(u64);

impl Rng {
    /// A generator; a zero seed is replaced.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[test]
fn json_reader_reads_um_sim_lines() {
    let v = Json::parse(
        r#"{"a":1,"b":[true,null,"x\"\u00e9"],"c":{"rule":"max-body","limit":32768},"d":-2.5e1}"#,
    )
    .unwrap();
    assert_eq!(v.get("a").uint(), Some(1));
    assert_eq!(v.get("c").get("limit").uint(), Some(32_768));
    assert_eq!(v.get("c").get("rule").str(), Some("max-body"));
    assert_eq!(v.get("d"), &Json::Num(-25.0));
    assert!(v.get("zz").is_null());
    match v.get("b") {
        Json::Arr(items) => assert_eq!(items[2].str(), Some("x\"é")),
        other => panic!("{other:?}"),
    }
    assert!(Json::parse("{").is_err());
    assert!(Json::parse("[1] x").is_err());
}
