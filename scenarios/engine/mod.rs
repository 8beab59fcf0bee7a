//! Runs scenarios: for each store, the analytic prediction ([`predict`]: the
//! encodings, the policy, the client's rules; pure) beside the outcome
//! measured ([`measure`]: lab-server and um-sim meeting only on a real TCP
//! connection with a real TLS handshake). A disagreement is an error, never
//! resolved by picking one side. [`breakpoint`] bisects measurements for the
//! smallest failing store; [`remediate`] computes the fewest roots to remove;
//! [`odds`] computes the exact odds of the thumbprint lottery.

pub mod breakpoint;
pub mod measure;
pub mod odds;
pub mod predict;
pub mod remediate;

use serde::Serialize;

pub use breakpoint::{BreakPoint, break_point};
pub use measure::Lab;
pub use predict::{
    CLIENT_AUTH_BROKEN, EVERY_HANDSHAKE, OWN_STACK_BODY, Prediction, ServerCause, Setup,
    class_name, predict,
};
pub use remediate::{Remediation, remediate};

/// How one store ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "class", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every voicemail delivered.
    Delivered,
    /// Failed, with the failure class.
    Failed(String),
    /// lab-server refused to start: the list cannot be sent, or the
    /// persona's real server refuses the configuration (s2n, ALB).
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
    /// The server persona (lab-server's `--persona`).
    pub persona: String,
    /// The Hub's CA-list policy for this store.
    pub policy: String,
    /// The order the Hub enumerates its store in.
    pub order: String,
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
            persona: String::new(),
            size: store.len(),
            policy: policy.policy.to_string(),
            order: policy.order.to_string(),
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

/// Failure rate per size over organisations (thumbprint-order lottery),
/// with its 95% Wilson interval and the exact odds beside it.
#[derive(Clone, Debug, Serialize)]
pub struct Lottery {
    /// Store size.
    pub size: usize,
    /// The enumeration order.
    pub order: String,
    /// Stores measured (one organisation each).
    pub runs: usize,
    /// Measured failures.
    pub failures: usize,
    /// Predicted failures.
    pub predicted_failures: usize,
    /// 95% Wilson interval of the measured failure rate: low end.
    pub wilson_low: f64,
    /// 95% Wilson interval of the measured failure rate: high end.
    pub wilson_high: f64,
    /// The exact failure probability, when computed.
    pub exact: Option<f64>,
    /// The exact chance that a sound measurement's interval misses `exact`.
    pub miss_probability: Option<f64>,
}

impl Lottery {
    /// An empty tally for one size under one order.
    pub fn new(size: usize, order: String) -> Lottery {
        Lottery {
            size,
            order,
            runs: 0,
            failures: 0,
            predicted_failures: 0,
            wilson_low: 0.0,
            wilson_high: 1.0,
            exact: None,
            miss_probability: None,
        }
    }

    /// The measured failure rate.
    pub fn rate(&self) -> f64 {
        self.failures as f64 / self.runs.max(1) as f64
    }

    /// Whether the exact odds lie inside the measurement's interval.
    pub fn inside(&self) -> Option<bool> {
        self.exact
            .map(|p| self.wilson_low <= p && p <= self.wilson_high)
    }
}

/// The odds below which a disagreement between the Monte Carlo and the exact
/// odds counts as a problem rather than chance: one in a million.
pub const CHANCE_BOUND: f64 = 1e-6;

/// Most organisations over all sizes for which the pooled test is computed
/// exactly (a convolution quadratic in the count).
const MAX_POOLED_RUNS: usize = 20_000;

/// The exact odds of a thumbprint lottery and how the Monte Carlo compares.
#[derive(Clone, Debug, Serialize)]
pub struct Odds {
    /// What was computed, in words.
    pub model: String,
    /// The CA's entry in the list (2 + DER length of its subject).
    pub ca_entry: usize,
    /// The list budget in bytes.
    pub list_budget: usize,
    /// The failure probability for every store size: index = roots, CA
    /// included (index 0 unused). Failure at a size implies failure at every
    /// larger size of the same organisation (its stores are prefixes of one
    /// another), so this is also the distribution function of the break point.
    pub curve: Vec<f64>,
    /// The break point's 5%, 50% and 95% quantiles: the smallest store that
    /// fails with at least that probability (`None`: not within the sizes).
    pub break_point_quantiles: Vec<(f64, Option<usize>)>,
    /// Sizes whose interval misses the exact odds.
    pub misses: usize,
    /// Sizes measured.
    pub sizes: usize,
    /// The exact chance of at least `misses` misses when the model holds.
    pub miss_tail: f64,
    /// Failures measured over all sizes.
    pub failures: usize,
    /// Organisations measured over all sizes.
    pub runs: usize,
    /// Failures the exact odds expect over all sizes.
    pub expected_failures: f64,
    /// Two-sided exact chance of a total at least as far from the expected
    /// (`None` past 20,000 organisations).
    pub pooled_p: Option<f64>,
}

impl Odds {
    /// What the Monte Carlo says against the exact odds beyond chance: more
    /// sizes missed than a one-in-a-million chance allows, or a total number
    /// of failures as far from the expected as one in a million.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.miss_tail < CHANCE_BOUND {
            out.push(format!(
                "exact odds: the 95% intervals miss them at {} of {} sizes; at least that many \
                 happen by chance with probability {:.2e}, under the bound {CHANCE_BOUND:.0e}",
                self.misses, self.sizes, self.miss_tail
            ));
        }
        if let Some(p) = self.pooled_p
            && p < CHANCE_BOUND
        {
            out.push(format!(
                "exact odds: {} failures in {} organisations where {:.1} are expected; as far \
                 by chance with probability {p:.2e}, under the bound {CHANCE_BOUND:.0e}",
                self.failures, self.runs, self.expected_failures
            ));
        }
        out
    }
}

/// The exact odds of a Monte Carlo sweep beside its measurement: fills each
/// size's Wilson interval, exact probability and miss chance, and returns
/// the comparison, or why the odds do not model this sweep. `ca_entries`
/// holds the CA entry size of every organisation measured, `points` every
/// store of the sweep.
pub fn odds_for(
    r: &crate::model::Resolved,
    ca_entries: &std::collections::BTreeSet<usize>,
    points: &[&Point],
    mut lotteries: Vec<&mut Lottery>,
) -> Result<Odds, String> {
    use lab_server::policy::{Accounting, Order, Policy};
    for l in lotteries.iter_mut() {
        (l.wilson_low, l.wilson_high) = odds::wilson(l.failures, l.runs);
    }
    let settings = &r.policy;
    if settings.policy != Policy::Schannel || settings.accounting != Accounting::CaList {
        return Err("exact odds model the schannel policy with ca-list accounting".into());
    }
    if settings.order != Order::Thumbprint {
        return Err(format!(
            "exact odds model thumbprint order; this sweep enumerates by {}",
            settings.order
        ));
    }
    if r.scenario.store.prune_to.is_some() {
        return Err("exact odds do not model a pruned store".into());
    }
    let ca = match ca_entries.iter().collect::<Vec<_>>().as_slice() {
        [one] => **one,
        other => return Err(format!("the organisations' CAs differ in size: {other:?}")),
    };
    if let Some(p) = points.iter().find(|p| p.predicted.failed() == p.ca_listed) {
        return Err(format!(
            "at {} roots (seed {}) the prediction is {} with the CA {}: failures other than the \
             CA's cut are not modelled",
            p.size,
            p.seed,
            p.predicted.label(),
            if p.ca_listed { "listed" } else { "cut" }
        ));
    }
    let budget = settings
        .budget
        .min(lab_server::tls::message_shape(r.tls).max_list());
    let max = r.sizes.iter().copied().max().unwrap_or(0);
    let (model, curve) = match r.profile.real_list() {
        None => {
            let crate::model::Subjects::Synthetic(profile) = r.profile else {
                return Err("no subject sizes for this profile".into());
            };
            let dist: Vec<(usize, f64)> = certgen::synth::length_distribution(profile)
                .into_iter()
                .map(|(len, p)| (2 + len, p))
                .collect();
            (
                format!(
                    "other names drawn independently from the {profile} profile's {} subject \
                     sizes, all orders equally likely",
                    dist.len()
                ),
                odds::profile_curve(&dist, ca, budget, max),
            )
        }
        Some(list) => {
            let list = list?;
            let others: Vec<usize> = list
                .iter()
                .take(max.saturating_sub(1))
                .map(|s| 2 + s.len())
                .collect();
            (
                format!(
                    "the {} subjects in their order (a store of N roots: the first N - 1 and \
                     the CA), all orders of each store equally likely",
                    r.profile
                ),
                odds::store_curve(&others, ca, budget),
            )
        }
    };
    let mut misses = 0;
    let mut miss_parts = Vec::new();
    let mut counts = Vec::new();
    let (mut failures, mut runs, mut expected) = (0, 0, 0.0);
    for l in lotteries.iter_mut() {
        let p = curve.get(l.size).copied().unwrap_or(1.0);
        let alpha = odds::miss_probability(p, l.runs);
        l.exact = Some(p);
        l.miss_probability = Some(alpha);
        misses += usize::from(l.inside() == Some(false));
        miss_parts.push(vec![1.0 - alpha, alpha]);
        failures += l.failures;
        runs += l.runs;
        expected += p * l.runs as f64;
        counts.push((l.runs, p));
    }
    let miss_tail = odds::tail_at_least(&odds::convolve_all(&miss_parts), misses);
    let pooled_p = (runs <= MAX_POOLED_RUNS).then(|| {
        let parts: Vec<Vec<f64>> = counts
            .iter()
            .map(|&(n, p)| odds::binomial_pmf(n, p))
            .collect();
        let total = odds::convolve_all(&parts);
        let low = odds::tail_at_most(&total, failures);
        let high = odds::tail_at_least(&total, failures);
        (2.0 * low.min(high)).min(1.0)
    });
    let break_point_quantiles = [0.05, 0.5, 0.95]
        .into_iter()
        .map(|q| (q, curve.iter().position(|&p| p >= q).filter(|&n| n > 0)))
        .collect();
    Ok(Odds {
        model,
        ca_entry: ca,
        list_budget: budget,
        curve,
        break_point_quantiles,
        misses,
        sizes: lotteries.len(),
        miss_tail,
        failures,
        runs,
        expected_failures: expected,
        pooled_p,
    })
}

/// A break-point search under one order.
#[derive(Clone, Debug, Serialize)]
pub struct Searched {
    /// The enumeration order searched under.
    pub order: String,
    /// The break point, or why the range holds none.
    pub result: Result<BreakPoint, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Resolved, Scenario};

    fn lottery_scenario(profile: &str, sizes: &str) -> Resolved {
        let text = format!(
            "name = \"t\"\ndescription = \"d\"\n[store]\nprofile = \"{profile}\"\nsizes = {sizes}\n\
             seeds = 40\n[server]\norder = \"thumbprint\"\n"
        );
        let s: Scenario = toml::from_str(&text).expect("scenario");
        Resolved::new(s).expect("resolved")
    }

    /// A store of the sweep, as the engine records it (the CA cut when the
    /// organisation failed).
    fn point(size: usize, seed: u64, failed: bool) -> Point {
        let outcome = if failed {
            Outcome::Failed("no-acceptable-certificate".into())
        } else {
            Outcome::Delivered
        };
        Point {
            persona: String::new(),
            size,
            policy: "schannel".into(),
            order: "thumbprint".into(),
            removed: 0,
            seed,
            ca_index: 0,
            store_list_bytes: 0,
            list_bytes: 0,
            names_sent: 0,
            names_dropped: 0,
            body_bytes: 0,
            records: 1,
            ca_listed: !failed,
            predicted: outcome.clone(),
            measured: outcome,
            server_events: Vec::new(),
            um_events: Vec::new(),
            disagreements: Vec::new(),
        }
    }

    /// Runs `odds_for` on a sweep whose failure counts are `failures(p)` per
    /// size, `p` the exact odds there.
    fn judge(r: &Resolved, failures: impl Fn(f64) -> usize) -> Odds {
        let ca = std::collections::BTreeSet::from([86]);
        // First pass: the exact odds per size.
        let mut probe: Vec<Lottery> = r
            .sizes
            .iter()
            .map(|&n| Lottery::new(n, "thumbprint".into()))
            .collect();
        let odds = odds_for(r, &ca, &[], probe.iter_mut().collect()).expect("odds");
        let mut lotteries = Vec::new();
        let mut points = Vec::new();
        for &n in &r.sizes {
            let p = odds.curve[n];
            let mut l = Lottery::new(n, "thumbprint".into());
            l.runs = 40;
            l.failures = failures(p).min(40);
            l.predicted_failures = l.failures;
            for k in 0..40 {
                points.push(point(n, k, k < l.failures as u64));
            }
            lotteries.push(l);
        }
        let refs: Vec<&Point> = points.iter().collect();
        odds_for(r, &ca, &refs, lotteries.iter_mut().collect()).expect("odds")
    }

    #[test]
    fn a_measurement_beyond_chance_is_a_problem_and_one_within_is_not() {
        let r = lottery_scenario("realistic", "[200, 250, 300, 350, 400]");
        // As the odds say: inside every interval, no problem.
        let fair = judge(&r, |p| (p * 40.0).round() as usize);
        assert_eq!(fair.misses, 0);
        assert!(fair.problems().is_empty(), "{:?}", fair.problems());
        // 10 failures of 40 too many at every size: outside every interval, far
        // beyond what chance allows.
        let biased = judge(&r, |p| (p * 40.0).round() as usize + 10);
        assert_eq!(biased.misses, 5, "{biased:?}");
        assert!(biased.miss_tail < CHANCE_BOUND, "{}", biased.miss_tail);
        let problems = biased.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("at 5 of 5 sizes"), "{problems:?}");
    }

    #[test]
    fn odds_are_refused_where_they_do_not_model_the_sweep() {
        let r = lottery_scenario("realistic", "[200]");
        let ca = std::collections::BTreeSet::from([86]);
        let mut l = Lottery::new(200, "thumbprint".into());
        l.runs = 1;
        // A failure with the CA listed: another rule stopped the handshake.
        let mut p = point(200, 0, true);
        p.ca_listed = true;
        let err = odds_for(&r, &ca, &[&p], vec![&mut l]).expect_err("not modelled");
        assert!(err.contains("other than the CA's cut"), "{err}");
        let two = std::collections::BTreeSet::from([86, 90]);
        let err = odds_for(&r, &two, &[], vec![]).expect_err("two CA sizes");
        assert!(err.contains("differ in size"), "{err}");
        let mut store = lottery_scenario("realistic", "[200]");
        store.policy.order = lab_server::policy::Order::Store;
        let err = odds_for(&store, &ca, &[], vec![]).expect_err("store order");
        assert!(err.contains("thumbprint order"), "{err}");
    }
}
