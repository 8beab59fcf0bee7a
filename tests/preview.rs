//! The `umlab` binary's analytic preview agrees with the incident: an 11- and
//! an 85-root store keep the enterprise CA in Schannel's 16 KB list, a 355-root
//! store loses it.

use std::process::Command;

fn run_umlab() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_umlab"))
        .output()
        .expect("umlab runs");
    assert!(
        out.status.success(),
        "umlab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn row(output: &str, roots: u64) -> Vec<String> {
    output
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(&roots.to_string()))
        .unwrap_or_else(|| panic!("no row for {roots} roots in:\n{output}"))
}

#[test]
fn incident_sizes_match_the_incident() {
    let out = run_umlab();
    assert!(
        out.contains("analytic prediction only"),
        "the preview must say what it is"
    );
    for (roots, listed) in [(11, true), (85, true), (355, false)] {
        let cols = row(&out, roots);
        let bytes: usize = cols[1].parse().expect("list bytes");
        assert_eq!(bytes <= 16_384, listed, "{roots} roots: {cols:?}");
        assert_eq!(cols[4] == "yes", listed, "{roots} roots: {cols:?}");
    }
}

#[test]
fn break_point_brackets_the_budget() {
    let out = run_umlab();
    let line = out
        .lines()
        .find(|l| l.contains("list over 16,384"))
        .expect("a 16 KB break point");
    // "... from N roots (N-1 roots: A bytes; N roots: B bytes)"
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let [.., n, n_before, a, n_again, b] = nums[..] else {
        panic!("unexpected break-point line: {line}");
    };
    assert_eq!(n_before + 1, n);
    assert_eq!(n_again, n);
    assert!(a <= 16_384 && b > 16_384, "{line}");
    assert!(
        (86..355).contains(&n),
        "break point {n} must lie between 85 and 355 roots"
    );
}
