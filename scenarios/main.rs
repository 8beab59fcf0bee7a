//! `umlab`: which trust-store size breaks voicemail delivery, measured over
//! the wire, for which server policy and client stack, why, and what fixes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use certgen::Store;
use clap::{Parser, Subcommand};
use lab_server::policy::{self, MessageShape, Policy, Settings, TlsVersion};
use umlab::engine::{Lab, remediate};
use umlab::model::{Resolved, Scenario};
use umlab::{ScenarioResult, report};

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Seed of the lab PKI (the enterprise CA, the UM and Hub certificates).
const PKI_SEED: u64 = 2013;

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
    },
    /// Analyse a real store: which policies and client stacks break, which
    /// roots are dropped, and the remediation.
    Analyze {
        /// PEM bundle, folder or .p7b.
        #[arg(long)]
        store: PathBuf,
        /// The client certificate's issuer (PEM): its fate in the list.
        #[arg(long)]
        issuer: Option<PathBuf>,
        /// CAs that must stay in any pruned store (PEM; repeatable).
        #[arg(long)]
        must_keep: Vec<PathBuf>,
        /// Schannel's budget.
        #[arg(long, default_value_t = 16_384)]
        budget: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("umlab: error: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
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

async fn run(cli: Cli) -> Result<ExitCode> {
    let scenarios: Vec<Resolved> = match cli.command {
        None => BUILTIN
            .iter()
            .map(|(name, text)| {
                let s: Scenario =
                    toml::from_str(text).with_context(|| format!("built-in {name}"))?;
                Resolved::new(s).map_err(|e| anyhow::anyhow!("built-in {name}: {e}"))
            })
            .collect::<Result<_>>()?,
        Some(Command::Run { files }) => files
            .iter()
            .map(|f| Resolved::load(f).map_err(anyhow::Error::from))
            .collect::<Result<_>>()?,
        Some(Command::Sweep {
            from,
            to,
            step,
            profile,
            policy,
            client,
            ca,
            seed,
        }) => {
            let text = format!(
                "name = \"sweep\"\ndescription = \"ad hoc sweep\"\n[store]\nprofile = {profile:?}\n\
                 range = {{ from = {from}, to = {to}, step = {step} }}\nseed = {seed}\nca = {ca:?}\n\
                 [server]\npolicy = {policy:?}\n[client]\nprofile = {client:?}\n"
            );
            let s: Scenario = toml::from_str(&text)?;
            vec![Resolved::new(s).map_err(anyhow::Error::msg)?]
        }
        Some(Command::Analyze {
            store,
            issuer,
            must_keep,
            budget,
        }) => {
            print!(
                "{}",
                analyze(&store, issuer.as_deref(), &must_keep, budget)?
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut lab = Lab::new(PKI_SEED)?;
    let total: u64 = scenarios
        .iter()
        .map(|r| {
            r.sizes.len() as u64 * (r.organisation_seeds() + r.policies.len() as u64 - 1)
                + u64::from(r.scenario.break_point.is_some())
        })
        .sum();
    let bar = certgen::progress::bar(total, "{spinner} {msg} stores {pos}/{len} [{bar:30}]");
    let mut results: Vec<ScenarioResult> = Vec::new();
    for r in &scenarios {
        bar.set_message(r.scenario.name.clone());
        let result = umlab::run(r, &mut lab, &|n| bar.inc(n)).await?;
        bar.suspend(|| println!("{}", report::table(&result)));
        results.push(result);
    }
    bar.finish_and_clear();
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

/// The verdict on a user's store: analytic, from the encodings (use
/// lab-server with the store to see it on the wire).
fn analyze(
    path: &Path,
    issuer: Option<&Path>,
    must_keep: &[PathBuf],
    budget: usize,
) -> Result<String> {
    use std::fmt::Write as _;
    let store = Store::load(path)?;
    let find = |file: &Path| -> Result<Vec<usize>> {
        let mut at = Vec::new();
        for root in Store::load(file)?.into_roots() {
            match store
                .roots()
                .iter()
                .position(|r| r.subject_der() == root.subject_der())
            {
                Some(i) => at.push(i),
                None => bail!(
                    "{}: {} is not in the store",
                    file.display(),
                    root.subject_text()
                ),
            }
        }
        Ok(at)
    };
    let issuer_at = issuer.map(find).transpose()?.unwrap_or_default();
    let mut keep = issuer_at.clone();
    for f in must_keep {
        keep.extend(find(f)?);
    }
    let entries = policy::entries(&store);
    let shape: MessageShape = lab_server::tls::message_shape(TlsVersion::Tls12);
    let mut out = String::new();
    let list = store.ca_list_bytes();
    writeln!(
        out,
        "store: {} ({} roots, {} bytes of names in TLS 1.2)",
        path.display(),
        store.len(),
        list
    )?;
    let full_body = shape.body_len(list);
    let schannel = Settings {
        policy: Policy::Schannel,
        budget,
        ..Settings::default()
    };
    let plan = policy::plan(&entries, &schannel, &shape, 16_389, &[])?;
    writeln!(
        out,
        "Schannel server (cap {budget}): sends {} of {} names ({} bytes){}",
        plan.report.kept,
        store.len(),
        plan.report.list_bytes,
        if plan.report.truncated {
            "; event 36885, the rest is dropped"
        } else {
            "; nothing dropped"
        }
    )?;
    let dropped: Vec<usize> = (0..store.len())
        .filter(|i| !plan.sent.contains(i))
        .collect();
    if !dropped.is_empty() {
        writeln!(out, "  dropped ({}), in store order:", dropped.len())?;
        for &i in dropped.iter().take(10) {
            if let Some(r) = store.roots().get(i) {
                writeln!(out, "    {i:>5}: {}", r.subject_text())?;
            }
        }
        if dropped.len() > 10 {
            writeln!(out, "    ... and {} more", dropped.len() - 10)?;
        }
    }
    for &i in &issuer_at {
        let name = store
            .roots()
            .get(i)
            .map(|r| r.subject_text())
            .unwrap_or_default();
        match plan.sent.iter().position(|&s| s == i) {
            Some(k) => writeln!(
                out,
                "  issuer {name}: listed at position {k}: Schannel, Java and Exchange clients can authenticate"
            )?,
            None => writeln!(
                out,
                "  issuer {name}: DROPPED (store position {i}): Schannel, Exchange and Java clients send no certificate and fail (the incident)"
            )?,
        }
    }
    writeln!(
        out,
        "full list (OpenSSL or rustls server): {list} bytes of names, CertificateRequest body {full_body} bytes"
    )?;
    for (who, limit) in [
        (
            "Schannel client before the fragmentation update (one record)",
            16_384 - 4,
        ),
        ("BoringSSL (16,384-byte body)", 16_384),
        ("Java 17 (32,768-byte body)", 32_768),
        ("TLS 1.2 itself (65,535 bytes of names)", 65_535),
    ] {
        let over = if who.starts_with("TLS") {
            list > limit
        } else {
            full_body > limit
        };
        writeln!(out, "  {who}: {}", if over { "BREAKS" } else { "fits" })?;
    }
    let fix = remediate(&store, budget, &keep);
    if plan.report.truncated {
        if fix.fits {
            writeln!(
                out,
                "remediation: remove {} root(s) (largest subjects first{}) to fit {budget} bytes ({} after); or set SendTrustedIssuerList = 0",
                fix.remove.len(),
                if keep.is_empty() {
                    String::new()
                } else {
                    format!(", keeping {} required", keep.len())
                },
                fix.list_bytes_after
            )?;
            for &i in fix.remove.iter().take(20) {
                if let Some(r) = store.roots().get(i) {
                    writeln!(
                        out,
                        "  remove {:>4}: {} ({} bytes)",
                        i,
                        r.subject_text(),
                        r.subject_der().len()
                    )?;
                }
            }
            if fix.remove.len() > 20 {
                writeln!(out, "  ... and {} more", fix.remove.len() - 20)?;
            }
        } else {
            writeln!(
                out,
                "remediation: the required roots alone exceed {budget} bytes; set SendTrustedIssuerList = 0"
            )?;
        }
    } else {
        writeln!(
            out,
            "verdict: the whole list fits {budget} bytes; no Schannel truncation"
        )?;
    }
    Ok(out)
}
