//! The `umlab` binary: `umlab run FILE` shows the incident's table (11
//! delivered, 355 failed, the break point) and writes the report folder;
//! `umlab analyze` gives a verdict on a real store; bad input is one line and
//! exit 2. The built-in scenarios themselves are measured once, by
//! tests/scenarios.rs (the library checks they are all embedded), so this runs
//! a small scenario of its own.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Longest a `umlab` run here may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// The incident in few stores: 11 and 355 roots, and a short break-point
/// search around 170 (the seed-2013 break point for umlab's lab PKI).
const SMALL: &str = r#"
name = "binary-small"
description = "seed-2013 in a few stores, for the binary's test"

[store]
profile = "realistic"
sizes = [11, 355]
seed = 2013
ca = "last"

[server]
policy = "schannel"

[client]
profile = "schannel"

[break_point]
from = 166
to = 174

[expect]
break_point = 170

[expect.outcomes]
11 = "delivered"
355 = "failed:no-acceptable-certificate"
"#;

fn umlab(args: &[&str]) -> common::Run {
    common::run(
        Command::new(env!("CARGO_BIN_EXE_umlab")).args(args),
        DEADLINE,
    )
}

/// The measured outcome in a table row that starts with `roots`, in the
/// section of `scenario`.
fn measured(stdout: &str, scenario: &str, roots: &str) -> String {
    let section: String = stdout
        .split("== ")
        .find(|s| s.starts_with(&format!("{scenario}:")))
        .unwrap_or_else(|| panic!("no {scenario} section in:\n{stdout}"))
        .to_owned();
    let cols: Vec<String> = section
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|c| c.first().map(String::as_str) == Some(roots))
        .unwrap_or_else(|| panic!("no row {roots} in:\n{section}"));
    // roots policy seed storeB listB sent dropped bodyB rec predicted measured ...
    cols.get(10).cloned().unwrap_or_default()
}

#[test]
fn run_shows_the_incident_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("binary-small.toml");
    std::fs::write(&file, SMALL).unwrap();
    let report = dir.path().join("rep");
    let run = umlab(&[
        "--report",
        report.to_str().unwrap(),
        "run",
        file.to_str().unwrap(),
    ]);
    let stdout = &run.stdout;
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(measured(stdout, "binary-small", "11"), "delivered");
    assert_eq!(
        measured(stdout, "binary-small", "355"),
        "failed:no-acceptable-certificate"
    );
    assert!(stdout.contains("break point: 170 roots"), "{stdout}");
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
    for f in ["report.json", "report.csv", "binary-small.svg"] {
        let bytes = std::fs::metadata(report.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(bytes > 100, "{f} missing or empty");
    }
    let svg = std::fs::read_to_string(report.join("binary-small.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("break point: 170 roots"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let small = json
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "binary-small"))
        .expect("binary-small in report.json");
    assert_eq!(small["break_points"][0]["order"], "store");
    assert_eq!(small["break_points"][0]["result"]["Ok"]["size"], 170);
    let csv = std::fs::read_to_string(report.join("report.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("binary-small,schannel,store,355,")
                && l.contains("failed:no-acceptable-certificate"))
    );
}

#[test]
fn an_unmet_expectation_exits_1_and_a_bad_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("rep");
    let file = dir.path().join("wrong.toml");
    let wrong = "name = \"wrong\"\ndescription = \"d\"\n[store]\nsizes = [11]\n\
                 [expect.outcomes]\n11 = \"failed\"\n";
    std::fs::write(&file, wrong).unwrap();
    let run = umlab(&[
        "--report",
        report.to_str().unwrap(),
        "run",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(run.stdout.contains("PROBLEM"), "{}", run.dump());
    std::fs::write(
        &file,
        "name = \"../x\"\ndescription = \"d\"\n[store]\nsizes = [11]\n",
    )
    .unwrap();
    let run = umlab(&["run", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.dump());
    assert!(run.stderr.contains("A-Z a-z 0-9"), "{}", run.dump());
}

#[test]
fn analyze_gives_a_verdict_on_the_system_bundle() {
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !bundle.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI installs ca-certificates"
        );
        eprintln!("skipping: {} is missing", bundle.display());
        return;
    }
    let run = umlab(&["analyze", "--store", bundle.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let stdout = &run.stdout;
    assert!(stdout.contains("roots,"), "{stdout}");
    assert!(stdout.contains("Schannel server (cap 16384)"), "{stdout}");
    // Every client preset of um-sim is judged, against both servers.
    for preset in umlab::analyze::preset_names() {
        assert_eq!(
            stdout.matches(&format!("    {preset} ")).count(),
            2,
            "{stdout}"
        );
    }
    // A small budget makes the remediation speak.
    let run = umlab(&[
        "analyze",
        "--store",
        bundle.to_str().unwrap(),
        "--budget",
        "8000",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(run.stdout.contains("remediation: remove"), "{}", run.dump());
    // --emit writes the fix's files, PLAN.txt holding the report.
    let out = tempfile::tempdir().expect("temp dir");
    let emit = out.path().join("fix");
    let run = umlab(&[
        "analyze",
        "--store",
        bundle.to_str().unwrap(),
        "--budget",
        "8000",
        "--windows",
        "2008r2",
        "--emit",
        emit.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let mut names: Vec<String> = common::files_in(&emit)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "PLAN.txt",
            "SendTrustedIssuerList-0.reg",
            "remove-fewest-roots.ps1"
        ],
        "{}",
        run.dump()
    );
    let plan = std::fs::read_to_string(emit.join("PLAN.txt")).expect("PLAN.txt");
    assert!(plan.contains("fix for Windows Server 2008 R2"), "{plan}");
    let run = umlab(&[
        "analyze",
        "--store",
        bundle.to_str().unwrap(),
        "--windows",
        "xp",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    let run = umlab(&["analyze", "--store", "/nonexistent"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("/nonexistent"), "{}", run.dump());
}
