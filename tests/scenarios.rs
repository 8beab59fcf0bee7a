//! Every scenario file in `scenarios/` is a test named after the file: it runs
//! over real TCP and TLS and fails when prediction and measurement disagree or
//! an expected outcome is not met. Adding a file adds a test. This is the one
//! place the suite measures the built-in scenarios.

use std::path::PathBuf;

use libtest_mimic::{Arguments, Failed, Trial};

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
            Trial::test(name, move || run(path))
        })
        .collect();
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

fn run(path: PathBuf) -> Result<(), Failed> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut lab = tokio::task::spawn_blocking(|| umlab::engine::Lab::new(umlab::PKI_SEED))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let result = umlab::run_file(&path, &mut lab)
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
