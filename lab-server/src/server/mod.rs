//! The SMTP + STARTTLS server on tokio: the I/O edge around [`crate::smtp`],
//! [`crate::tls`] and [`crate::maildir`].
//!
//! One concept per module: [`accept`] (the listener, connection limits and
//! shutdown), [`connection`] (line framing and the session's byte count),
//! [`session`] (command loop, DATA, STARTTLS, timeouts), [`tls_facts`] (what a
//! handshake showed), [`delivery`] (Received header and Maildir on the
//! blocking pool) and [`sink`] (the JSON-lines writer).
//!
//! Every session is bounded: a byte budget (`451 4.7.28` past it), a
//! lifetime (`421 4.4.2`), a per-line timeout that is shorter before TLS, a
//! limit of connections per client address and in all (`421 4.7.0` and
//! `421 4.3.2`), and a bounded summary of its commands in the event.

mod accept;
mod connection;
mod delivery;
mod session;
mod sink;
mod tls_facts;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use certgen::Store;

use rustls::server::danger::ClientCertVerifier;

use crate::events::{ConnectionEvent, event_36885, now_rfc3339};
use crate::faults::{self, Applicable, Fault, FaultHandle, FaultState};
use crate::inspector::{self, Inspector};
use crate::maildir::Maildir;
use crate::persona::{self, Persona, PersonaName, PersonaReport, TrustMode, WithoutCert};
use crate::policy::{self, Report, TlsVersion};
use crate::shaper::{Layout, Rewrite};
use crate::smtp::{Limits, SessionConfig};
use crate::tls::{ClientAuth, Rebuild, TlsInputs, server_config};

/// Everything the server is started with.
pub struct Settings {
    /// Address to listen on (127.0.0.1:2525 unless told otherwise).
    pub listen: SocketAddr,
    /// Name in the greeting.
    pub hostname: String,
    /// The trust store, in enumeration order.
    pub store: Store,
    /// Roots whose fate the report states: (label, store index).
    pub named: Vec<(String, usize)>,
    /// Server certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Server key.
    pub key: PrivateKeyDer<'static>,
    /// CA-list policy.
    pub policy: policy::Settings,
    /// Client authentication.
    pub client_auth: ClientAuth,
    /// TLS version.
    pub tls_version: TlsVersion,
    /// Record size, header included.
    pub max_fragment: usize,
    /// Record layout of the first flight.
    pub layout: Layout,
    /// Log TLS secrets to SSLKEYLOGFILE.
    pub keylog: bool,
    /// Maildir for accepted messages.
    pub maildir: PathBuf,
    /// JSON-lines file, one record per connection.
    pub events_file: Option<PathBuf>,
    /// Human log in the Windows event style.
    pub log_file: Option<PathBuf>,
    /// Refuse mail before STARTTLS.
    pub require_tls: bool,
    /// SMTP limits.
    pub limits: Limits,
    /// Time allowed for each command line once TLS is up.
    pub idle_timeout: Duration,
    /// Time allowed for each command line before TLS (and so before the
    /// client authenticated): short, so a slow sender cannot hold a slot.
    pub pre_tls_timeout: Duration,
    /// Time allowed for one DATA transfer.
    pub data_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a session may last in all, whatever it does.
    pub session_lifetime: Duration,
    /// Bytes a session may send in all, messages included; `None` means four
    /// times the message size limit.
    pub max_session_bytes: Option<u64>,
    /// Concurrent connections; the excess get 421 4.3.2.
    pub max_connections: usize,
    /// Concurrent connections from one client address; the excess get
    /// 421 4.7.0, so one address cannot hold every slot.
    pub max_per_address: usize,
    /// Serve the inspector (web page and JSON API) here; off when `None`.
    pub http: Option<SocketAddr>,
    /// The real server family modeled ([`Settings::use_persona`] sets it
    /// with the settings it implies; its fields may be changed one by one).
    pub persona: Persona,
    /// Schannel 2012+: the Client Authentication Issuers store.
    pub issuers: Option<Store>,
    /// Schannel 2012+: ClientAuthTrustMode.
    pub trust_mode: TrustMode,
    /// The system trust store (dotnet-linux).
    pub system_store: Option<Store>,
    /// Faults to inject ([`crate::faults`]); the inspector's API may replace
    /// them while the server runs.
    pub faults: Vec<Fault>,
    /// Seed of the faults' probability draws; random when `None`.
    pub fault_seed: Option<u64>,
}

impl Settings {
    /// Lab defaults around a store and a server certificate.
    pub fn new(
        store: Store,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        maildir: PathBuf,
    ) -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            hostname: "hub.lab.test".to_owned(),
            store,
            named: Vec::new(),
            chain,
            key,
            policy: policy::Settings::default(),
            client_auth: ClientAuth::Required,
            tls_version: TlsVersion::Tls12,
            max_fragment: certgen::wire::MAX_FRAGMENT,
            layout: Layout::PerMessage,
            keylog: false,
            maildir,
            events_file: None,
            log_file: None,
            require_tls: true,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(300),
            pre_tls_timeout: Duration::from_secs(30),
            data_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(15),
            session_lifetime: Duration::from_secs(900),
            max_session_bytes: None,
            max_connections: 100,
            max_per_address: 20,
            http: None,
            persona: Persona::get(PersonaName::Schannel2008R2),
            issuers: None,
            trust_mode: TrustMode::MachineTrust,
            system_store: None,
            faults: Vec::new(),
            fault_seed: None,
        }
    }

    /// Models `name`: its row of [`persona::PERSONAS`] and the settings it
    /// implies (policy, budget, client authentication). Settings changed
    /// afterwards override the persona's.
    pub fn use_persona(&mut self, name: PersonaName) {
        self.persona = Persona::get(name);
        self.policy.policy = self.persona.policy(self.persona.advertise);
        self.policy.budget = self.persona.budget;
        self.client_auth = self.persona.client_auth;
    }

    /// Turns advertising on or off (SendTrustedIssuerList,
    /// AdvertiseTrustStoreCaNames): on is the persona's own policy.
    pub fn advertise(&mut self, on: bool) {
        self.policy.policy = self.persona.policy(on);
    }

    /// The session byte budget in effect.
    pub fn session_bytes(&self) -> u64 {
        self.max_session_bytes
            .unwrap_or((self.limits.max_message as u64).saturating_mul(4))
    }

    /// Refuses settings that would start a server unable to serve anyone:
    /// a zero timeout answers 421 to every client, a hostname with a line
    /// break makes every reply malformed.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let zero = |what: &'static str, d: Duration| {
            if d.is_zero() {
                Err(SettingsError::Zero(what))
            } else {
                Ok(())
            }
        };
        zero("idle timeout", self.idle_timeout)?;
        zero("pre-TLS timeout", self.pre_tls_timeout)?;
        zero("DATA timeout", self.data_timeout)?;
        zero("handshake timeout", self.handshake_timeout)?;
        zero("session lifetime", self.session_lifetime)?;
        let count = |what: &'static str, n: usize| {
            if n == 0 {
                Err(SettingsError::Zero(what))
            } else {
                Ok(())
            }
        };
        count("connection limit", self.max_connections)?;
        count("per-address connection limit", self.max_per_address)?;
        count("message size limit", self.limits.max_message)?;
        count("recipient limit", self.limits.max_recipients)?;
        if self.limits.max_line < 512 {
            // RFC 5321 4.5.3.1.4: a command line of 512 octets must be accepted.
            return Err(SettingsError::LineLimit(self.limits.max_line));
        }
        if !valid_hostname(&self.hostname) {
            return Err(SettingsError::Hostname(self.hostname.clone()));
        }
        let budget = self.session_bytes();
        if budget < self.limits.max_message as u64 {
            return Err(SettingsError::SessionBytes {
                budget,
                message: self.limits.max_message,
            });
        }
        Ok(())
    }
}

/// A random seed for the faults' draws when none is given: std's hasher
/// keys are random per process.
/// A fresh seed of 53 bits: the API reports it in JSON, and a reader that
/// holds numbers as doubles (jq, a browser) must get it back exactly to
/// reproduce the draws.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x0075_6d6c_6162);
    h.finish() & ((1 << 53) - 1)
}

/// A name that can stand in the greeting and the EHLO reply: a domain
/// (letters, digits, `-`, `.`, `_`) or an address literal, at most 255 octets.
fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b'\\'));
    }
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// A setting the server refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A timeout, lifetime or limit of zero.
    #[error("the {0} must be above zero (zero would refuse every client)")]
    Zero(&'static str),
    /// A line limit below the RFC's minimum.
    #[error("the line limit {0} is below the 512 octets RFC 5321 requires")]
    LineLimit(usize),
    /// A greeting name that would break the replies.
    #[error(
        "hostname {0:?} is not a domain or address literal (letters, digits, '-', '.', '_'; \
         no spaces or line breaks; at most 255 octets)"
    )]
    Hostname(String),
    /// A session budget that no message of the allowed size fits.
    #[error("the session byte budget {budget} is below the message size limit {message}")]
    SessionBytes {
        /// the budget
        budget: u64,
        /// the message limit
        message: usize,
    },
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is out of range.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The CA list cannot be sent.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The modeled server refuses this configuration.
    #[error(transparent)]
    Persona(#[from] persona::PersonaError),
    /// A fault this server cannot apply.
    #[error(transparent)]
    Fault(#[from] faults::FaultError),
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A file or socket could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// what was being opened
        what: String,
        /// the reason
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// Connection events the broadcast stream holds for a slow subscriber before
/// it starts dropping the oldest (the subscriber is told how many).
const EVENT_BACKLOG: usize = 4096;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    report: Report,
    events: broadcast::Sender<ConnectionEvent>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    writer: Option<tokio::task::JoinHandle<()>>,
    log: Vec<String>,
    inspector: Option<Inspector>,
    persona: PersonaReport,
    faults: FaultHandle,
}

/// State shared by connection tasks.
struct Shared {
    session: SessionConfig,
    acceptor: TlsAcceptor,
    layout: Layout,
    max_fragment: usize,
    tls_version: TlsVersion,
    client_auth: ClientAuth,
    report: Report,
    advertised: Vec<Vec<u8>>,
    maildir: Maildir,
    idle_timeout: Duration,
    pre_tls_timeout: Duration,
    data_timeout: Duration,
    handshake_timeout: Duration,
    session_lifetime: Duration,
    session_bytes: u64,
    events: broadcast::Sender<ConnectionEvent>,
    sink: Option<mpsc::Sender<ConnectionEvent>>,
    next_id: AtomicU64,
    rewrite: Rewrite,
    without_cert: WithoutCert,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    persona: PersonaReport,
    faults: FaultHandle,
    rebuild: Option<Rebuild>,
    /// Acceptors advertising a cut list, by cut (built on first use).
    cut_acceptors: std::sync::Mutex<std::collections::HashMap<usize, TlsAcceptor>>,
}

impl Shared {
    /// An acceptor advertising the planned list cut at `at` bytes
    /// ([`faults::cut_ca_list`]), or why none can be built.
    fn cut_acceptor(&self, at: usize) -> Result<TlsAcceptor, String> {
        let mut cache = self.cut_acceptors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = cache.get(&at) {
            return Ok(a.clone());
        }
        let rebuild = self
            .rebuild
            .as_ref()
            .ok_or("the server sends no CertificateRequest")?;
        let config = rebuild
            .with_hints(&faults::cut_ca_list(&self.advertised, at))
            .map_err(|e| e.to_string())?;
        let acceptor = TlsAcceptor::from(config);
        // A handful of cuts at most in practice; bound it anyway.
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(at, acceptor.clone());
        Ok(acceptor)
    }
}

impl Server {
    /// Checks the settings, plans the CA list, builds TLS, binds and starts
    /// serving.
    pub async fn start(settings: Settings) -> Result<Server, StartError> {
        settings.validate()?;
        let fault_state = FaultState::new(
            settings.faults.clone(),
            settings.fault_seed.unwrap_or_else(random_seed),
            Applicable {
                tls13: settings.tls_version == TlsVersion::Tls13,
                no_request: settings.client_auth == ClientAuth::None,
            },
        )?;
        let fault_handle = FaultHandle::new(fault_state);
        let session_bytes = settings.session_bytes();
        let p = settings.persona;
        let version = settings.tls_version;
        let planned = persona::plan(&persona::PlanInputs {
            persona: &p,
            stores: persona::Stores {
                store: &settings.store,
                issuers: settings.issuers.as_ref(),
                system: settings.system_store.as_ref(),
                trust_mode: settings.trust_mode,
            },
            policy: settings.policy,
            version,
            max_fragment: settings.max_fragment,
            named: &settings.named,
        })
        .map_err(|e| match e {
            persona::PlanError::Policy(e) => StartError::Policy(e),
            persona::PlanError::Persona(e) => StartError::Persona(e),
        })?;
        let persona::PersonaPlan {
            resolved,
            plan,
            schemes,
            advertised,
            fails_each_handshake,
            report: persona_report,
            ..
        } = planned;
        let roots: Vec<&[u8]> = resolved.anchors.iter().map(Vec::as_slice).collect();
        let tls = server_config(TlsInputs {
            roots: &roots,
            advertised: &advertised,
            chain: settings.chain,
            key: settings.key,
            client_auth: settings.client_auth,
            version: settings.tls_version,
            max_fragment: settings.max_fragment,
            keylog: settings.keylog,
            schemes: schemes.map(|s| {
                s.iter()
                    .map(|&v| rustls::SignatureScheme::from(v))
                    .collect()
            }),
            accept_untrusted: p.without_cert == WithoutCert::Reply421,
            reject_all: resolved.broken.clone(),
            tls12_beside_tls13: p.takes_tls12_beside_tls13(),
        })?;
        let (config, rejected, rebuild) = (tls.config, tls.rejected, tls.rebuild);
        let maildir = Maildir::create(&settings.maildir, &settings.hostname)
            .map_err(io_err(format!("maildir {}", settings.maildir.display())))?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(io_err(format!("listen on {}", settings.listen)))?;
        let addr = listener.local_addr().map_err(io_err("listening address"))?;

        let mut log = Vec::new();
        if rejected > 0 {
            log.push(format!(
                "warning: {rejected} roots of the store are not usable as trust anchors"
            ));
        }
        if plan.report.truncated && settings.client_auth != ClientAuth::None {
            log.push(event_36885(&plan.report, &now_rfc3339()));
        }
        if let Some(path) = &settings.log_file {
            sink::append_lines(path, &log)
                .await
                .map_err(io_err(format!("log file {}", path.display())))?;
        }
        let (sink, writer) = match &settings.events_file {
            Some(path) => {
                let (tx, handle) = sink::spawn_event_writer(path.clone())
                    .await
                    .map_err(io_err(format!("events file {}", path.display())))?;
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (shutdown, shutdown_rx) = watch::channel(false);
        // The inspector subscribes before the first connection is accepted.
        let inspector = match settings.http {
            Some(at) => {
                let http = TcpListener::bind(at)
                    .await
                    .map_err(io_err(format!("inspector on {at}")))?;
                let setup = inspector::Setup {
                    roots: inspector::view::store_view(&resolved.list, &plan.sent),
                    sent: plan.sent.clone(),
                    report: plan.report.clone(),
                    startup_log: log.clone(),
                    maildir: maildir.root().to_path_buf(),
                    faults: fault_handle.clone(),
                };
                Some(
                    Inspector::start(http, setup, events.subscribe(), shutdown_rx.clone())
                        .map_err(io_err("inspector address"))?,
                )
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            session: SessionConfig {
                hostname: settings.hostname,
                tls_offered: true,
                require_tls: settings.require_tls,
                limits: settings.limits,
            },
            acceptor: TlsAcceptor::from(config),
            layout: settings.layout,
            max_fragment: settings.max_fragment,
            tls_version: settings.tls_version,
            client_auth: settings.client_auth,
            report: plan.report.clone(),
            advertised,
            maildir,
            idle_timeout: settings.idle_timeout,
            pre_tls_timeout: settings.pre_tls_timeout,
            data_timeout: settings.data_timeout,
            handshake_timeout: settings.handshake_timeout,
            session_lifetime: settings.session_lifetime,
            session_bytes,
            events: events.clone(),
            sink,
            next_id: AtomicU64::new(1),
            rewrite: Rewrite {
                fail_before_request: fails_each_handshake,
                // Also on a TLS 1.3 server, for the TLS 1.2 clients it takes:
                // the shaper rewrites plaintext alerts only, and a TLS 1.3
                // alert is encrypted.
                no_cert_alert: p.no_cert_alert_tls12,
                ..Rewrite::default()
            },
            without_cert: p.without_cert,
            verifier: tls.verifier,
            persona: persona_report.clone(),
            faults: fault_handle.clone(),
            rebuild,
            cut_acceptors: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let limits =
            accept::ConnectionLimits::new(settings.max_connections, settings.max_per_address);
        let task = tokio::spawn(accept::accept_loop(listener, shared, limits, shutdown_rx));
        Ok(Server {
            addr,
            report: plan.report,
            events,
            shutdown,
            task,
            writer,
            log,
            inspector,
            persona: persona_report,
            faults: fault_handle,
        })
    }

    /// The fault set, shared with the connections (and the inspector's
    /// `/api/faults`): lock it to read or replace it.
    pub fn faults(&self) -> &FaultHandle {
        &self.faults
    }

    /// The inspector's address, when it serves (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inspector.as_ref().map(Inspector::local_addr)
    }

    /// What the persona changed, and how the lab's CertificateRequest
    /// differs from the real server's.
    pub fn persona_report(&self) -> &PersonaReport {
        &self.persona
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the policy decided.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Start-up log entries (event 36885 when the list was truncated).
    pub fn startup_log(&self) -> &[String] {
        &self.log
    }

    /// A stream of per-connection events, from now on. A subscriber that
    /// falls more than 4,096 events behind is told how many it missed
    /// (`RecvError::Lagged`) and goes on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// Stops accepting; sessions waiting for a command get 421; transactions
    /// in flight may finish until `grace` has passed. Returns once every
    /// connection's event has reached the events file.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        if let Some(inspector) = self.inspector {
            inspector.stop();
        }
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            // Aborting drops the remaining sessions, and with them the last
            // handles on the event writer's channel.
            let _ = task.await;
        }
        if let Some(writer) = self.writer {
            // The writer ends when its channel closes; a stuck disk gets a bound.
            let _ = tokio::time::timeout(sink::WRITER_DRAIN, writer).await;
        }
    }
}
