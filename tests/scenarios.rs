//! Every scenario file in `scenarios/` is a test named after the file: it runs
//! over real TCP and TLS and fails when prediction and measurement disagree or
//! an expected outcome is not met. Adding a file adds a test. This is the one
//! place the suite measures the built-in scenarios.
//!
//! The incident's scenarios also run in the other two lab PKI shapes
//! (`NAME@two-tier`, ...): the outcomes per size hold in every shape; the
//! break point is checked only in the file's own shape, since the enterprise
//! anchor's subject (root CA or the UM's own certificate) has its own size.

use std::path::PathBuf;

use certgen::pki::Shape;
use libtest_mimic::{Arguments, Failed, Trial};
use umlab::model::Resolved;

/// Scenarios run in every PKI shape.
const EVERY_SHAPE: &[&str] = &["seed-2013", "two-tier-pki", "java-32k", "schannel-32k"];

fn main() {
    let args = Arguments::from_args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    let mut trials: Vec<Trial> = files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(name, move || run(path, None))
        })
        .collect();
    for name in EVERY_SHAPE {
        let path = dir.join(format!("{name}.toml"));
        // The file's own shape is its plain trial.
        let own = Resolved::load(&path).map(|r| r.shape).ok();
        for shape in Shape::ALL.into_iter().filter(|&s| Some(s) != own) {
            let p = path.clone();
            trials.push(Trial::test(format!("{name}@{shape}"), move || {
                run(p, Some(shape))
            }));
        }
    }
    trials.push(Trial::test("scenario_files_exist", || {
        let n = std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
            .map_err(|e| Failed::from(e.to_string()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .count();
        if n < 7 {
            return Err(format!("only {n} scenario files").into());
        }
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit();
}

/// Runs a scenario file, in its own PKI shape or in `shape` (then without
/// its break-point expectation).
fn run(path: PathBuf, shape: Option<Shape>) -> Result<(), Failed> {
    let mut r = Resolved::load(&path).map_err(|e| e.to_string())?;
    if let Some(shape) = shape {
        r = r.with_shape(shape);
        r.scenario.expect.break_point = None;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let shape = r.shape;
        let mut lab = tokio::task::spawn_blocking(move || {
            umlab::engine::Lab::with_shape(umlab::PKI_SEED, shape)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let result = umlab::run(&r, &mut lab, &|_| {})
            .await
            .map_err(|e| format!("{e:#}"))?;
        if result.points.is_empty() && result.break_points.is_empty() {
            return Err("the scenario measured nothing".into());
        }
        if !result.problems.is_empty() {
            return Err(format!(
                "{}\n{}",
                result.problems.join("\n"),
                umlab::report::table(&result)
            )
            .into());
        }
        Ok(())
    })
}
