//! Running a probe of `peers/<stack>/run` (peers/README.md): built once per
//! test run, its one JSON line parsed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::common;

/// A probe run may take this long (a JVM start, a 64 KB handshake).
const PROBE_DEADLINE: Duration = Duration::from_secs(90);
/// Building one (go build from a cold cache, javac).
const BUILD_DEADLINE: Duration = Duration::from_secs(300);

/// What one probe run printed.
#[derive(Clone, Debug, Deserialize)]
pub struct Report {
    pub stack: String,
    pub version: String,
    pub outcome: String,
    pub stage: String,
    pub error: String,
    pub certificate_sent: Option<bool>,
}

/// Why a probe cannot run here.
#[derive(Clone, Debug)]
pub enum Unavailable {
    /// A tool is missing (exit 3): skipped outside CI.
    Missing(String),
    /// The build failed or the probe is broken: always a failure.
    Broken(String),
}

/// Whether the run is under CI (`CI=true`), where a missing tool fails.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The repository's `peers/<stack>/run`.
pub fn script(stack: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(stack)
        .join("run")
}

/// Builds the probe once per test process (`run --build-only`); later calls
/// return the first answer.
pub fn ready(stack: &str) -> Result<PathBuf, Unavailable> {
    static BUILT: Mutex<Option<HashMap<String, Result<PathBuf, Unavailable>>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(answer) = map.get(stack) {
        return answer.clone();
    }
    let run = script(stack);
    let answer = if !run.is_file() {
        Err(Unavailable::Broken(format!(
            "{} does not exist",
            run.display()
        )))
    } else {
        let out = common::run(Command::new(&run).arg("--build-only"), BUILD_DEADLINE);
        match out.code {
            Some(0) => Ok(run),
            Some(3) => Err(Unavailable::Missing(out.stderr.trim().to_owned())),
            _ => Err(Unavailable::Broken(format!(
                "{} --build-only failed: {}",
                run.display(),
                out.dump()
            ))),
        }
    };
    map.insert(stack.to_owned(), answer.clone());
    answer
}

/// The files a probe is given.
pub struct Files<'a> {
    pub chain: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

/// Runs the probe against `127.0.0.1:port` (blocking) and parses its line.
/// The exit status must match the outcome (0 delivered, 1 not).
pub fn run(script: &Path, port: u16, files: &Files<'_>, tls: &str) -> Result<Report, String> {
    let out = common::run(
        Command::new(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--cert")
            .arg(files.chain)
            .arg("--key")
            .arg(files.key)
            .arg("--ca")
            .arg(files.ca)
            .args(["--tls", tls]),
        PROBE_DEADLINE,
    );
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let [line] = lines.as_slice() else {
        return Err(format!("want exactly one line on stdout:\n{}", out.dump()));
    };
    let report: Report = serde_json::from_str(line)
        .map_err(|e| format!("not the probe's JSON ({e}):\n{}", out.dump()))?;
    let want = if report.outcome == "delivered" { 0 } else { 1 };
    if out.code != Some(want)
        || !["delivered", "tls_failed", "rejected"].contains(&report.outcome.as_str())
    {
        return Err(format!(
            "outcome {} with exit {:?} (want {want}):\n{}",
            report.outcome,
            out.code,
            out.dump()
        ));
    }
    Ok(report)
}
