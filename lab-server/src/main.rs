//! `lab-server`: the Hub Transport stand-in. SMTP + STARTTLS on 127.0.0.1:2525
//! by default, advertising the CA list a Windows server would send.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use certgen::Store;
use clap::Parser;
use lab_server::events::ConnectionEvent;
use lab_server::persona::{PersonaName, PersonaReport, TrustMode};
use lab_server::policy::{Accounting, Order, Policy, Report, TlsVersion};
use lab_server::server::{Server, Settings};
use lab_server::shaper::Layout;
use lab_server::tls::ClientAuth;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

/// SMTP + STARTTLS server that sends a Schannel-style CA list in its TLS
/// CertificateRequest. Every flag may also be set in the --config TOML file
/// (same names, with underscores); flags win.
#[derive(Parser, Debug, Default, Deserialize)]
#[command(name = "lab-server", version, about)]
#[serde(deny_unknown_fields)]
struct Args {
    /// `personas`: print the persona table with its sources and exit.
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
    /// TOML file with any of the settings below.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The real server modeled: schannel-2008r2, schannel-2012, openssl,
    /// postfix, s2n, dotnet-linux, aws-alb [default: schannel-2008r2]. Its
    /// settings apply first; every explicit setting overrides them.
    #[arg(long)]
    persona: Option<String>,
    /// Schannel's SendTrustedIssuerList: 1 advertises (the persona's policy),
    /// 0 sends no names [default: the persona's; 0 for schannel-2012].
    #[arg(long)]
    send_trusted_issuer_list: Option<u8>,
    /// ALB's AdvertiseTrustStoreCaNames: on or off [default: the persona's;
    /// off for aws-alb].
    #[arg(long)]
    advertise_ca_names: Option<String>,
    /// Schannel 2012+: the Client Authentication Issuers store (PEM bundle,
    /// folder, .p7b or .sst), advertised instead of the Trusted Root store.
    #[arg(long)]
    client_auth_issuers: Option<PathBuf>,
    /// Schannel 2012+: ClientAuthTrustMode 0 (machine trust), 1 (exclusive
    /// root trust), 2 (exclusive CA trust) [default: 0].
    #[arg(long)]
    client_auth_trust_mode: Option<String>,
    /// dotnet-linux: the system trust store [default:
    /// /etc/ssl/certs/ca-certificates.crt].
    #[arg(long)]
    system_store: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:2525].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Trust store: PEM bundle, folder, .p7b or .sst, in enumeration order.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Server certificate chain (PEM), e.g. hub.pem from `certgen pki`.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Server private key (PEM), e.g. hub.key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Report where these CAs (PEM) land in the sent list, e.g. ca.pem.
    #[arg(long)]
    track: Option<Vec<PathBuf>>,
    /// CA-list policy: full, schannel, omit [default: schannel].
    #[arg(long)]
    policy: Option<String>,
    /// Budget in bytes [default: 16384].
    #[arg(long)]
    budget: Option<usize>,
    /// What the budget counts: ca-list or message [default: ca-list].
    #[arg(long)]
    accounting: Option<String>,
    /// Enumeration order: store, thumbprint, subject [default: store].
    #[arg(long)]
    order: Option<String>,
    /// Client authentication: required, optional, none [default: required].
    #[arg(long)]
    client_auth: Option<String>,
    /// TLS version: 1.2 or 1.3 [default: 1.2].
    #[arg(long)]
    tls: Option<String>,
    /// Record size in bytes, 5-byte header included, 32..=16389 [default: 16389].
    #[arg(long)]
    max_fragment: Option<usize>,
    /// First-flight record layout: per-message or coalesced [default: per-message].
    #[arg(long)]
    layout: Option<String>,
    /// Maildir for accepted messages [default: ./maildir].
    #[arg(long)]
    maildir: Option<PathBuf>,
    /// JSON-lines file, one record per connection.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Human log file (Windows event style); stdout always gets it too.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Refuse MAIL before STARTTLS: true or false [default: true].
    #[arg(long)]
    require_tls: Option<bool>,
    /// Name in the greeting [default: hub.lab.test].
    #[arg(long)]
    hostname: Option<String>,
    /// Largest message in bytes [default: 26214400].
    #[arg(long)]
    max_message_size: Option<usize>,
    /// Concurrent connections; the excess get 421 4.3.2 [default: 100].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Concurrent connections from one client address; the excess get
    /// 421 4.7.0 [default: 20].
    #[arg(long)]
    max_per_address: Option<usize>,
    /// Serve the inspector, a web page and JSON API under /api/, on this
    /// address (e.g. 127.0.0.1:8025); off unless given.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Seconds allowed for each command line once TLS is up [default: 300].
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// Seconds allowed for each command line before TLS [default: 30].
    #[arg(long)]
    pre_tls_timeout: Option<u64>,
    /// Seconds allowed for the TLS handshake [default: 15].
    #[arg(long)]
    handshake_timeout: Option<u64>,
    /// Seconds allowed for one DATA transfer [default: 600].
    #[arg(long)]
    data_timeout: Option<u64>,
    /// Seconds a session may last in all; then 421 4.4.2 [default: 900].
    #[arg(long)]
    session_lifetime: Option<u64>,
    /// Bytes a session may send in all, messages included; then 451 4.7.28
    /// [default: 4 x --max-message-size].
    #[arg(long)]
    max_session_bytes: Option<u64>,
    /// Seconds transactions in flight get at Ctrl-C or SIGTERM [default: 30].
    #[arg(long)]
    grace: Option<u64>,
    /// Inject a fault (repeatable; TOML: fault = ["..."]): smtp:mail|rcpt|data:
    /// 421|451|452|550|554, tls:close-after-request, tls:delay-before-done=MS,
    /// tls:fragment-request=N, tls:cut-list-at=N; each optionally @p=F or
    /// @nth=N. See the README.
    #[arg(long, value_name = "SPEC")]
    fault: Option<Vec<String>>,
    /// Seed of the faults' @p draws [default: random, printed at start].
    #[arg(long)]
    fault_seed: Option<u64>,
}

/// Commands besides serving.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print every persona: its settings, behaviours and sources.
    Personas,
}

/// The system trust store dotnet-linux reads when none is given.
const SYSTEM_STORE: &str = "/etc/ssl/certs/ca-certificates.crt";

macro_rules! merge {
    ($flags:ident, $file:ident, $($field:ident),+) => {
        $( if $flags.$field.is_none() { $flags.$field = $file.$field.take(); } )+
    };
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lab-server: error: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(Args::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = certgen::error::one_line(&format!("{e:#}"));
            eprintln!("lab-server: error: {text}");
            ExitCode::from(2)
        }
    }
}

fn parse<T: std::str::FromStr<Err = String>>(value: Option<&str>, default: T) -> Result<T> {
    match value {
        Some(v) => v.parse().map_err(anyhow::Error::msg),
        None => Ok(default),
    }
}

async fn run(mut args: Args) -> Result<()> {
    if let Some(Command::Personas) = args.command {
        print!("{}", lab_server::persona::table());
        return Ok(());
    }
    if let Some(path) = args.config.clone() {
        let text = certgen::fsutil::read_capped_text(&path, certgen::fsutil::MAX_TEXT_FILE)
            .with_context(|| format!("config {}", path.display()))?;
        let mut file: Args =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        merge!(
            args,
            file,
            persona,
            send_trusted_issuer_list,
            advertise_ca_names,
            client_auth_issuers,
            client_auth_trust_mode,
            system_store,
            listen,
            store,
            cert,
            key,
            track,
            policy,
            budget,
            accounting,
            order,
            client_auth,
            tls,
            max_fragment,
            layout,
            maildir,
            events,
            log,
            require_tls,
            hostname,
            max_message_size,
            max_connections,
            max_per_address,
            http,
            idle_timeout,
            pre_tls_timeout,
            handshake_timeout,
            data_timeout,
            session_lifetime,
            max_session_bytes,
            grace,
            fault,
            fault_seed
        );
    }
    let persona = parse::<PersonaName>(args.persona.as_deref(), PersonaName::Schannel2008R2)?;
    let (Some(store_path), Some(cert_path), Some(key_path)) = (&args.store, &args.cert, &args.key)
    else {
        bail!("--store, --cert and --key are required (on the command line or in --config)");
    };
    let store = Store::load(store_path)?;
    let cert_pem = certgen::fsutil::read_capped(cert_path, certgen::fsutil::MAX_TEXT_FILE)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("{}: no certificate", cert_path.display());
    }
    let key_pem = certgen::fsutil::read_capped(key_path, certgen::fsutil::MAX_TEXT_FILE)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{}: no usable private key", key_path.display()))?;

    let maildir = args
        .maildir
        .clone()
        .unwrap_or_else(|| PathBuf::from("maildir"));
    let mut settings = Settings::new(store, chain, key, maildir);
    settings.named = track(&settings.store, args.track.as_deref().unwrap_or_default())?;
    if let Some(a) = args.listen {
        settings.listen = a;
    }
    settings.use_persona(persona);
    match args.send_trusted_issuer_list {
        None => {}
        Some(n @ (0 | 1)) => settings.advertise(n == 1),
        Some(n) => bail!("--send-trusted-issuer-list {n}: expected 0 or 1"),
    }
    match args.advertise_ca_names.as_deref() {
        None => {}
        Some("on") => settings.advertise(true),
        Some("off") => settings.advertise(false),
        Some(other) => bail!("--advertise-ca-names {other:?}: expected on or off"),
    }
    settings.trust_mode =
        parse::<TrustMode>(args.client_auth_trust_mode.as_deref(), settings.trust_mode)?;
    if let Some(path) = &args.client_auth_issuers {
        settings.issuers = Some(Store::load(path)?);
    }
    let system = match (&args.system_store, persona) {
        (Some(path), _) => Some(path.clone()),
        (None, PersonaName::DotnetLinux) => Some(PathBuf::from(SYSTEM_STORE)),
        (None, _) => None,
    };
    if let Some(path) = system {
        settings.system_store =
            Some(Store::load(&path).with_context(|| format!("system store {}", path.display()))?);
    }
    settings.policy.policy = parse::<Policy>(args.policy.as_deref(), settings.policy.policy)?;
    settings.policy.budget = args.budget.unwrap_or(settings.policy.budget);
    settings.policy.accounting =
        parse::<Accounting>(args.accounting.as_deref(), settings.policy.accounting)?;
    settings.policy.order = parse::<Order>(args.order.as_deref(), settings.policy.order)?;
    settings.client_auth = parse::<ClientAuth>(args.client_auth.as_deref(), settings.client_auth)?;
    settings.tls_version = parse::<TlsVersion>(args.tls.as_deref(), settings.tls_version)?;
    settings.max_fragment = args.max_fragment.unwrap_or(settings.max_fragment);
    settings.layout = parse::<Layout>(args.layout.as_deref(), settings.layout)?;
    settings.keylog = std::env::var_os("SSLKEYLOGFILE").is_some();
    settings.events_file = args.events.clone();
    settings.log_file = args.log.clone();
    settings.require_tls = args.require_tls.unwrap_or(true);
    if let Some(h) = &args.hostname {
        settings.hostname = h.clone();
    }
    if let Some(n) = args.max_message_size {
        settings.limits.max_message = n;
    }
    settings.max_connections = args.max_connections.unwrap_or(settings.max_connections);
    settings.max_per_address = args.max_per_address.unwrap_or(settings.max_per_address);
    settings.http = args.http;
    let seconds = |flag: Option<u64>, default: Duration| flag.map_or(default, Duration::from_secs);
    settings.idle_timeout = seconds(args.idle_timeout, settings.idle_timeout);
    settings.pre_tls_timeout = seconds(args.pre_tls_timeout, settings.pre_tls_timeout);
    settings.handshake_timeout = seconds(args.handshake_timeout, settings.handshake_timeout);
    settings.data_timeout = seconds(args.data_timeout, settings.data_timeout);
    settings.session_lifetime = seconds(args.session_lifetime, settings.session_lifetime);
    settings.max_session_bytes = args.max_session_bytes.or(settings.max_session_bytes);
    settings.faults = lab_server::faults::parse_all(args.fault.as_deref().unwrap_or_default())?;
    settings.fault_seed = args.fault_seed;
    let grace = Duration::from_secs(args.grace.unwrap_or(30));

    let server = Server::start(settings).await?;
    print!("{}", render_report(server.report()));
    print!("{}", render_persona(server.persona_report()));
    for entry in server.startup_log() {
        println!("{entry}");
    }
    {
        let faults = server.faults().lock();
        if !faults.faults().is_empty() {
            let specs: Vec<String> = faults.faults().iter().map(ToString::to_string).collect();
            println!(
                "faults: {} (seed {}; --fault-seed {} repeats the draws)",
                specs.join(", "),
                faults.seed(),
                faults.seed()
            );
        }
    }
    println!("listening on {}", server.local_addr());
    if let Some(at) = server.http_addr() {
        println!("inspector on http://{at}/ (JSON under http://{at}/api/)");
    }
    let mut events = server.subscribe();
    let log_file = args.log.clone();
    let printer = tokio::spawn(async move {
        loop {
            let line = match events.recv().await {
                Ok(ev) => summary(&ev),
                // A terminal slower than the connections: say what was
                // skipped and go on (the events file has every one).
                Err(RecvError::Lagged(n)) => {
                    format!("({n} connection summaries skipped: the printer fell behind)")
                }
                Err(RecvError::Closed) => break,
            };
            println!("{line}");
            if let Some(path) = &log_file {
                append(path, &line).await;
            }
        }
    });
    wait_for_signal().await;
    println!("stopping: no new connections; up to {grace:?} for transactions in flight");
    server.shutdown(grace).await;
    // The server is gone, so the stream closes once the printer has shown
    // the last sessions.
    if tokio::time::timeout(Duration::from_secs(5), printer)
        .await
        .is_err()
    {
        tracing::warn!("the printer did not finish within 5 s");
    }
    Ok(())
}

async fn append(path: &Path, line: &str) {
    use tokio::io::AsyncWriteExt;
    let written = async {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        f.write_all(format!("{line}\n").as_bytes()).await?;
        f.flush().await
    }
    .await;
    if let Err(e) = written {
        tracing::error!("log file {}: {e}", path.display());
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Finds each tracked CA in the store by thumbprint.
fn track(store: &Store, files: &[PathBuf]) -> Result<Vec<(String, usize)>> {
    let mut named = Vec::new();
    for file in files {
        for root in Store::load(file)?.into_roots() {
            let label = root.subject_text();
            match store.roots().iter().position(|r| r.sha1() == root.sha1()) {
                Some(i) => named.push((label, i)),
                None => bail!(
                    "{}: {label} is not in the store, so the server would not trust it",
                    file.display()
                ),
            }
        }
    }
    Ok(named)
}

fn render_report(r: &Report) -> String {
    let s = &r.settings;
    let mut out = format!(
        "CA-list policy {} (budget {} bytes, {} accounting, {} order), TLS {}\n\
         roots in store: {}; names sent: {}; dropped: {}\n\
         CA list: {} bytes of {} in the store; CertificateRequest: {} bytes, {} record(s) at {} bytes\n",
        s.policy,
        s.budget,
        s.accounting,
        s.order,
        r.shape.version,
        r.roots,
        r.kept,
        r.dropped,
        r.list_bytes,
        r.store_list_bytes,
        r.message_bytes,
        r.records,
        r.max_fragment,
    );
    for (label, index) in &r.named {
        match index {
            Some(i) => out.push_str(&format!("{label}: sent, position {i}\n")),
            None => out.push_str(&format!("{label}: DROPPED from the list\n")),
        }
    }
    out
}

fn render_persona(p: &PersonaReport) -> String {
    let mut out = format!(
        "persona {}: CertificateRequest overhead names + {} bytes{}\n",
        p.name,
        p.overhead,
        p.real_overhead.map_or(String::new(), |r| format!(
            " (the real server: names + {r})"
        ))
    );
    out.push_str(&format!("  difference: {}\n", p.difference));
    for note in &p.notes {
        out.push_str(&format!("  {note}\n"));
    }
    out
}

fn summary(ev: &ConnectionEvent) -> String {
    let tls = match &ev.handshake {
        None => "no TLS".to_owned(),
        Some(h) if h.outcome == "ok" => format!(
            "{} ok, client certificate {}",
            ev.tls_version.as_deref().unwrap_or("TLS"),
            ev.client_certificate
                .as_ref()
                .map_or("none".to_owned(), |c| c.subject.clone())
        ),
        Some(h) => format!(
            "handshake failed: {}",
            h.error.as_deref().unwrap_or("unknown")
        ),
    };
    let cr = ev.certificate_request.as_ref().map_or(String::new(), |c| {
        format!(
            "; CertificateRequest {} bytes in {} record(s), {} names",
            c.bytes, c.records, c.ca_names
        )
    });
    let faults = if ev.faults.is_empty() {
        String::new()
    } else {
        format!("; faults: {}", ev.faults.join("; "))
    };
    format!(
        "connection {} from {}: {tls}{cr}; {} stored{faults}; {}",
        ev.id,
        ev.peer,
        ev.stored.len(),
        ev.end
    )
}
