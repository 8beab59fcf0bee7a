//! Shared fixtures of the root end-to-end tests (both ends of the lab at
//! once): the lab PKI, seeded stores with the enterprise CA last, lab-server
//! in-process on 127.0.0.1:0, um-sim's library driven in-process against it,
//! and the one process runner (for the `umlab` binary, and for the crash
//! test, which re-executes its own test binary as a um-sim submitter so that
//! it can kill it).
//!
//! Every test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use certgen::pki::{LabPki, Shape};
use certgen::roots::RootsSpec;
use certgen::{KeyAlg, Position, Profile, Store};
use lab_server::events::ConnectionEvent;
use lab_server::server::{Server, Settings, StartError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::broadcast;
use um_sim::client::{ClientSettings, Identity};
use um_sim::submit::SubmitSettings;

/// Seed of the lab PKI.
pub const PKI_SEED: u64 = 0x0075_6d6c_6162;
/// Seed of the synthetic roots.
pub const STORE_SEED: u64 = 355;
/// Deadline for one server event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Seconds um-sim waits for a connection, a reply or a handshake.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The one-tier lab PKI (enterprise CA, UM client, Hub server), issued once
/// per test process.
pub fn pki() -> &'static LabPki {
    pki_of(Shape::OneTier)
}

/// The lab PKI of `shape`, issued once per test process: its `ca` is what
/// the Hub's store must hold (the root CA, or the UM's own certificate).
pub fn pki_of(shape: Shape) -> &'static LabPki {
    static PKI: [OnceLock<LabPki>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let at = Shape::ALL.iter().position(|&s| s == shape).unwrap_or(0);
    PKI[at].get_or_init(|| {
        certgen::pki::generate_shape(Some(PKI_SEED), KeyAlg::EcdsaP256, shape).expect("lab PKI")
    })
}

/// The enterprise CA's subject, DER: the issuer of the UM certificate.
pub fn ca_subject() -> Vec<u8> {
    anchor_subject(pki())
}

/// The subject (DER) of what the Hub's store must hold for `lab`: the root
/// CA, or the UM's own certificate (self-signed).
pub fn anchor_subject(lab: &LabPki) -> Vec<u8> {
    lab.ca
        .root()
        .expect("the CA as a root")
        .subject_der()
        .to_vec()
}

/// `count` seeded DN-only Ed25519 roots of `profile`, then the enterprise CA
/// (`Position::Last`); returns the store and the CA's index.
pub fn store_with(count: u64, profile: Profile) -> (Store, usize) {
    store_for(pki(), count, profile)
}

/// [`store_with`] for any lab PKI: `lab.ca` goes last.
pub fn store_for(lab: &LabPki, count: u64, profile: Profile) -> (Store, usize) {
    let spec = RootsSpec {
        count,
        seed: Some(STORE_SEED),
        profile,
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let (mut store, _) = certgen::roots::generate(&spec, &|_| {}).expect("synthetic roots");
    let ca = lab.ca.root().expect("the CA as a root");
    let at = store.insert(ca, Position::Last);
    (store, at)
}

/// `count` roots of `fixed:len`, then, when asked, one root of
/// `fixed:filler` (to reach an exact list size), then the enterprise CA last.
pub fn fixed_store(count: u64, len: usize, filler: Option<usize>) -> (Store, usize) {
    fixed_store_for(pki(), count, len, filler)
}

/// [`fixed_store`] for any lab PKI: `lab.ca` goes last.
pub fn fixed_store_for(
    lab: &LabPki,
    count: u64,
    len: usize,
    filler: Option<usize>,
) -> (Store, usize) {
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
    let ca = lab.ca.root().expect("the CA as a root");
    let at = store.insert(ca, Position::Last);
    (store, at)
}

/// A running lab-server with its files and event stream.
pub struct Lab {
    /// The server.
    pub server: Server,
    /// Connection events, subscribed before any client connects.
    pub events: broadcast::Receiver<ConnectionEvent>,
    /// Holds `maildir/` and the tests' queues.
    pub dir: tempfile::TempDir,
    /// The lab PKI whose Hub chain it serves.
    pub pki: &'static LabPki,
}

/// Starts lab-server in-process on 127.0.0.1:0 with lab defaults (TLS 1.2,
/// client certificate required, STARTTLS required, per-message layout, the
/// Hub certificate of the lab PKI); `tweak` adjusts the settings first.
pub async fn start_server(
    store: Store,
    ca_index: usize,
    tweak: impl FnOnce(&mut Settings),
) -> Result<Lab, StartError> {
    start_server_for(pki(), store, ca_index, tweak).await
}

/// [`start_server`] with the Hub chain of any lab PKI.
pub async fn start_server_for(
    lab: &'static LabPki,
    store: Store,
    ca_index: usize,
    tweak: impl FnOnce(&mut Settings),
) -> Result<Lab, StartError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let chain = lab
        .hub_chain()
        .into_iter()
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect();
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
        pki: lab,
    })
}

impl Lab {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
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

    /// um-sim's settings for submitting to this server with `profile`.
    pub fn submit_settings(&self, profile: &str, concurrency: usize) -> SubmitSettings {
        submit_settings_for(self.pki, &self.addr().to_string(), profile, concurrency)
    }
}

/// um-sim's settings against `server` (`127.0.0.1:PORT`): the UM certificate
/// of the lab PKI, the server verified against the enterprise CA, as
/// `um-sim submit --cert um.pem --key um.key --server-ca ca.pem` builds them
/// (one attempt per item per pass, ten before badvoicemail/).
pub fn submit_settings(server: &str, profile: &str, concurrency: usize) -> SubmitSettings {
    submit_settings_for(pki(), server, profile, concurrency)
}

/// The UM's identity in `lab`: its whole chain (leaf, then the issuing CA in
/// the two-tier shape) and its key, as `--cert um.pem --key um.key` loads them.
pub fn um_identity(lab: &LabPki) -> Identity {
    let key = PrivateKeyDer::try_from(lab.um.key.pkcs8_der().expect("UM key").to_vec())
        .expect("UM key as a PrivateKeyDer");
    let chain = lab
        .um_chain()
        .into_iter()
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect();
    Identity::new(chain, key).expect("UM identity")
}

/// [`submit_settings`] for any lab PKI: the UM sends its whole chain and
/// verifies the Hub against the shape's anchor.
pub fn submit_settings_for(
    lab: &LabPki,
    server: &str,
    profile: &str,
    concurrency: usize,
) -> SubmitSettings {
    let identity = um_identity(lab);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(lab.hub_anchor().to_vec()))
        .expect("the Hub's anchor");
    SubmitSettings {
        client: ClientSettings {
            server: server.to_owned(),
            server_name: ServerName::try_from("127.0.0.1").expect("server name"),
            server_roots: Arc::new(roots),
            helo: "um.lab.test".into(),
            from: "um@um.lab.test".into(),
            connect_timeout: CLIENT_TIMEOUT,
            io_timeout: CLIENT_TIMEOUT,
        },
        identity,
        profile: profile.parse().expect("client profile"),
        max_attempts: 10,
        retry_delay: Duration::from_secs(30),
        concurrency,
        events_file: None,
    }
}

/// What one process did.
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

/// A started process whose output is drained as it comes (a full pipe never
/// stalls it).
pub struct Running {
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

/// Starts `cmd` with stdin closed and its output captured: the one process
/// runner of the root tests.
pub fn start(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = Some(drain(child.stdout.take().map(|s| Box::new(s) as _)));
    let stderr = Some(drain(child.stderr.take().map(|s| Box::new(s) as _)));
    Running {
        child,
        started: Instant::now(),
        stdout,
        stderr,
        status: None,
    }
}

impl Running {
    /// The exit status, once the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for the child");
        }
        self.status
    }

    /// Sends SIGKILL (unless it already ended) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait after kill");
        self.status = Some(status);
        status
    }

    /// Waits for the end, killing the process after `deadline` from its start,
    /// and collects its output.
    pub fn finish(mut self, deadline: Duration) -> Run {
        let status = loop {
            if let Some(s) = self.try_status() {
                break s;
            }
            if self.started.elapsed() > deadline {
                break self.kill();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Run {
            code: status.code(),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
            elapsed: self.started.elapsed(),
        }
    }
}

/// Runs `cmd` to completion (blocking), killing it after `deadline`.
pub fn run(cmd: &mut Command, deadline: Duration) -> Run {
    start(cmd).finish(deadline)
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

/// Submits one freshly queued voicemail to `lab` with `profile`, once (what
/// `um-sim submit` does per item), and returns um-sim's attempt record.
pub async fn submit_one(lab: &Lab, profile: &str) -> um_sim::client::Attempt {
    submit_one_with(lab.submit_settings(profile, 1), lab.dir.path()).await
}

/// [`submit_one`] with any settings (another server), queueing under `dir`.
pub async fn submit_one_with(settings: SubmitSettings, dir: &Path) -> um_sim::client::Attempt {
    let dir = dir.join(format!("queue-{}", QUEUES.fetch_add(1, Ordering::Relaxed)));
    let (queue, items) = tokio::task::spawn_blocking(move || {
        let queue = um_sim::queue::Queue::open(&dir).expect("queue");
        let spec = um_sim::queue::EnqueueSpec {
            count: 1,
            seconds: 1,
            to: "user@lab.test".into(),
            seed: 7,
            sample_rate: 8_000,
        };
        um_sim::queue::enqueue(&queue, &spec).expect("enqueue");
        let (items, rejected) = queue.scan().expect("scan");
        assert!(rejected.is_empty() && items.len() == 1, "{rejected:?}");
        (queue, items)
    })
    .await
    .expect("queue thread");
    let item = items.first().expect("one queued voicemail");
    um_sim::submit::attempt(&queue, &settings, item)
        .await
        .expect("queue readable")
        .expect("a usable voicemail")
}

/// Numbers the queue folders [`submit_one`] makes.
static QUEUES: AtomicUsize = AtomicUsize::new(0);
