//! umlab: which trust-store size breaks voicemail delivery, measured over the
//! wire. Scenario files ([`model`]) are run by the [`engine`]: every store is
//! predicted from the encodings and measured with lab-server and um-sim over
//! real TCP and TLS; [`report`] renders tables, JSON, CSV and charts;
//! [`analyze`] judges a user's own store with the same prediction and ends
//! with the persona-by-client table of [`verdicts`]; [`probe`]
//! reads a real server's CertificateRequest and judges it for every client.

pub mod analyze;
pub mod chart;
pub mod engine;
pub mod error;
pub mod fix;
pub mod model;
pub mod probe;
pub mod report;
pub mod verdicts;

use std::path::Path;

use serde::Serialize;

pub use crate::error::{Error, Result};

use crate::engine::{Lab, Lottery, Odds, Point, Searched};
use crate::model::Resolved;

// `BUILTIN`: every scenario file of `scenarios/`, embedded by build.rs.
include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Seed of the lab PKI the `umlab` binary and the scenario tests use (the
/// enterprise CA, the UM and Hub certificates): expectations such as the
/// seed-2013 break point hold for this PKI.
pub const PKI_SEED: u64 = 2013;

/// Everything a scenario run produced.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The settings, in words, for the table header.
    pub setup: String,
    /// One row per store measured (per order, sizes in order; the lottery's
    /// organisations too).
    pub points: Vec<Point>,
    /// The break point under each order, when searched.
    pub break_points: Vec<Searched>,
    /// Failure rate per size, for a Monte Carlo sweep.
    pub lottery: Vec<Lottery>,
    /// The exact odds beside the Monte Carlo sweep (`Err`: why they were not
    /// computed); `None` without a sweep.
    pub odds: Option<Result<Odds, String>>,
    /// Disagreements and unmet expectations; empty when the run is sound.
    pub problems: Vec<String>,
}

/// Runs one scenario file.
pub async fn run_file(path: &Path, lab: &mut Lab) -> Result<ScenarioResult> {
    let path = path.to_owned();
    let resolved = tokio::task::spawn_blocking(move || Resolved::load(&path)).await??;
    run(&resolved, lab, &|_| {}).await
}

/// Runs a resolved scenario; `progress(n)` counts measured stores.
///
/// The scenario runs under each of its orders in turn. In a Monte Carlo sweep
/// each run is a different organisation: its own synthetic roots and its own
/// PKI, from a seed no other run uses (at any size), so the enterprise CA's
/// thumbprint, and with it its place in a thumbprint-ordered list, is drawn
/// anew each time and the sizes' failure counts are independent.
pub async fn run(
    r: &Resolved,
    lab: &mut Lab,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ScenarioResult> {
    let s = &r.scenario;
    let setup = format!(
        "PKI {}; store: {} subjects, seed {}, CA {}; server: persona {}, policy {}, budget {} ({}), \
         order {}, TLS {}, {} records up to {} bytes, client auth {}; client: {}, {} voicemail(s) \
         per store",
        r.shape,
        r.profile,
        s.store.seed,
        s.store.ca,
        r.persona.name,
        r.policies
            .iter()
            .map(|p| p.policy.to_string())
            .collect::<Vec<_>>()
            .join("+"),
        r.policy.budget,
        r.policy.accounting,
        r.orders
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("+"),
        r.tls,
        s.server.layout,
        s.server.max_fragment,
        r.client_auth,
        r.client.name,
        s.client.voicemails,
    );
    let mut result = ScenarioResult {
        name: s.name.clone(),
        description: s.description.clone(),
        setup,
        points: Vec::new(),
        break_points: Vec::new(),
        lottery: Vec::new(),
        odds: None,
        problems: Vec::new(),
    };
    // The caller's lab serves every scenario of its PKI shape; another shape
    // gets its own lab, from the same seed.
    let mut own = None;
    let lab = if lab.shape() == r.shape {
        lab
    } else {
        let (seed, shape) = (lab.seed(), r.shape);
        own.insert(tokio::task::spawn_blocking(move || Lab::with_shape(seed, shape)).await??)
    };
    for &order in &r.orders {
        let ro = r.with_order(order);
        run_order(&ro, lab, progress, &mut result).await?;
    }
    check(r, &mut result);
    Ok(result)
}

/// Runs the scenario under one order (`r.orders` holds just it).
async fn run_order(
    r: &Resolved,
    lab: &mut Lab,
    progress: &(dyn Fn(u64) + Sync),
    result: &mut ScenarioResult,
) -> Result<()> {
    let s = &r.scenario;
    let seeds = r.organisation_seeds();
    let mut ca_entries = std::collections::BTreeSet::new();
    let mut lottery_points = Vec::new();
    for (i, &size) in r.sizes.iter().enumerate() {
        let mut lottery = Lottery::new(size, r.policy.order.to_string());
        for k in 0..seeds {
            let seed = r.organisation_seed(i as u64, k).ok_or_else(|| {
                Error::Invalid(format!(
                    "store.seed {} + {i} x {seeds} + {k} passes the largest seed",
                    s.store.seed
                ))
            })?;
            let point = if seeds > 1 {
                // Its own PKI: key generation, kept off the runtime's workers.
                let shape = r.shape;
                let mut org =
                    tokio::task::spawn_blocking(move || Lab::with_shape(seed, shape)).await??;
                ca_entries.insert(2 + org.ca().subject_der().len());
                org.point(r, size, seed).await?
            } else {
                lab.point(r, size, seed).await?
            };
            progress(1);
            lottery.runs += 1;
            lottery.failures += usize::from(point.measured.failed());
            lottery.predicted_failures += usize::from(point.predicted.failed());
            if seeds > 1 {
                lottery_points.push(result.points.len());
            }
            result.points.push(point);
        }
        if seeds > 1 {
            result.lottery.push(lottery);
        }
    }
    if seeds > 1 {
        let points: Vec<&Point> = lottery_points
            .iter()
            .filter_map(|&i| result.points.get(i))
            .collect();
        let lotteries: Vec<&mut Lottery> = result
            .lottery
            .iter_mut()
            .filter(|l| l.order == r.policy.order.to_string())
            .collect();
        result.odds = Some(engine::odds_for(r, &ca_entries, &points, lotteries));
    }
    for policy in r.policies.iter().skip(1) {
        for &size in &r.sizes {
            let point = lab.point_with(r, policy, size, s.store.seed).await?;
            progress(1);
            result.points.push(point);
        }
    }
    if let Some(bp) = s.break_point {
        let found = engine::break_point(lab, r, bp.from, bp.to, s.store.seed).await?;
        progress(1);
        result.break_points.push(Searched {
            order: r.policy.order.to_string(),
            result: found,
        });
    }
    Ok(())
}

/// Collects disagreements and unmet expectations.
fn check(r: &Resolved, result: &mut ScenarioResult) {
    let mut problems = Vec::new();
    let bp_points: Vec<&Point> = result
        .break_points
        .iter()
        .filter_map(|b| b.result.as_ref().ok())
        .flat_map(|bp| [&bp.below, &bp.at])
        .collect();
    for p in result.points.iter().chain(bp_points) {
        for d in &p.disagreements {
            problems.push(format!("{} roots (seed {}): {d}", p.size, p.seed));
        }
    }
    for ((size, policy), want) in &r.expect {
        let got: Vec<&Point> = result
            .points
            .iter()
            .filter(|p| {
                p.size == *size
                    && policy
                        .as_ref()
                        .is_none_or(|x| *x == p.policy || *x == p.order)
            })
            .collect();
        let at = match policy {
            Some(p) => format!("{size} roots under {p}"),
            None => format!("{size} roots"),
        };
        if got.is_empty() {
            problems.push(format!("expected {want} at {at}, but that was not run"));
        }
        for p in got {
            if !p.measured.matches(want) {
                problems.push(format!(
                    "{at}: expected {want}, measured {}",
                    p.measured.label()
                ));
            }
        }
    }
    // The expected break point is the first order's.
    let first = result.break_points.first().map(|b| &b.result);
    match (&r.scenario.expect.break_point, first) {
        (Some(want), Some(Ok(bp))) if bp.size != *want => {
            problems.push(format!(
                "break point: expected {want} roots, found {}",
                bp.size
            ));
        }
        (Some(want), Some(Err(e))) => {
            problems.push(format!(
                "break point: expected {want} roots, search said: {e}"
            ));
        }
        (Some(want), None) => problems.push(format!(
            "break point {want} expected but the scenario has no [break_point] search"
        )),
        _ => {}
    }
    if let Some(Ok(odds)) = &result.odds {
        problems.extend(odds.problems());
    }
    result.problems = problems;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_file_is_built_in_and_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .expect("scenarios folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 7, "{files:?}");
        assert_eq!(BUILTIN.len(), files.len(), "built-ins vs files");
        for ((name, text), file) in BUILTIN.iter().zip(&files) {
            let on_disk = std::fs::read_to_string(file).expect("scenario file");
            assert_eq!(Some(*name), file.file_name().and_then(|n| n.to_str()));
            assert_eq!(*text, on_disk, "{name} is stale in the build");
        }
        let builtin = model::Resolved::builtin().expect("built-ins load");
        for (r, file) in builtin.iter().zip(&files) {
            let stem = file.file_stem().and_then(|s| s.to_str());
            assert_eq!(Some(r.scenario.name.as_str()), stem, "name = file stem");
        }
    }
}
