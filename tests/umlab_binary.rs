//! The `umlab` binary: `cargo run --release` shows the seed-2013 table with 11
//! and 85 delivered, 355 failed, the break point, and writes the report folder;
//! `umlab analyze` gives a verdict on a real store.

use std::process::Command;

fn umlab(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_umlab"))
        .args(args)
        .output()
        .expect("umlab runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
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
fn default_run_shows_the_incident_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("rep");
    let (code, stdout, stderr) = umlab(&["--report", report.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(measured(&stdout, "seed-2013", "11"), "delivered");
    assert_eq!(measured(&stdout, "seed-2013", "85"), "delivered");
    assert_eq!(
        measured(&stdout, "seed-2013", "355"),
        "failed:no-acceptable-certificate"
    );
    assert!(stdout.contains("break point: 170 roots"), "{stdout}");
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
    for f in [
        "report.json",
        "report.csv",
        "seed-2013.svg",
        "thumbprint-lottery.svg",
    ] {
        let bytes = std::fs::metadata(report.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(bytes > 100, "{f} missing or empty");
    }
    let svg = std::fs::read_to_string(report.join("seed-2013.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("break point: 170 roots"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let seed = json
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "seed-2013"))
        .expect("seed-2013 in report.json");
    assert_eq!(seed["break_point"]["Ok"]["size"], 170);
    let csv = std::fs::read_to_string(report.join("report.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("seed-2013,schannel,355,")
        && l.contains("failed:no-acceptable-certificate")));
}

#[test]
fn analyze_gives_a_verdict_on_the_system_bundle() {
    let bundle = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !bundle.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI installs ca-certificates"
        );
        eprintln!("skipping: {} is missing", bundle.display());
        return;
    }
    let (code, stdout, stderr) = umlab(&["analyze", "--store", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("roots,") || stdout.contains("roots"),
        "{stdout}"
    );
    assert!(stdout.contains("Schannel server (cap 16384)"), "{stdout}");
    // A small budget makes the remediation speak.
    let (code, stdout, _) = umlab(&[
        "analyze",
        "--store",
        bundle.to_str().unwrap(),
        "--budget",
        "8000",
    ]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("remediation: remove"), "{stdout}");
    let (code, _, stderr) = umlab(&["analyze", "--store", "/nonexistent"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent"), "{stderr}");
}
