//! The CA-list policy: which subject names the Hub advertises in its
//! CertificateRequest, and what that costs on the wire. Pure: no I/O.
//!
//! Schannel walks the trust store in enumeration order and keeps names while
//! they fit its budget (16 KB); the rest are dropped and event 36885 is logged.
//! `full` sends everything (within the TLS limit), `omit` sends nothing
//! (`SendTrustedIssuerList = 0`).

use serde::Serialize;

/// The wire sizes the policy computes with, from certgen's one module of TLS
/// constants (the names this module has always offered).
pub use certgen::wire::{
    HANDSHAKE_HEADER_LEN as HANDSHAKE_HEADER, MAX_PLAINTEXT, RECORD_HEADER_LEN as RECORD_HEADER,
    U16_MAX,
};

pub use crate::settings::{Accounting, Order, Policy, TlsVersion};

/// The parts of the CertificateRequest that are not names, taken from the
/// server's actual TLS configuration (never a constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MessageShape {
    /// TLS version.
    pub version: TlsVersion,
    /// Number of certificate_types (TLS 1.2).
    pub cert_types: usize,
    /// Number of signature schemes offered.
    pub sig_schemes: usize,
}

impl MessageShape {
    /// Body bytes of the CertificateRequest with a list of `list` bytes
    /// (sum of 2 + DER length), handshake header excluded.
    pub fn body_len(&self, list: usize) -> usize {
        match self.version {
            TlsVersion::Tls12 => 1 + self.cert_types + 2 + 2 * self.sig_schemes + 2 + list,
            TlsVersion::Tls13 => 1 + 2 + self.extensions_len(list),
        }
    }

    /// The whole handshake message, header included.
    pub fn message_len(&self, list: usize) -> usize {
        HANDSHAKE_HEADER + self.body_len(list)
    }

    /// TLS 1.3 extensions block: signature_algorithms, then
    /// certificate_authorities when the list is not empty.
    fn extensions_len(&self, list: usize) -> usize {
        let sigalgs = 4 + 2 + 2 * self.sig_schemes;
        let cas = if list == 0 { 0 } else { 4 + 2 + list };
        sigalgs + cas
    }

    /// The largest list (bytes of names) the protocol can carry.
    pub fn max_list(&self) -> usize {
        match self.version {
            TlsVersion::Tls12 => U16_MAX,
            // The extension's own u16 and the block's u16 both bound it.
            TlsVersion::Tls13 => {
                (U16_MAX - (4 + 2 + 2 * self.sig_schemes) - (4 + 2)).min(U16_MAX - 2)
            }
        }
    }
}

/// Records a message of `len` bytes spans when it starts a record of its own
/// and records carry at most `max_fragment` bytes, header included.
pub fn records_for(len: usize, max_fragment: usize) -> usize {
    let payload = max_fragment
        .saturating_sub(RECORD_HEADER)
        .clamp(1, MAX_PLAINTEXT);
    len.div_ceil(payload).max(1)
}

/// Settings of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Which names to send.
    pub policy: Policy,
    /// Budget in bytes (Schannel: 16,384).
    pub budget: usize,
    /// What the budget counts.
    pub accounting: Accounting,
    /// Enumeration order.
    pub order: Order,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            policy: Policy::Schannel,
            budget: certgen::wire::SCHANNEL_LIMIT,
            accounting: Accounting::CaList,
            order: Order::Store,
        }
    }
}

/// One root as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Subject DER.
    pub subject: &'a [u8],
    /// SHA-1 thumbprint of the certificate.
    pub sha1: &'a [u8; 20],
}

/// A list that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `full` over the protocol limit: rustls would write a wrapped length.
    #[error(
        "the full CA list is {list} bytes but TLS {version} carries at most {max} bytes of names \
         ({roots} roots); use --policy schannel or omit, or a smaller store"
    )]
    OverProtocolLimit {
        /// bytes of names (sum of 2 + DER length)
        list: usize,
        /// the limit for this version and signature-scheme count
        max: usize,
        /// TLS version
        version: TlsVersion,
        /// roots in the store
        roots: usize,
    },
    /// A budget that the fixed part of the message alone exceeds.
    #[error(
        "budget {budget} is below the {fixed} bytes the CertificateRequest needs without names"
    )]
    BudgetTooSmall {
        /// the budget
        budget: usize,
        /// message bytes with an empty list
        fixed: usize,
    },
}

/// The entries of a store, in its order.
pub fn entries(store: &certgen::Store) -> Vec<Entry<'_>> {
    store
        .roots()
        .iter()
        .map(|r| Entry {
            subject: r.subject_der(),
            sha1: r.sha1(),
        })
        .collect()
}

/// Enumeration order and prefix sums of a store: O(n) after sorting, then each
/// budget is planned in O(log n).
#[derive(Clone, Debug)]
pub struct Planner {
    /// Store indices in enumeration order.
    order: Vec<usize>,
    /// prefix[k] = list bytes of the first k names in enumeration order.
    prefix: Vec<usize>,
}

impl Planner {
    /// Orders the store and computes the prefix sums.
    pub fn new(entries: &[Entry<'_>], order: Order) -> Planner {
        let mut idx: Vec<usize> = (0..entries.len()).collect();
        match order {
            Order::Store => {}
            Order::Thumbprint => idx.sort_by_key(|&i| entries.get(i).map(|e| e.sha1)),
            Order::Subject => idx.sort_by_key(|&i| entries.get(i).map(|e| e.subject)),
        }
        let mut prefix = Vec::with_capacity(idx.len() + 1);
        prefix.push(0);
        let mut sum = 0;
        for &i in &idx {
            sum += 2 + entries.get(i).map_or(0, |e| e.subject.len());
            prefix.push(sum);
        }
        Planner { order: idx, prefix }
    }

    /// List bytes of every name.
    pub fn total(&self) -> usize {
        self.prefix.last().copied().unwrap_or(0)
    }

    /// How many names, in enumeration order, fit `list_budget` bytes of list.
    pub fn fit(&self, list_budget: usize) -> usize {
        // The largest k with prefix[k] <= budget; prefix[0] = 0 always fits.
        self.prefix.partition_point(|&p| p <= list_budget) - 1
    }

    /// Applies the settings: the store indices to advertise, in order.
    pub fn plan(
        &self,
        settings: &Settings,
        shape: &MessageShape,
    ) -> Result<Vec<usize>, PolicyError> {
        let kept = match settings.policy {
            Policy::Omit => 0,
            Policy::Full => {
                if self.total() > shape.max_list() {
                    return Err(PolicyError::OverProtocolLimit {
                        list: self.total(),
                        max: shape.max_list(),
                        version: shape.version,
                        roots: self.order.len(),
                    });
                }
                self.order.len()
            }
            Policy::Schannel => {
                let list_budget = match settings.accounting {
                    Accounting::CaList => settings.budget,
                    Accounting::Message => {
                        let fixed = shape.message_len(0);
                        // TLS 1.3 adds the extension header with the first name.
                        let first = shape.message_len(1) - 1 - fixed;
                        settings
                            .budget
                            .checked_sub(fixed)
                            .ok_or(PolicyError::BudgetTooSmall {
                                budget: settings.budget,
                                fixed,
                            })?
                            .saturating_sub(first)
                    }
                };
                self.fit(list_budget.min(shape.max_list()))
            }
        };
        Ok(self.order.iter().take(kept).copied().collect())
    }
}

/// What the policy decided, in the figures operators and reports need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The settings applied.
    pub settings: Settings,
    /// The message shape they were applied to.
    pub shape: MessageShape,
    /// Roots in the store.
    pub roots: usize,
    /// Names advertised.
    pub kept: usize,
    /// Names dropped.
    pub dropped: usize,
    /// Bytes of names sent (sum of 2 + DER length).
    pub list_bytes: usize,
    /// Bytes of names in the whole store.
    pub store_list_bytes: usize,
    /// CertificateRequest handshake message, header included.
    pub message_bytes: usize,
    /// Records the message spans when it starts a record (per-message layout).
    pub records: usize,
    /// Record size used for `records`, header included.
    pub max_fragment: usize,
    /// Position of each named CA in the sent list, or `None` when dropped.
    pub named: Vec<(String, Option<usize>)>,
    /// Whether Schannel would log event 36885 (something was dropped).
    pub truncated: bool,
}

/// The advertised list and its report.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Store indices sent, in order.
    pub sent: Vec<usize>,
    /// The figures.
    pub report: Report,
}

/// Plans the list for a store. `named` are (label, store index) pairs whose
/// fate the report states, for example the enterprise CA.
pub fn plan(
    entries: &[Entry<'_>],
    settings: &Settings,
    shape: &MessageShape,
    max_fragment: usize,
    named: &[(String, usize)],
) -> Result<Plan, PolicyError> {
    let planner = Planner::new(entries, settings.order);
    let sent = planner.plan(settings, shape)?;
    Ok(plan_report(
        &planner,
        sent,
        entries,
        settings,
        shape,
        max_fragment,
        named,
    ))
}

/// The plan of a server that tries to send every name whatever the TLS
/// limit (OpenSSL): the figures of the list it would send, which a
/// CertificateRequest cannot carry past the limit. The caller must not hand
/// such a list to rustls.
pub fn plan_whole(
    entries: &[Entry<'_>],
    settings: &Settings,
    shape: &MessageShape,
    max_fragment: usize,
    named: &[(String, usize)],
) -> Plan {
    let planner = Planner::new(entries, settings.order);
    let sent = planner.order.clone();
    plan_report(
        &planner,
        sent,
        entries,
        settings,
        shape,
        max_fragment,
        named,
    )
}

fn plan_report(
    planner: &Planner,
    sent: Vec<usize>,
    entries: &[Entry<'_>],
    settings: &Settings,
    shape: &MessageShape,
    max_fragment: usize,
    named: &[(String, usize)],
) -> Plan {
    let list_bytes = planner.prefix.get(sent.len()).copied().unwrap_or(0);
    let message_bytes = shape.message_len(list_bytes);
    let report = Report {
        settings: *settings,
        shape: *shape,
        roots: entries.len(),
        kept: sent.len(),
        dropped: entries.len() - sent.len(),
        list_bytes,
        store_list_bytes: planner.total(),
        message_bytes,
        records: records_for(message_bytes, max_fragment),
        max_fragment,
        named: named
            .iter()
            .map(|(label, idx)| (label.clone(), sent.iter().position(|s| s == idx)))
            .collect(),
        truncated: settings.policy == Policy::Schannel && sent.len() < entries.len(),
    };
    Plan { sent, report }
}

/// The one planning entry point for a whole store: the message shape of the
/// lab's own rustls configuration for `version`, the store's entries and the
/// plan, so no caller stitches the three by hand (and none can pair a plan
/// with another version's shape).
pub fn plan_store(
    store: &certgen::Store,
    settings: &Settings,
    version: TlsVersion,
    max_fragment: usize,
    named: &[(String, usize)],
) -> Result<Plan, PolicyError> {
    let shape = crate::tls::message_shape(version);
    plan(&entries(store), settings, &shape, max_fragment, named)
}
