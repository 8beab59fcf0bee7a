//! Real client stacks against lab-server, each compared with the um-sim
//! preset that models it (issue 10, item 5; DESIGN.md 2a).
//!
//! One row per stack: its probe (`peers/<stack>/run`, peers/README.md), the
//! preset it verifies and the TLS version. For each row, lab-server runs
//! in-process (policy `full`, TLS 1.2, per-message records) on a store sized
//! so that the CertificateRequest body is exactly the size the case wants
//! (checked against lab-server's report and the bytes its event says went
//! out), and five cases run:
//! - `threshold`: the largest body the preset lets through (for
//!   `max-body=N`: N), capped at the largest list lab-server can send when the
//!   limit lies beyond the protocol (names <= 65,535 bytes);
//! - `over`: one byte more, or, past the protocol, proof that lab-server
//!   refuses to send it;
//! - `listed`, `unlisted`: a small list with and without the client's CA
//!   (dropped by Schannel-style truncation; the server still trusts it);
//! - `two_tier`: the two-tier lab PKI, the client presenting leaf + issuing
//!   CA, the list naming only the root.
//!
//! Each asserts that the real client's outcome equals the preset's
//! prediction (`Profile::judge` on the request's facts, then the issuer rule
//! over the chain) and equals um-sim's own verdict, run in-process with that
//! preset against the same server; where um-sim's own rustls limit comes
//! first (near 64 KB of names), um-sim must say own-stack-limit. A client
//! that fails for the limit must print what the preset says it prints, and
//! the server must have received the preset's alert.
//!
//! TLS 1.3 rows are named `<stack>-tls13::<case>`: there um-sim's tap
//! decrypts the request (um-sim README) and judges it as in TLS 1.2.
//!
//! A missing tool skips its row with a printed reason, and fails under
//! CI=true. Each probe is built once per run (`run --build-only`).
//! `-- --ignored measure` bisects each real client's threshold instead.

#[path = "../common/mod.rs"]
mod common;

mod case;
mod measure;
mod probe;
mod sizing;
mod versions;

use std::sync::OnceLock;

use case::{Case, Row};
use lab_server::policy::TlsVersion;
use libtest_mimic::{Arguments, Failed, Trial};
use probe::Unavailable;

/// The stacks, one line each.
const ROWS: &[Row] = &[
    Row {
        stack: "openssl",
        preset: "openssl3",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "python",
        preset: "openssl3",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "gnutls",
        preset: "gnutls37",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "node",
        preset: "openssl3",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "java",
        preset: "java17",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "go",
        preset: "go",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "mbedtls",
        preset: "mbedtls-3.6.2",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "wolfssl",
        preset: "wolfssl5",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "nss",
        preset: "nss",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "erlang",
        preset: "erlang-tls12",
        tls: TlsVersion::Tls12,
    },
    Row {
        stack: "erlang",
        preset: "erlang-tls13",
        tls: TlsVersion::Tls13,
    },
    // TLS 1.3: the request is encrypted; um-sim's tap decrypts it and judges
    // the preset's limit on it, and the real client shows whether its limit
    // holds there too.
    Row {
        stack: "java",
        preset: "java17",
        tls: TlsVersion::Tls13,
    },
    Row {
        stack: "go",
        preset: "go",
        tls: TlsVersion::Tls13,
    },
];

/// One runtime for every trial (each blocks on it from its own thread).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn trial(row: Row, case: Case) -> Result<(), Failed> {
    let script = match probe::ready(row.stack) {
        Ok(s) => s,
        Err(Unavailable::Missing(why)) if !probe::under_ci() => {
            println!("skipped {}::{}: {why}", row.stack, case.name());
            return Ok(());
        }
        Err(Unavailable::Missing(why)) => {
            return Err(format!("{}: {why} (CI=true: a missing tool fails)", row.stack).into());
        }
        Err(Unavailable::Broken(why)) => return Err(why.into()),
    };
    let summary = runtime().block_on(case::run(row, case, &script))?;
    println!("{summary}");
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = ROWS
        .iter()
        .flat_map(|&row| {
            Case::ALL.into_iter().map(move |case| {
                Trial::test(format!("{}::{}", row.name(), case.name()), move || {
                    trial(row, case)
                })
            })
        })
        .collect();
    trials.push(Trial::test("versions::schannel_on_a_tls13_server", || {
        let summary = runtime().block_on(versions::schannel_negotiates_tls12())?;
        println!("{summary}");
        Ok(())
    }));
    trials.push(Trial::test("versions::java17_on_a_tls13_server", || {
        let summary = runtime().block_on(versions::java_judged_in_tls13())?;
        println!("{summary}");
        Ok(())
    }));
    trials.push(
        Trial::test("measure", || measure::run(ROWS).map_err(Failed::from)).with_ignored_flag(true),
    );
    libtest_mimic::run(&args, trials).exit();
}
