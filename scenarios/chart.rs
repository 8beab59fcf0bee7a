//! The chart of a scenario: CA-list bytes and outcome versus store size, the
//! 16 KB, 32 KB and 64 KB lines, the break point marked; or, for a Monte
//! Carlo sweep, the failure rate versus store size: the exact odds as a
//! curve, each measured rate with its 95% Wilson interval, and the break
//! point of the other orders.

use certgen::wire::{JAVA_LIMIT, SCHANNEL_LIMIT, TLS12_LIMIT};
use plotters::prelude::*;

use crate::engine::Point;
use crate::{Error, Result, ScenarioResult};

/// Renders the chart as SVG text.
pub fn svg(r: &ScenarioResult) -> Result<String> {
    let drawn = if r.lottery.is_empty() {
        draw(r)
    } else {
        draw_odds(r)
    };
    drawn.map_err(|e| Error::Chart {
        name: r.name.clone(),
        reason: e.to_string(),
    })
}

/// Draws the chart; plotters' errors carry the backend's type, so they
/// leave boxed and become text.
fn draw(r: &ScenarioResult) -> Result<String, Box<dyn std::error::Error>> {
    let mut points: Vec<&Point> = r.points.iter().collect();
    for bp in r.break_points.iter().filter_map(|b| b.result.as_ref().ok()) {
        points.push(&bp.below);
        points.push(&bp.at);
    }
    let max_x = points.iter().map(|p| p.size).max().unwrap_or(10).max(10) as f64 * 1.05;
    let max_y = points
        .iter()
        .map(|p| p.store_list_bytes)
        .max()
        .unwrap_or(0)
        // Room for the 64 KB line however small the stores.
        .max(TLS12_LIMIT + TLS12_LIMIT / 16) as f64
        * 1.05;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: CA list vs store size", r.name),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc("roots in the store (enterprise CA included)")
            .y_desc("bytes of CA names")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (limit, label, color) in [
            (
                SCHANNEL_LIMIT as f64,
                "16 KB: Schannel cap, one record",
                RGBColor(200, 120, 0),
            ),
            (JAVA_LIMIT as f64, "32 KB: Java 17", RGBColor(150, 0, 150)),
            (
                TLS12_LIMIT as f64,
                "64 KB: TLS 1.2 bound",
                RGBColor(200, 0, 0),
            ),
        ] {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, limit), (max_x, limit)],
                    color.stroke_width(1),
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        let mut sorted: Vec<&&Point> = points.iter().collect();
        sorted.sort_by_key(|p| (p.size, p.seed));
        chart
            .draw_series(LineSeries::new(
                sorted
                    .iter()
                    .map(|p| (p.size as f64, p.store_list_bytes as f64)),
                BLUE.mix(0.4).stroke_width(1),
            ))?
            .label("whole store")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.mix(0.4)));
        chart
            .draw_series(sorted.iter().map(|p| {
                let color = if p.measured.failed() { RED } else { GREEN };
                Circle::new((p.size as f64, p.list_bytes as f64), 4, color.filled())
            }))?
            .label("names sent: delivered (green) / failed (red)")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, GREEN.filled()));
        for bp in r.break_points.iter().filter_map(|b| b.result.as_ref().ok()) {
            let x = bp.size as f64;
            chart
                .draw_series(LineSeries::new(
                    [(x, 0.0), (x, max_y)],
                    BLACK.stroke_width(2),
                ))?
                .label(format!("break point: {} roots", bp.size))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(out)
}

/// The failure rate versus store size of a Monte Carlo sweep: the exact
/// odds, the measured rates with their 95% Wilson intervals, and the
/// break point of each order searched (a step from 0 to 100%).
fn draw_odds(r: &ScenarioResult) -> Result<String, Box<dyn std::error::Error>> {
    let curve: &[f64] = match &r.odds {
        Some(Ok(o)) => &o.curve,
        _ => &[],
    };
    let max_size = r
        .lottery
        .iter()
        .map(|l| l.size)
        .chain(
            r.break_points
                .iter()
                .filter_map(|b| b.result.as_ref().ok())
                .map(|b| b.size),
        )
        .chain(std::iter::once(curve.len().saturating_sub(1)))
        .max()
        .unwrap_or(10)
        .max(10);
    let max_x = max_size as f64 * 1.05;
    let order = r.lottery.first().map_or("thumbprint", |l| l.order.as_str());
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: failure rate vs store size ({order} order)", r.name),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_x, 0f64..105f64)?;
        chart
            .configure_mesh()
            .x_desc("roots in the store (enterprise CA included)")
            .y_desc("organisations that fail (%)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        if !curve.is_empty() {
            chart
                .draw_series(LineSeries::new(
                    curve
                        .iter()
                        .enumerate()
                        .skip(1)
                        .map(|(n, p)| (n as f64, 100.0 * p)),
                    BLUE.stroke_width(2),
                ))?
                .label("exact odds (CA's thumbprint uniformly random)")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        }
        let bar = RED.stroke_width(2);
        let cap = max_x * 0.006;
        chart
            .draw_series(r.lottery.iter().map(|l| {
                let x = l.size as f64;
                let (lo, hi) = (100.0 * l.wilson_low, 100.0 * l.wilson_high);
                PathElement::new(
                    [
                        (x - cap, lo),
                        (x + cap, lo),
                        (x, lo),
                        (x, hi),
                        (x - cap, hi),
                        (x + cap, hi),
                    ],
                    bar,
                )
            }))?
            .label("measured, with its 95% Wilson interval")
            .legend(move |(x, y)| PathElement::new([(x + 8, y - 6), (x + 8, y + 6)], bar));
        chart.draw_series(
            r.lottery
                .iter()
                .map(|l| Circle::new((l.size as f64, 100.0 * l.rate()), 4, RED.filled())),
        )?;
        chart.draw_series(r.lottery.iter().map(|l| {
            Text::new(
                format!("{}/{}", l.failures, l.runs),
                (l.size as f64 + cap * 1.5, 100.0 * l.rate() + 2.0),
                ("sans-serif", 12).into_font().color(&BLACK),
            )
        }))?;
        for b in &r.break_points {
            let Ok(bp) = &b.result else { continue };
            let x = bp.size as f64;
            let color = if b.order == order {
                BLACK.mix(0.5)
            } else {
                BLACK.into()
            };
            chart
                .draw_series(LineSeries::new(
                    [(0.0, 0.0), (x, 0.0), (x, 100.0), (max_x, 100.0)],
                    color.stroke_width(1),
                ))?
                .label(format!(
                    "{} order, lab CA (seed {}): breaks at {} roots",
                    b.order, bp.at.seed, bp.size
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(out)
}
