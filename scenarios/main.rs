//! `umlab`: which trust-store size breaks voicemail delivery, measured over
//! the wire, for which server policy and client stack, why, and what fixes it.
//! This file parses the command line and prints; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use certgen::pki::Shape;
use certgen::wire::SCHANNEL_LIMIT;
use clap::{Parser, Subcommand};
use umlab::analyze::{Request, analyze};
use umlab::engine::Lab;
use umlab::fix::Windows;
use umlab::model::{Resolved, Scenario, Sweep};
use umlab::probe::{self, Starttls, TlsChoice};
use umlab::{PKI_SEED, ScenarioResult, report};

/// Reproduces the Schannel CA-list truncation failure family over real TLS and
/// shows which trust-store size breaks voicemail delivery.
#[derive(Parser)]
#[command(name = "umlab", version, about)]
struct Cli {
    /// Report folder (report.json, report.csv, one SVG chart per scenario).
    #[arg(long, global = true, default_value = "umlab-report")]
    report: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (TOML, see scenarios/README.md).
    Run {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Run them with this lab PKI instead of the files' own `[pki]
        /// shape`: one-tier, two-tier or self-signed.
        #[arg(long)]
        shape: Option<Shape>,
    },
    /// Sweep store sizes for one setup, without writing a file.
    Sweep {
        /// First size.
        #[arg(long, default_value_t = 10)]
        from: usize,
        /// Last size.
        #[arg(long, default_value_t = 400)]
        to: usize,
        /// Step.
        #[arg(long, default_value_t = 30)]
        step: usize,
        /// Subject profile.
        #[arg(long, default_value = "realistic")]
        profile: String,
        /// Server policy.
        #[arg(long, default_value = "schannel")]
        policy: String,
        /// Client profile.
        #[arg(long, default_value = "schannel")]
        client: String,
        /// Where the enterprise CA sits.
        #[arg(long, default_value = "last")]
        ca: String,
        /// Seed.
        #[arg(long, default_value_t = 2013)]
        seed: u64,
        /// The lab PKI: one-tier, two-tier (the store holds the root, the UM
        /// sends leaf + issuing CA) or self-signed.
        #[arg(long, default_value = "one-tier")]
        shape: Shape,
    },
    /// Analyse a real store: which policies and client stacks break, which
    /// roots are dropped, and the remediation.
    Analyze {
        /// PEM bundle, folder, .p7b or .sst.
        #[arg(long)]
        store: PathBuf,
        /// The client certificate's issuer (PEM): its fate in the list.
        #[arg(long)]
        issuer: Option<PathBuf>,
        /// CAs that must stay in any pruned store (PEM; repeatable).
        #[arg(long)]
        must_keep: Vec<PathBuf>,
        /// Schannel's budget.
        #[arg(long, default_value_t = SCHANNEL_LIMIT)]
        budget: usize,
        /// The Hub's Windows version: 2008r2 (the list is sent, cut at 16 KB)
        /// or 2012 (and later: no list by default; KB 2880390).
        #[arg(long, default_value = "2008r2")]
        windows: Windows,
        /// Write the fix's files here: a .reg file per registry choice, a
        /// PowerShell script per removal (backing up every root first), the
        /// enterprise CA files, and PLAN.txt (this report).
        #[arg(long)]
        emit: Option<PathBuf>,
    },
    /// Read a real server's CertificateRequest in one handshake and judge it
    /// for every client stack: exit 0 when every client passes, 1 when one
    /// fails, 2 on error.
    Probe {
        /// The server, HOST:PORT.
        target: String,
        /// STARTTLS dialogue: smtp, imap, pop3, ldap or none [default: by
        /// port: 25, 587, 2525 smtp; 143 imap; 110 pop3; 389 ldap; else none].
        #[arg(long)]
        starttls: Option<Starttls>,
        /// TLS version to offer: 1.2 (the request is read on the wire) or 1.3
        /// (encrypted: read on the wire and decrypted with the probe's own
        /// handshake secret).
        #[arg(long, default_value = "1.2")]
        tls: TlsChoice,
        /// A client certificate chain (PEM, leaf first) to present and check.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// The client certificate's issuer (PEM): is it listed?
        #[arg(long)]
        issuer: Option<PathBuf>,
        /// Verify the server's chain against these CAs (PEM) instead of the
        /// system roots (the probe goes on either way).
        #[arg(long)]
        server_ca: Option<PathBuf>,
        /// The server name to verify and send [default: the host].
        #[arg(long)]
        servername: Option<String>,
        /// Judge only these client presets (repeatable) [default: every
        /// preset and lenient].
        #[arg(long = "client")]
        clients: Vec<String>,
        /// Seconds allowed to connect, for each read and for the handshake
        /// (0.1 to 300).
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "umlab: error: {}",
                certgen::error::one_line(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let scenarios: Vec<Resolved> = match cli.command {
        None => Resolved::builtin()?,
        Some(Command::Run { files, shape }) => files
            .iter()
            .map(|f| {
                Resolved::load(f).map(|r| match shape {
                    Some(s) => r.with_shape(s),
                    None => r,
                })
            })
            .collect::<Result<_, _>>()?,
        Some(Command::Sweep {
            from,
            to,
            step,
            profile,
            policy,
            client,
            ca,
            seed,
            shape,
        }) => {
            let sweep = Sweep {
                shape,
                from,
                to,
                step,
                profile,
                policy,
                client,
                ca,
                seed,
            };
            vec![Resolved::new(Scenario::sweep(sweep)).map_err(anyhow::Error::msg)?]
        }
        Some(Command::Analyze {
            store,
            issuer,
            must_keep,
            budget,
            windows,
            emit,
        }) => {
            let request = Request {
                store,
                issuer,
                must_keep,
                budget,
                windows,
            };
            let analysis = analyze(&request)?;
            print!("{analysis}");
            if let Some(dir) = emit {
                let written = emit_fix(&dir, &analysis)?;
                println!(
                    "wrote {} file(s) to {}: {}",
                    written.len(),
                    dir.display(),
                    written.join(", ")
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Probe {
            target,
            starttls,
            tls,
            cert,
            key,
            issuer,
            server_ca,
            servername,
            clients,
            timeout,
            json,
        }) => {
            if !(0.1..=300.0).contains(&timeout) {
                anyhow::bail!("--timeout {timeout}: between 0.1 and 300 seconds");
            }
            let mut request = probe::Request::new(target);
            request.starttls = starttls;
            request.tls = tls;
            request.timeout = std::time::Duration::from_secs_f64(timeout);
            request.servername = servername;
            if let (Some(cert), Some(key)) = (&cert, &key) {
                request.identity = Some(probe::load_identity(cert, key)?);
            }
            if let Some(path) = &issuer {
                request.issuers = probe::load_issuers(path)?;
            }
            if let Some(path) = &server_ca {
                let certs = probe::load_certs(path, "--server-ca")?;
                request.server_ca = Some((format!("--server-ca {}", path.display()), certs));
            }
            request.presets = clients
                .iter()
                .map(|c| c.parse().map_err(anyhow::Error::msg))
                .collect::<Result<_>>()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow::anyhow!("tokio runtime: {e}"))?;
            let report = runtime.block_on(probe::probe(&request))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            return Ok(ExitCode::from(report.exit_code));
        }
    };
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| anyhow::anyhow!("tokio runtime: {e}"))?;
    let results = runtime.block_on(measure(&scenarios))?;
    let written = report::write_folder(&cli.report, &results)?;
    println!("report: {} ({})", cli.report.display(), written.join(", "));
    let problems: usize = results.iter().map(|r| r.problems.len()).sum();
    if problems > 0 {
        println!(
            "{problems} problem(s): prediction and measurement disagree, or an expectation failed"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the fixes' files and PLAN.txt into `dir` (created when missing),
/// each through a temporary name; returns their names.
fn emit_fix(dir: &std::path::Path, analysis: &umlab::analyze::Analysis) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let plan = analysis.to_string().replace('\n', "\r\n");
    let files = analysis
        .fixes
        .iter()
        .flat_map(|o| {
            o.files
                .iter()
                .map(|f| (f.name.as_str(), f.bytes.as_slice()))
        })
        .chain([("PLAN.txt", plan.as_bytes())]);
    for (name, bytes) in files {
        if written.iter().any(|w| w == name) {
            continue;
        }
        certgen::fsutil::write_atomic(&dir.join(name), bytes, certgen::fsutil::Access::Public)?;
        written.push(name.to_owned());
    }
    Ok(written)
}

/// Runs every scenario, printing each table as it finishes.
async fn measure(scenarios: &[Resolved]) -> Result<Vec<ScenarioResult>> {
    let mut lab = tokio::task::spawn_blocking(|| Lab::new(PKI_SEED)).await??;
    let total: u64 = scenarios.iter().map(Resolved::planned_stores).sum();
    let bar = certgen::progress::bar(total, "{spinner} {msg} stores {pos}/{len} [{bar:30}]");
    let mut results = Vec::new();
    for r in scenarios {
        bar.set_message(r.scenario.name.clone());
        let result = umlab::run(r, &mut lab, &|n| bar.inc(n)).await?;
        bar.suspend(|| println!("{}", report::table(&result)));
        results.push(result);
    }
    bar.finish_and_clear();
    Ok(results)
}
