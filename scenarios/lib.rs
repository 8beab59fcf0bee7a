//! umlab: which trust-store size breaks voicemail delivery, measured over the
//! wire. Scenario files ([`model`]) are run by the [`engine`]: every store is
//! predicted from the encodings and measured with lab-server and um-sim over
//! real TCP and TLS; [`report`] renders tables, JSON, CSV and charts;
//! [`analyze`] judges a user's own store with the same prediction; [`probe`]
//! reads a real server's CertificateRequest and judges it for every client.

pub mod analyze;
pub mod chart;
pub mod engine;
pub mod error;
pub mod fix;
pub mod model;
pub mod probe;
pub mod report;

use std::collections::hash_map::Entry;
use std::path::Path;

use serde::Serialize;

pub use crate::error::{Error, Result};

use crate::engine::{BreakPoint, Lab, Lottery, Point};
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
    /// One row per store measured (sizes in order; the lottery's seeds too).
    pub points: Vec<Point>,
    /// The break point, when searched.
    pub break_point: Option<Result<BreakPoint, String>>,
    /// Failure rate per size, for a Monte Carlo sweep.
    pub lottery: Vec<Lottery>,
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
/// In a Monte Carlo sweep each run is a different organisation: its own
/// synthetic roots (seed + k) and its own PKI, so the enterprise CA's
/// thumbprint, and with it its place in a thumbprint-ordered list, is drawn
/// anew each time.
pub async fn run(
    r: &Resolved,
    lab: &mut Lab,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ScenarioResult> {
    let s = &r.scenario;
    let setup = format!(
        "PKI {}; store: {} subjects, seed {}, CA {}; server: policy {}, budget {} ({}), order {}, TLS {}, \
         {} records up to {} bytes, client auth {}; client: {}, {} voicemail(s) per store",
        r.shape,
        r.profile,
        s.store.seed,
        s.store.ca,
        r.policies
            .iter()
            .map(|p| p.policy.to_string())
            .collect::<Vec<_>>()
            .join("+"),
        r.policy.budget,
        r.policy.accounting,
        r.policy.order,
        r.tls,
        s.server.layout,
        s.server.max_fragment,
        s.server.client_auth,
        r.client.name,
        s.client.voicemails,
    );
    let mut result = ScenarioResult {
        name: s.name.clone(),
        description: s.description.clone(),
        setup,
        points: Vec::new(),
        break_point: None,
        lottery: Vec::new(),
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
    let seeds = r.organisation_seeds();
    let mut orgs: std::collections::HashMap<u64, Lab> = std::collections::HashMap::new();
    for &size in &r.sizes {
        let mut lottery = Lottery {
            size,
            runs: 0,
            failures: 0,
            predicted_failures: 0,
        };
        for k in 0..seeds {
            let seed = r.organisation_seed(k).ok_or_else(|| {
                Error::Invalid(format!(
                    "store.seed {} + {k} passes the largest seed",
                    s.store.seed
                ))
            })?;
            let point = if seeds > 1 {
                let lab = match orgs.entry(seed) {
                    Entry::Occupied(e) => e.into_mut(),
                    // Its own PKI: key generation, kept off the runtime's workers.
                    Entry::Vacant(e) => {
                        let shape = r.shape;
                        e.insert(
                            tokio::task::spawn_blocking(move || Lab::with_shape(seed, shape))
                                .await??,
                        )
                    }
                };
                lab.point(r, size, seed).await?
            } else {
                lab.point(r, size, seed).await?
            };
            progress(1);
            lottery.runs += 1;
            lottery.failures += usize::from(point.measured.failed());
            lottery.predicted_failures += usize::from(point.predicted.failed());
            result.points.push(point);
        }
        if seeds > 1 {
            result.lottery.push(lottery);
        }
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
        result.break_point = Some(found);
    }
    check(r, &mut result);
    Ok(result)
}

/// Collects disagreements and unmet expectations.
fn check(r: &Resolved, result: &mut ScenarioResult) {
    let mut problems = Vec::new();
    let bp_points: Vec<&Point> = match &result.break_point {
        Some(Ok(bp)) => vec![&bp.below, &bp.at],
        _ => Vec::new(),
    };
    for p in result.points.iter().chain(bp_points) {
        for d in &p.disagreements {
            problems.push(format!("{} roots (seed {}): {d}", p.size, p.seed));
        }
    }
    for ((size, policy), want) in &r.expect {
        let got: Vec<&Point> = result
            .points
            .iter()
            .filter(|p| p.size == *size && policy.as_ref().is_none_or(|x| *x == p.policy))
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
    match (&r.scenario.expect.break_point, &result.break_point) {
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
