//! Measuring mode (`cargo test --test clients -- --ignored measure`): for
//! each row, the largest CertificateRequest body the real client delivers
//! with and the smallest it fails on, by bisection over exact-size stores
//! (the client's CA listed, policy `full`), printed as a table. Fails when a
//! measured threshold differs from the preset's.

use std::time::{Duration, Instant};

use certgen::pki::Shape;
use lab_server::policy::Policy;
use um_sim::profile::Profile;

use crate::case::{self, Row};
use crate::probe::{self, Unavailable};
use crate::sizing;

/// One real run at one body size.
struct Point {
    body: usize,
    report: probe::Report,
    /// How the server saw the handshake end (alert included).
    server: String,
}

async fn at(row: Row, script: &std::path::Path, body: usize) -> Result<Point, String> {
    let shape = sizing::shape(row.tls);
    let pki = case::pki(Shape::OneTier);
    let list = sizing::list_for(&shape, body).ok_or("body below the fixed part")?;
    let (store, at) = sizing::store(list, &case::ca_root(pki));
    let mut lab = case::start(pki, store, at, Policy::Full, None, row.tls)
        .await
        .map_err(|e| format!("lab-server: {e}"))?;
    let got = lab.server.report().message_bytes;
    if got != body + 4 {
        return Err(format!("lab-server sends {got} bytes, wanted {}", body + 4));
    }
    let real = case::run_probe(&mut lab, script, pki, row.tls).await?;
    lab.server.shutdown(Duration::from_secs(1)).await;
    let server = real
        .event
        .as_ref()
        .and_then(|ev| ev.handshake.as_ref())
        .map_or("no handshake".into(), |h| {
            format!(
                "{}, alert {}",
                h.outcome,
                h.alert.as_deref().unwrap_or("none")
            )
        });
    Ok(Point {
        body,
        report: real.report,
        server,
    })
}

/// One row of the table.
struct Measured {
    row: Row,
    version: String,
    delivered: usize,
    failing: Option<Point>,
    preset_threshold: Option<usize>,
    max: usize,
    runs: usize,
    took: Duration,
}

async fn measure(row: Row, script: &std::path::Path) -> Result<Measured, String> {
    let started = Instant::now();
    let shape = sizing::shape(row.tls);
    let profile: Profile = row.preset.parse()?;
    let lo = shape.body_len(sizing::SMALL_BEFORE_CA + 2 + 100);
    let max = sizing::max_body(&shape);
    let preset_threshold = sizing::threshold(&profile, lo, max);
    let mut runs = 1;
    let top = at(row, script, max).await?;
    let version = top.report.version.clone();
    if top.report.outcome == "delivered" {
        return Ok(Measured {
            row,
            version,
            delivered: max,
            failing: None,
            preset_threshold,
            max,
            runs,
            took: started.elapsed(),
        });
    }
    let bottom = at(row, script, lo).await?;
    runs += 1;
    if bottom.report.outcome != "delivered" {
        return Err(format!(
            "{} does not deliver even at {lo} bytes: {:?}",
            row.stack, bottom.report
        ));
    }
    let (mut good, mut bad) = (lo, top);
    while bad.body - good > 1 {
        let mid = good + (bad.body - good) / 2;
        let p = at(row, script, mid).await?;
        runs += 1;
        if p.report.outcome == "delivered" {
            good = mid;
        } else {
            bad = p;
        }
    }
    Ok(Measured {
        row,
        version,
        delivered: good,
        failing: Some(bad),
        preset_threshold,
        max,
        runs,
        took: started.elapsed(),
    })
}

/// The trial: every row whose probe can run here.
pub fn run(rows: &[Row]) -> Result<(), String> {
    let mut table = vec![
        "| stack | version | preset | largest body delivered | smallest body failing | its error \
         | server saw | preset threshold | runs, time |"
            .to_owned(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |".to_owned(),
    ];
    let mut problems = Vec::new();
    for &row in rows {
        let script = match probe::ready(row.stack) {
            Ok(s) => s,
            Err(Unavailable::Missing(why)) if !probe::under_ci() => {
                table.push(format!("| {} | not run: {why} | | | | | | | |", row.stack));
                continue;
            }
            Err(Unavailable::Missing(why) | Unavailable::Broken(why)) => {
                problems.push(format!("{}: {why}", row.stack));
                continue;
            }
        };
        let m = match crate::runtime().block_on(measure(row, &script)) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("{}: {e}", row.stack));
                continue;
            }
        };
        let (failing, error, server) = match &m.failing {
            Some(p) => (
                p.body.to_string(),
                format!("`{}`", p.report.error.replace('|', "\\|")),
                p.server.clone(),
            ),
            None => (
                format!("none up to {} (the largest list TLS carries)", m.max),
                "-".into(),
                "-".into(),
            ),
        };
        let want = m.preset_threshold.map(|t| t.min(m.max));
        if want != Some(m.delivered) {
            problems.push(format!(
                "{}: measured threshold {} (body), preset {} says {want:?}",
                m.row.name(),
                m.delivered,
                m.row.preset
            ));
        }
        table.push(format!(
            "| {} | {} | {} | {} | {failing} | {error} | {server} | {} | {}, {:.1} s |",
            m.row.name(),
            m.version,
            m.row.preset,
            m.delivered,
            m.preset_threshold.map_or("-".into(), |t| t.to_string()),
            m.runs,
            m.took.as_secs_f64()
        ));
    }
    println!("{}", table.join("\n"));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
