//! `um-sim`: the Exchange UM stand-in. `enqueue` fills a voicemail queue
//! folder; `submit` drains it over SMTP + STARTTLS with a client certificate;
//! `profiles` lists the client presets.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use um_sim::client::{ClientSettings, Identity};
use um_sim::profile::Profile;
use um_sim::queue::{EnqueueSpec, Queue, enqueue};
use um_sim::submit::{self, SubmitSettings, Summary};

/// The Exchange UM stand-in of umlab: a voicemail queue and its SMTP submitter.
#[derive(Parser)]
#[command(name = "um-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Synthesize voicemails (header + WAV audio) into a queue folder.
    Enqueue {
        /// Queue folder.
        #[arg(long)]
        queue: PathBuf,
        /// Number of voicemails.
        #[arg(long)]
        count: u64,
        /// Length of each recording in seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Recipient address.
        #[arg(long, default_value = "user@lab.test")]
        to: String,
        /// Seed: GUIDs, callers and audio follow from it. Random when absent.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Submit the queue to an SMTP server (exit 0: all delivered; 1: some
    /// stay queued or went to badvoicemail/; 2: usage or configuration error).
    Submit {
        /// Queue folder.
        #[arg(long)]
        queue: PathBuf,
        /// Server, HOST:PORT.
        #[arg(long)]
        server: String,
        /// Client certificate chain (PEM), e.g. um.pem.
        #[arg(long)]
        cert: PathBuf,
        /// Client key (PEM), e.g. um.key.
        #[arg(long)]
        key: PathBuf,
        /// CA certificate(s) to verify the server with (PEM), e.g. ca.pem.
        #[arg(long)]
        server_ca: PathBuf,
        /// Name the server certificate must carry [default: the host of --server].
        #[arg(long)]
        server_name: Option<String>,
        /// Client profile: a preset of `um-sim profiles` (schannel-2008r2,
        /// alias schannel, java17, openssl3, mbedtls-3.6.3, ...), lenient,
        /// java17:maxHandshakeMessageSize=N, or rules joined by +
        /// (issuer-listed, one-record, max-body=N, max-handshake=N,
        /// max-buffer=N).
        #[arg(long, default_value = "schannel")]
        profile: Profile,
        /// Keep running: watch the queue and retry failed items.
        #[arg(long)]
        watch: bool,
        /// Attempts (across runs) after which an item moves to badvoicemail/
        /// (a 5yz SMTP reply moves it there at once: RFC 5321 4.2.1).
        #[arg(long, default_value_t = 10)]
        retries: u32,
        /// Seconds before a failed item is tried again (with --watch).
        #[arg(long, default_value_t = 30)]
        retry_delay: u64,
        /// Items submitted at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Envelope sender.
        #[arg(long, default_value = "um@um.lab.test")]
        from: String,
        /// Name sent in EHLO.
        #[arg(long, default_value = "um.lab.test")]
        helo: String,
        /// Seconds to wait for a connection, a reply or a handshake.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// JSON-lines file, one record per attempt.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Print the client presets: per stack its TLS versions, rules, limit,
    /// issuer rule, what it prints, its sources and what is verified here.
    Profiles {
        /// JSON instead of a Markdown table.
        #[arg(long)]
        json: bool,
    },
}

/// The presets, one per client stack of DESIGN.md 2a.
fn profiles(json: bool) -> Result<ExitCode> {
    if json {
        say(&serde_json::to_string_pretty(&um_sim::presets::rows())?);
    } else {
        say(um_sim::presets::markdown().trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            fail(&format!("tokio runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            fail(&format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (env-filter syntax; default
/// `um_sim=warn`): without it, errors the submitter can only log (an events
/// file it cannot write, a closed stdout) would be invisible.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("um_sim=warn"));
    // Fails only when a subscriber is already installed, which then logs.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

/// The one-line error report. Writing to stderr may fail too (closed): then
/// there is nowhere left to say it, and the exit code speaks.
fn fail(message: &str) {
    let text = certgen::error::one_line(message);
    let _ = writeln!(std::io::stderr(), "um-sim: error: {text}");
}

/// Prints a line on stdout. A stdout nobody reads (a closed pipe) is logged
/// once instead of panicking, as println! would, and the run goes on.
fn say(line: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        && !LOGGED.swap(true, Ordering::Relaxed)
    {
        tracing::error!(
            "cannot write to stdout: {e}; the run goes on, its results in the queue folder and the events file"
        );
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Profiles { json } => profiles(json),
        Command::Enqueue {
            queue,
            count,
            seconds,
            to,
            seed,
        } => {
            if !to.contains('@') {
                bail!("--to {to:?} is not an address");
            }
            let q = Queue::open(&queue)?;
            let seed = match seed {
                Some(s) => s,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64 ^ u64::from(std::process::id())),
            };
            let spec = EnqueueSpec {
                count,
                seconds,
                to,
                seed,
                sample_rate: 8_000,
            };
            let written = tokio::task::spawn_blocking(move || enqueue(&q, &spec)).await??;
            say(&format!(
                "queued {} voicemails of {seconds} s in {} (seed {seed})",
                written.len(),
                queue.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit {
            queue,
            server,
            cert,
            key,
            server_ca,
            server_name,
            profile,
            watch,
            retries,
            retry_delay,
            concurrency,
            from,
            helo,
            timeout,
            events,
        } => {
            let read = |path: &std::path::Path| {
                certgen::fsutil::read_capped(path, certgen::fsutil::MAX_TEXT_FILE)
            };
            let cert_pem = read(&cert)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}", cert.display()))?;
            let key_pem = read(&key)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .with_context(|| format!("{}: no usable private key", key.display()))?;
            let identity = Identity::new(chain, key)?;
            let mut roots = rustls::RootCertStore::empty();
            let ca_pem = read(&server_ca)?;
            for ca in CertificateDer::pem_slice_iter(&ca_pem) {
                let ca = ca.with_context(|| format!("{}", server_ca.display()))?;
                roots
                    .add(ca)
                    .with_context(|| format!("{}", server_ca.display()))?;
            }
            let host = server_name.unwrap_or_else(|| {
                server
                    .rsplit_once(':')
                    .map_or(server.as_str(), |(h, _)| h)
                    .trim_matches(['[', ']'])
                    .to_owned()
            });
            let server_name = ServerName::try_from(host.clone())
                .with_context(|| format!("server name {host:?}"))?;
            let settings = Arc::new(SubmitSettings {
                client: ClientSettings {
                    server: server.clone(),
                    server_name,
                    server_roots: Arc::new(roots),
                    helo,
                    from,
                    connect_timeout: Duration::from_secs(timeout),
                    io_timeout: Duration::from_secs(timeout),
                },
                identity,
                profile,
                max_attempts: retries.max(1),
                retry_delay: Duration::from_secs(retry_delay),
                concurrency,
                events_file: events,
            });
            let q = Queue::open(&queue)?;
            let report: submit::Report = Arc::new(|line: String| say(&line));
            let mut cooling = HashMap::new();
            let mut total = Summary::default();
            loop {
                // Counting only: scanning here would move malformed items to
                // badvoicemail/ before the pass could count them.
                let waiting = waiting(&q).await?;
                let bar = certgen::progress::bar(
                    waiting as u64,
                    "{spinner} voicemails {pos}/{len} [{bar:40}]",
                );
                let summary =
                    submit::pass(&q, &settings, &mut cooling, &report, &|n| bar.inc(n)).await?;
                bar.finish_and_clear();
                total.delivered += summary.delivered;
                total.bad += summary.bad;
                total.queued = summary.queued;
                if !watch {
                    break;
                }
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            let left = waiting(&q).await?;
            say(&format!(
                "delivered {}, still queued {left}, moved to badvoicemail/ {}",
                total.delivered, total.bad
            ));
            Ok(if left == 0 && total.bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Items waiting in the queue, counted on the blocking pool (it reads a folder).
async fn waiting(q: &Queue) -> Result<usize> {
    let q = q.clone();
    Ok(tokio::task::spawn_blocking(move || q.waiting()).await??)
}
