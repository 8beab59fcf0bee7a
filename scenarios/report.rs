//! Reports: a compact text table per scenario, and the report folder
//! (`report.json`, `report.csv`, one SVG chart per scenario).

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::Point;
use crate::{Error, Result, ScenarioResult};

/// The text table of one scenario, with its break point and lottery.
pub fn table(r: &ScenarioResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {}: {}", r.name, r.description);
    let _ = writeln!(out, "   {}", r.setup);
    if r.points.iter().any(|p| p.removed > 0) {
        let _ = writeln!(
            out,
            "   (N-k: a store of N roots with k removed by the remediation)"
        );
    }
    let _ = writeln!(
        out,
        "{:>6} {:>8} {:>6} {:>10} {:>10} {:>6} {:>7} {:>7} {:>4}  {:<34} {:<34} events (hub | UM)",
        "roots",
        "policy",
        "seed",
        "store B",
        "list B",
        "sent",
        "dropped",
        "body B",
        "rec",
        "predicted",
        "measured"
    );
    // A Monte Carlo sweep's stores are summed up per size below; the other
    // orders' stores are shown one by one.
    let swept = |p: &Point| r.lottery.iter().any(|l| l.order == p.order);
    for p in r.points.iter().filter(|p| !swept(p)) {
        row(&mut out, p);
    }
    let in_sweep = r.points.iter().filter(|p| swept(p)).count();
    if in_sweep > 0 {
        let _ = writeln!(
            out,
            "   ({in_sweep} stores of the Monte Carlo measured; every one is in report.json and report.csv)"
        );
    }
    for searched in &r.break_points {
        let order = if r.break_points.len() > 1 {
            format!(" ({} order)", searched.order)
        } else {
            String::new()
        };
        match &searched.result {
            Ok(bp) => {
                let _ = writeln!(
                    out,
                    "break point{order}: {} roots ({} measured stores): {} roots {} ({} bytes of names), {} roots {} ({} bytes)",
                    bp.size,
                    bp.probes,
                    bp.below.size,
                    bp.below.measured.label(),
                    bp.below.list_bytes,
                    bp.at.size,
                    bp.at.measured.label(),
                    bp.at.list_bytes
                );
                row(&mut out, &bp.below);
                row(&mut out, &bp.at);
            }
            Err(why) => {
                let _ = writeln!(out, "break point{order}: none found ({why})");
            }
        }
    }
    lottery_table(&mut out, r);
    if r.problems.is_empty() {
        let _ = writeln!(out, "prediction and measurement agree on every store");
    } else {
        for p in &r.problems {
            let _ = writeln!(out, "PROBLEM: {p}");
        }
    }
    out
}

fn row(out: &mut String, p: &Point) {
    let um: Vec<String> = dedup(p.um_events.iter().map(u32::to_string));
    let hub = dedup(p.server_events.iter().cloned());
    let _ = writeln!(
        out,
        "{:>6} {:>8} {:>6} {:>10} {:>10} {:>6} {:>7} {:>7} {:>4}  {:<34} {:<34} {} | {}",
        if p.removed > 0 {
            format!("{}-{}", p.size, p.removed)
        } else {
            p.size.to_string()
        },
        p.policy,
        p.seed,
        p.store_list_bytes,
        p.list_bytes,
        p.names_sent,
        p.names_dropped,
        p.body_bytes,
        p.records,
        p.predicted.label(),
        p.measured.label(),
        if hub.is_empty() {
            "-".into()
        } else {
            hub.join(", ")
        },
        if um.is_empty() {
            "-".into()
        } else {
            um.join(", ")
        },
    );
}

/// The Monte Carlo per size beside the exact odds, and how they compare.
fn lottery_table(out: &mut String, r: &ScenarioResult) {
    if r.lottery.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{:>6} {:>10} {:>8} {:>9} {:>17} {:>8} {:>7}  exact inside",
        "roots", "order", "fail", "measured", "95% Wilson", "exact", "miss P"
    );
    for l in &r.lottery {
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        let _ = writeln!(
            out,
            "{:>6} {:>10} {:>8} {:>9} {:>17} {:>8} {:>7}  {}",
            l.size,
            l.order,
            format!("{}/{}", l.failures, l.runs),
            pct(l.rate()),
            format!("[{}, {}]", pct(l.wilson_low), pct(l.wilson_high)),
            l.exact.map_or("-".into(), pct),
            l.miss_probability.map_or("-".into(), pct),
            match l.inside() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
    }
    match &r.odds {
        Some(Ok(o)) => {
            let _ = writeln!(
                out,
                "exact odds: {}; CA entry {} bytes, list budget {} bytes",
                o.model, o.ca_entry, o.list_budget
            );
            let _ = writeln!(
                out,
                "  outside the interval at {} of {} sizes (chance of at least that many: {:.3}); \
                 {} failures in {} organisations, {:.1} expected (two-sided chance: {}); \
                 problem below {:.0e}",
                o.misses,
                o.sizes,
                o.miss_tail,
                o.failures,
                o.runs,
                o.expected_failures,
                o.pooled_p
                    .map_or("not computed".into(), |p| format!("{p:.3}")),
                crate::engine::CHANCE_BOUND
            );
            let q: Vec<String> = o
                .break_point_quantiles
                .iter()
                .map(|(q, n)| match n {
                    Some(n) => format!("{:.0}%: {n} roots", 100.0 * q),
                    None => format!("{:.0}%: past {} roots", 100.0 * q, o.curve.len() - 1),
                })
                .collect();
            let _ = writeln!(
                out,
                "  break point under this order, quantiles: {}",
                q.join(", ")
            );
        }
        Some(Err(why)) => {
            let _ = writeln!(out, "exact odds: not computed ({why})");
        }
        None => {}
    }
}

/// Unique values in first-seen order, with a count when repeated.
fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for i in items {
        match seen.iter_mut().find(|(s, _)| *s == i) {
            Some((_, n)) => *n += 1,
            None => seen.push((i, 1)),
        }
    }
    seen.into_iter()
        .map(|(s, n)| if n > 1 { format!("{s} x{n}") } else { s })
        .collect()
}

/// A CSV field as RFC 4180 writes it: quoted (inner quotes doubled) when it
/// holds a comma, a quote, CR or LF, so a spreadsheet reads one cell.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// One CSV line per measured store, every scenario; fields quoted per RFC
/// 4180 ([`csv_field`]).
pub fn csv(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "scenario,policy,order,size,seed,ca_index,store_list_bytes,list_bytes,names_sent,names_dropped,body_bytes,records,ca_listed,predicted,measured,agree\n",
    );
    for r in results {
        let bp: Vec<&Point> = r
            .break_points
            .iter()
            .filter_map(|b| b.result.as_ref().ok())
            .flat_map(|bp| [&bp.below, &bp.at])
            .collect();
        for p in r.points.iter().chain(bp) {
            let fields = [
                r.name.clone(),
                p.policy.clone(),
                p.order.clone(),
                p.size.to_string(),
                p.seed.to_string(),
                p.ca_index.to_string(),
                p.store_list_bytes.to_string(),
                p.list_bytes.to_string(),
                p.names_sent.to_string(),
                p.names_dropped.to_string(),
                p.body_bytes.to_string(),
                p.records.to_string(),
                p.ca_listed.to_string(),
                p.predicted.label(),
                p.measured.label(),
                p.disagreements.is_empty().to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
    }
    out
}

/// Writes `report.json`, `report.csv` and `<scenario>.svg` into `dir`; a
/// scenario name that is not a plain file name (see
/// [`crate::model::check_name`]) is refused before anything is written.
pub fn write_folder(dir: &Path, results: &[ScenarioResult]) -> Result<Vec<String>> {
    use certgen::fsutil::{Access, create_dir, write_atomic};
    // Results built in code never went through the check at load.
    for r in results {
        crate::model::check_name(&r.name).map_err(Error::Invalid)?;
    }
    create_dir(dir)?;
    let mut written = Vec::new();
    let json = serde_json::to_vec_pretty(results)?;
    write_atomic(&dir.join("report.json"), &json, Access::Public)?;
    written.push("report.json".to_owned());
    write_atomic(
        &dir.join("report.csv"),
        csv(results).as_bytes(),
        Access::Public,
    )?;
    written.push("report.csv".to_owned());
    for r in results {
        let svg = crate::chart::svg(r)?;
        let name = format!("{}.svg", r.name);
        write_atomic(&dir.join(&name), svg.as_bytes(), Access::Public)?;
        written.push(name);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str) -> ScenarioResult {
        ScenarioResult {
            name: name.to_owned(),
            description: "d".into(),
            setup: "s".into(),
            points: Vec::new(),
            break_points: Vec::new(),
            lottery: Vec::new(),
            odds: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn write_folder_keeps_every_file_inside_the_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = dir.path().join("rep");
        let err = write_folder(&report, &[result("../x")]);
        assert!(err.is_err(), "a chart named ../x was written");
        assert!(!dir.path().join("x.svg").exists(), "x.svg outside --report");
        let written = write_folder(&report, &[result("ok")]).expect("a plain name");
        assert!(written.contains(&"ok.svg".to_owned()));
        assert!(report.join("ok.svg").is_file());
    }

    #[test]
    fn csv_quotes_fields_per_rfc_4180() {
        use crate::engine::{Outcome, Point};
        let point = Point {
            persona: "openssl".into(),
            size: 11,
            policy: "full,\"x\"".into(),
            order: "store".into(),
            removed: 0,
            seed: 1,
            ca_index: 10,
            store_list_bytes: 1,
            list_bytes: 1,
            names_sent: 1,
            names_dropped: 0,
            body_bytes: 1,
            records: 1,
            ca_listed: true,
            predicted: Outcome::Delivered,
            measured: Outcome::Failed("a\r\nb".into()),
            server_events: Vec::new(),
            um_events: Vec::new(),
            disagreements: Vec::new(),
        };
        let mut r = result("a,\"b\"");
        r.points.push(point);
        let text = csv(&[r]);
        let line = text.lines().nth(1).expect("a data line");
        assert!(
            line.starts_with(r#""a,""b""","full,""x""",store,11,1,10,"#),
            "{line}"
        );
        assert!(text.contains("\"failed:a\r\nb\""), "{text}");
        assert!(text.ends_with(",true\n"), "{text}");
    }
}
