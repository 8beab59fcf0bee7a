//! Runs scenarios: for each store, the analytic prediction ([`predict`]: the
//! encodings, the policy, the client's rules; pure) beside the outcome
//! measured ([`measure`]: lab-server and um-sim meeting only on a real TCP
//! connection with a real TLS handshake). A disagreement is an error, never
//! resolved by picking one side. [`breakpoint`] bisects measurements for the
//! smallest failing store; [`remediate`] computes the fewest roots to remove.

pub mod breakpoint;
pub mod measure;
pub mod predict;
pub mod remediate;

use serde::Serialize;

pub use breakpoint::{BreakPoint, break_point};
pub use measure::Lab;
pub use predict::{OWN_STACK_BODY, Prediction, Setup, class_name, predict};
pub use remediate::{Remediation, remediate};

/// How one store ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "class", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every voicemail delivered.
    Delivered,
    /// Failed, with the failure class.
    Failed(String),
    /// lab-server refused to start (the list cannot be sent).
    Refused(String),
}

impl Outcome {
    /// `delivered`, `failed:CLASS` or `refused`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Delivered => "delivered".into(),
            Outcome::Failed(c) => format!("failed:{c}"),
            Outcome::Refused(_) => "refused".into(),
        }
    }

    /// Whether delivery failed (refusal included).
    pub fn failed(&self) -> bool {
        !matches!(self, Outcome::Delivered)
    }

    /// Whether an expectation (`delivered`, `failed`, `failed:CLASS`, `refused`) holds.
    pub fn matches(&self, expected: &str) -> bool {
        expected == self.label() || (expected == "failed" && matches!(self, Outcome::Failed(_)))
    }
}

/// One store, predicted and measured.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Roots in the store, the CA included (before any pruning).
    pub size: usize,
    /// The Hub's CA-list policy for this store.
    pub policy: String,
    /// Roots the remediation removed (`prune_to`), 0 otherwise.
    pub removed: usize,
    /// Seed of the synthetic subjects.
    pub seed: u64,
    /// Position of the CA in the store.
    pub ca_index: usize,
    /// TLS 1.2 certificate_authorities size of the whole store.
    pub store_list_bytes: usize,
    /// Bytes of names sent.
    pub list_bytes: usize,
    /// Names sent.
    pub names_sent: usize,
    /// Names dropped.
    pub names_dropped: usize,
    /// CertificateRequest body bytes (header excluded), predicted.
    pub body_bytes: usize,
    /// Records the request spans (per-message layout), predicted.
    pub records: usize,
    /// Whether the CA's name was sent.
    pub ca_listed: bool,
    /// The prediction.
    pub predicted: Outcome,
    /// The measurement.
    pub measured: Outcome,
    /// Events on the Hub's side (Schannel 36885, handshake results).
    pub server_events: Vec<String>,
    /// UM events (1423, 1082, 1185).
    pub um_events: Vec<u32>,
    /// Where prediction and measurement disagree (empty when they agree).
    pub disagreements: Vec<String>,
}

impl Point {
    /// A point holding the prediction for `store` (the CA at `ca_index`), not
    /// yet measured; `size` is the store's own until the caller says otherwise.
    pub fn predicted(
        policy: &lab_server::policy::Settings,
        seed: u64,
        ca_index: usize,
        store: &certgen::Store,
        p: Prediction,
    ) -> Point {
        Point {
            size: store.len(),
            policy: policy.policy.to_string(),
            removed: 0,
            seed,
            ca_index,
            store_list_bytes: store.ca_list_bytes(),
            list_bytes: p.list_bytes,
            names_sent: p.names_sent,
            names_dropped: p.names_dropped,
            body_bytes: p.body_bytes,
            records: p.records,
            ca_listed: p.issuer_listed.unwrap_or(false),
            measured: Outcome::Delivered,
            predicted: p.outcome,
            server_events: Vec::new(),
            um_events: Vec::new(),
            disagreements: Vec::new(),
        }
    }
}

/// Records a disagreement when prediction and measurement differ.
fn compare(point: &mut Point) {
    if point.predicted != point.measured {
        // A refusal's text is the same error on both sides; compare kinds.
        let same_kind = matches!(
            (&point.predicted, &point.measured),
            (Outcome::Refused(_), Outcome::Refused(_))
        );
        if !same_kind {
            point.disagreements.push(format!(
                "predicted {}, measured {}",
                point.predicted.label(),
                point.measured.label()
            ));
        }
    }
}

/// Failure rate per size over seeds (thumbprint-order lottery).
#[derive(Clone, Debug, Serialize)]
pub struct Lottery {
    /// Store size.
    pub size: usize,
    /// Stores measured.
    pub runs: usize,
    /// Measured failures.
    pub failures: usize,
    /// Predicted failures.
    pub predicted_failures: usize,
}
