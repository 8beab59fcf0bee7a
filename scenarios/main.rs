//! `umlab`: which trust-store size breaks voicemail delivery.
//!
//! The wire-measured scenarios arrive with lab-server and um-sim. Until then
//! this binary prints the analytic side only, labelled as such: for the
//! incident's stores (realistic subjects, enterprise CA enumerated last), the
//! size of the CA list and whether the CA's name survives Schannel's 16 KB cut.

use std::process::ExitCode;

use anyhow::Result;
use certgen::roots::{self, RootsSpec};
use certgen::wire::{JAVA_LIMIT, SCHANNEL_LIMIT, TLS12_LIMIT};
use certgen::{KeyAlg, Profile, pki};
use clap::Parser;

/// Store sizes of the incident: clean 2008 R2, after pruning, after rootsupd.
const INCIDENT_SIZES: [u64; 3] = [11, 85, 355];
/// Largest store the break-point scan considers.
const SCAN_MAX: u64 = 1_000;

/// Reproduces the Schannel CA-list truncation failure family and shows which
/// trust-store size breaks voicemail delivery.
#[derive(Parser)]
#[command(name = "umlab", version, about)]
struct Cli {
    /// Seed of the synthetic root subjects.
    #[arg(long, default_value_t = 2013)]
    seed: u64,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("umlab: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let ca = pki::generate(Some(cli.seed), KeyAlg::Ed25519)?.ca.root()?;
    // Store N is a prefix of store N + 1 for one seed, so one generation of the
    // largest store serves every size.
    let spec = RootsSpec {
        count: SCAN_MAX,
        seed: Some(cli.seed),
        profile: Profile::Realistic,
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let (all, _) = roots::generate(&spec, &|_| {})?;
    let sizes: Vec<usize> = all.roots().iter().map(|r| r.subject_der().len()).collect();
    let ca_len = ca.subject_der().len();

    // A store of `n` roots is n - 1 synthetic roots with the CA last; the CA is
    // advertised iff the whole list fits the budget.
    let list_bytes = |n: usize| {
        certgen::wire::ca_list_len(
            sizes
                .iter()
                .take(n.saturating_sub(1))
                .copied()
                .chain([ca_len]),
        )
    };
    println!("umlab: seed-2013 store sizes, analytic prediction only");
    println!(
        "(no TLS handshake is made yet: the wire measurement arrives with lab-server and um-sim)"
    );
    println!();
    println!(
        "{:>6}  {:>10}  {:>14}  {:>14}  {:>12}",
        "roots", "list bytes", "list <= 16,384", "list <= 32,768", "CA listed"
    );
    for n in INCIDENT_SIZES {
        let n = n as usize;
        let bytes = list_bytes(n);
        let verdict = |limit| if bytes <= limit { "yes" } else { "no" };
        println!(
            "{:>6}  {:>10}  {:>14}  {:>14}  {:>12}",
            n,
            bytes,
            verdict(SCHANNEL_LIMIT),
            verdict(JAVA_LIMIT),
            if bytes <= SCHANNEL_LIMIT {
                "yes"
            } else {
                "no: dropped"
            },
        );
    }
    println!();
    for (limit, who) in [
        (SCHANNEL_LIMIT, "list over 16,384 (Schannel drops the CA)"),
        (
            JAVA_LIMIT,
            "list over 32,768 (Java counts the whole body: a little earlier)",
        ),
        (TLS12_LIMIT, "list over 65,535 (TLS 1.2 bound)"),
    ] {
        match (2..=sizes.len() + 1).find(|&n| list_bytes(n) > limit) {
            Some(n) => println!(
                "break point: {who} from {n} roots ({} roots: {} bytes; {n} roots: {} bytes)",
                n - 1,
                list_bytes(n - 1),
                list_bytes(n)
            ),
            None => println!("break point: {who}: not within {SCAN_MAX} roots"),
        }
    }
    Ok(())
}
