//! The figures `certgen inspect` reports for a store.

use std::fmt::Write;

use serde::Serialize;

use crate::store::{Store, hex};
use crate::wire::{JAVA_LIMIT, NAME_LEN_PREFIX, SCHANNEL_LIMIT, TLS12_LIMIT};

/// A store summarised for the CA-list limits that break real peers.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// Number of roots.
    pub count: usize,
    /// Sum of subject DER lengths.
    pub subject_bytes: usize,
    /// TLS 1.2 certificate_authorities size: sum of 2 + DER length.
    pub ca_list_bytes: usize,
    /// Whether the list fits each limit.
    pub fits: Vec<Fit>,
    /// One row per root, in store order.
    pub roots: Vec<InspectedRoot>,
}

/// The list against one limit.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    /// The limit in bytes.
    pub limit: usize,
    /// Who imposes it.
    pub who: &'static str,
    /// Whether the whole list fits.
    pub fits: bool,
    /// How many names, in store order, fit before the limit is reached.
    pub names_within: usize,
}

/// One root.
#[derive(Clone, Debug, Serialize)]
pub struct InspectedRoot {
    /// Position in the store.
    pub index: usize,
    /// Subject as text.
    pub subject: String,
    /// Subject DER length.
    pub der_len: usize,
    /// SHA-1 thumbprint, hex.
    pub sha1: String,
}

impl Inspection {
    /// Computes the figures.
    pub fn of(store: &Store) -> Inspection {
        let ca_list_bytes = store.ca_list_bytes();
        let fits = [
            (SCHANNEL_LIMIT, "Schannel CA-list cap"),
            (JAVA_LIMIT, "Java 17 handshake message limit"),
            (TLS12_LIMIT, "TLS 1.2 certificate_authorities bound"),
        ]
        .into_iter()
        .map(|(limit, who)| {
            let mut used = 0;
            let names_within = store
                .roots()
                .iter()
                .take_while(|r| {
                    used += NAME_LEN_PREFIX + r.subject_der().len();
                    used <= limit
                })
                .count();
            Fit {
                limit,
                who,
                fits: ca_list_bytes <= limit,
                names_within,
            }
        })
        .collect();
        Inspection {
            count: store.len(),
            subject_bytes: store.subject_bytes(),
            ca_list_bytes,
            fits,
            roots: store
                .roots()
                .iter()
                .enumerate()
                .map(|(index, r)| InspectedRoot {
                    index,
                    subject: r.subject_text(),
                    der_len: r.subject_der().len(),
                    sha1: hex(r.sha1()),
                })
                .collect(),
        }
    }

    /// The human report: figures, limits, then the per-root table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "roots:                   {}", self.count);
        let _ = writeln!(s, "subject bytes (DER):     {}", self.subject_bytes);
        let _ = writeln!(
            s,
            "certificate_authorities: {} bytes (sum of 2 + DER length)",
            self.ca_list_bytes
        );
        for f in &self.fits {
            let verdict = if f.fits {
                format!("fits ({} bytes to spare)", f.limit - self.ca_list_bytes)
            } else {
                format!(
                    "DOES NOT FIT: over by {} bytes; the first {} of {} names fit",
                    self.ca_list_bytes - f.limit,
                    f.names_within,
                    self.count
                )
            };
            let _ = writeln!(s, "  {:>6} {:<38} {}", f.limit, f.who, verdict);
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:>6}  {:>7}  {:<40}  subject",
            "index", "der_len", "sha1"
        );
        for r in &self.roots {
            let _ = writeln!(
                s,
                "{:>6}  {:>7}  {:<40}  {}",
                r.index, r.der_len, r.sha1, r.subject
            );
        }
        s
    }
}
