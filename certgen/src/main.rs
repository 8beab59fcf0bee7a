//! `certgen`: generate root stores and the lab PKI, inspect and convert stores.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use certgen::fsutil::{Access, write_atomic};
use certgen::inspect::Inspection;
use certgen::pki::{self, Shape};
use certgen::roots::{self, RootsSpec};
use certgen::{KeyAlg, Position, Profile, Store};
use clap::{Parser, Subcommand};

/// Synthetic root CAs, the lab PKI and trust-store inspection for umlab.
#[derive(Parser)]
#[command(name = "certgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate N self-signed root CAs into DIR/roots.pem and DIR/manifest.json.
    Roots {
        /// Number of roots (at most 100,000).
        #[arg(long)]
        count: u64,
        /// Seed: the same seed gives byte-identical files. Without it, DNs use
        /// a random seed (printed) and keys come from the OS RNG (faster).
        #[arg(long)]
        seed: Option<u64>,
        /// Subject profile: realistic, short, long or fixed:LEN (20..=1000).
        #[arg(long, default_value = "realistic")]
        profile: Profile,
        /// Key algorithm: ecdsa-p256 or ed25519.
        #[arg(long, default_value = "ecdsa-p256")]
        key: KeyAlg,
        /// One shared key and placeholder self-signatures: for filler roots
        /// whose keys are never used (TLS stacks never check an anchor's
        /// self-signature).
        #[arg(long)]
        dn_only: bool,
        /// Add the certificates of this file (for example the lab's ca.pem).
        #[arg(long, value_name = "CERT")]
        insert: Option<PathBuf>,
        /// Where --insert puts them: first, last, an index, or thumbprint.
        #[arg(long, default_value = "last", requires = "insert")]
        at: Position,
        /// Also write DIR/roots.sst, the same roots as a Windows serialized
        /// store (for `certutil -addstore Root` or the certificates console).
        #[arg(long)]
        sst: bool,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue the lab PKI: ca.pem ca.key um.pem um.key hub.pem hub.key
    /// (+ issuing-ca.pem issuing-ca.key in the two-tier shape; no ca.key in
    /// the self-signed shape, where ca.pem is the UM certificate).
    Pki {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Seed: the same seed gives byte-identical files.
        #[arg(long)]
        seed: Option<u64>,
        /// Key algorithm: ecdsa-p256 or ed25519.
        #[arg(long, default_value = "ecdsa-p256")]
        key: KeyAlg,
        /// PKI shape: one-tier (root -> leaves), two-tier (root -> issuing CA
        /// -> leaves) or self-signed (Exchange's default certificates).
        #[arg(long, default_value = "one-tier")]
        shape: Shape,
    },
    /// Report a store's size against the 16 KB, 32 KB and 64 KB limits.
    Inspect {
        /// PEM bundle, DER certificate, .p7b, .sst, DN list, or a folder of them.
        store: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a store in another format, roots in the same order.
    Convert {
        /// PEM bundle, DER certificate, .p7b, .sst, DN list, or a folder of them.
        store: PathBuf,
        /// Output format: sst (Windows serialized store), pem (bundle) or
        /// dnlist (the subject names only, in hex).
        #[arg(long, value_enum)]
        to: Format,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// What `convert` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Windows serialized store, as `Export-Certificate -Type SST` writes.
    Sst,
    /// PEM bundle, as `roots` writes.
    Pem,
    /// DN list: the subject names alone, one per line (certgen/README.md).
    Dnlist,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "certgen: error: {}",
                certgen::error::one_line(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}

fn main_output(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`certgen inspect ... | head`) is the reader's choice.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("writing to stdout")?),
    }
}

fn run(command: Command) -> Result<()> {
    let mut out = String::new();
    run_into(command, &mut out)?;
    main_output(&out)
}

fn run_into(command: Command, out: &mut String) -> Result<()> {
    use std::fmt::Write as _;
    match command {
        Command::Roots {
            count,
            seed,
            profile,
            key,
            dn_only,
            insert,
            at,
            sst,
            out: dir,
        } => {
            // Read the CA to insert first: a bad file must fail before any work.
            let extra = insert
                .as_deref()
                .map(Store::load)
                .transpose()
                .context("--insert")?;
            let spec = RootsSpec {
                count,
                seed,
                profile,
                key,
                dn_only,
            };
            let bar = certgen::progress::bar(
                count,
                "{spinner} roots {pos}/{len} [{bar:40}] {per_sec} eta {eta}",
            );
            let (mut store, generator) = roots::generate(&spec, &|n| bar.inc(n))?;
            bar.finish_and_clear();
            let mut inserted = Vec::new();
            if let Some(extra) = extra {
                for (k, root) in extra.into_roots().into_iter().enumerate() {
                    let pos = match at {
                        Position::Index(i) => Position::Index(i + k),
                        other => other,
                    };
                    let subject = root.subject_text();
                    inserted.push((store.insert(root, pos), subject));
                }
            }
            anyhow::ensure!(
                !store.is_empty(),
                "the store would be empty: give --count of at least 1, or --insert"
            );
            // Encoded before anything is written: a refusal leaves no files.
            let sst_path = dir.join("roots.sst");
            let sst =
                sst.then(|| store.to_sst())
                    .transpose()
                    .map_err(|problem| certgen::Error::Sst {
                        path: sst_path.clone(),
                        problem,
                    })?;
            store.save(&dir, Some(&generator))?;
            if let Some(bytes) = &sst {
                write_atomic(&sst_path, bytes, Access::Public)?;
            }
            writeln!(
                out,
                "wrote {} roots to {} (seed {}{}, profile {}, key {}{})",
                store.len(),
                dir.join("roots.pem").display(),
                generator.seed,
                if generator.seeded_keys {
                    ""
                } else {
                    ", keys not seeded"
                },
                generator.profile,
                generator.key,
                if dn_only {
                    ", dn-only placeholder signatures"
                } else {
                    ""
                },
            )?;
            if sst.is_some() {
                writeln!(
                    out,
                    "wrote {} as a Windows serialized store",
                    sst_path.display()
                )?;
            }
            for (index, subject) in inserted {
                writeln!(out, "inserted {subject} at index {index}")?;
            }
            writeln!(
                out,
                "certificate_authorities: {} bytes for {} names",
                store.ca_list_bytes(),
                store.len()
            )?;
            Ok(())
        }
        Command::Pki {
            out: dir,
            seed,
            key,
            shape,
        } => {
            let lab = pki::generate_shape(seed, key, shape)?;
            let removed = lab.save_report(&dir)?;
            writeln!(
                out,
                "wrote {} to {} ({shape} PKI)",
                lab.file_names().join(" "),
                dir.display()
            )?;
            if !removed.is_empty() {
                writeln!(out, "removed {}, left by another shape", removed.join(" "))?;
            }
            let store = match shape {
                Shape::SelfSigned => "ca.pem (the UM certificate itself)",
                Shape::OneTier => "ca.pem (the enterprise root CA)",
                Shape::TwoTier => "ca.pem (the root only; the UM sends its issuing CA)",
            };
            writeln!(out, "the Hub's store must hold {store}")?;
            writeln!(
                out,
                "verify the Hub with {} (um-sim --server-ca, openssl -CAfile)",
                lab.hub_anchor_file()
            )?;
            Ok(())
        }
        Command::Convert {
            store,
            to,
            out: file,
        } => {
            let loaded = Store::load(&store)?;
            let what = match to {
                Format::Sst => {
                    loaded.save_sst(&file)?;
                    "a Windows serialized store"
                }
                Format::Pem => {
                    let bundle: String = loaded.roots().iter().map(|r| r.to_pem()).collect();
                    write_atomic(&file, bundle.as_bytes(), Access::Public)?;
                    "a PEM bundle"
                }
                Format::Dnlist => {
                    let header = format!("{} roots, from {}", loaded.len(), store.display());
                    let friendly: Vec<Option<String>> =
                        loaded.roots().iter().map(|r| r.display_name()).collect();
                    let text = certgen::dnlist::write(
                        &[header.as_str()],
                        loaded
                            .roots()
                            .iter()
                            .zip(&friendly)
                            .map(|(r, f)| (r.subject_der(), f.as_deref())),
                    );
                    write_atomic(&file, text.as_bytes(), Access::Public)?;
                    "a DN list"
                }
            };
            writeln!(
                out,
                "wrote {} roots to {} as {what}",
                loaded.len(),
                file.display()
            )?;
            Ok(())
        }
        Command::Inspect { store, json } => {
            let loaded = Store::load(&store)?;
            let report = Inspection::of(&loaded);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                out.push_str(&report.to_text());
            }
            Ok(())
        }
    }
}
