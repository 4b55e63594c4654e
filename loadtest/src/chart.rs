//! Summary of a `whep` report: medians per (server, N) over the alternating rounds, the ratio of
//! the subject server against each peer, and a PNG chart of the four figures that matter.

use crate::ChartArgs;
use crate::report::Row;
use anyhow::Context;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Font the chart is drawn with (Debian's fonts-dejavu-core, installed by the setup script).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One figure of a row, as charted.
struct Metric {
    title: &'static str,
    value: fn(&Row) -> Option<f64>,
}

const METRICS: [Metric; 4] = [
    Metric {
        title: "server CPU s/s per 100 subscribers",
        value: |r| r.server_cpu_per_100_subscribers,
    },
    Metric {
        title: "server resident memory (MB, all its processes)",
        value: |r| r.server_rss_mb,
    },
    Metric {
        title: "forwarding delay p99 (ms)",
        value: |r| Some(r.delay_p99_ms),
    },
    Metric {
        title: "delivery ratio",
        value: |r| Some(r.delivery_ratio),
    },
];

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// label -> N -> rows.
type Grouped = BTreeMap<String, BTreeMap<usize, Vec<Row>>>;

fn medians(grouped: &Grouped, metric: &Metric) -> BTreeMap<String, Vec<(usize, f64)>> {
    grouped
        .iter()
        .map(|(label, by_n)| {
            let points = by_n
                .iter()
                .filter_map(|(n, rows)| {
                    median(rows.iter().filter_map(metric.value).collect()).map(|m| (*n, m))
                })
                .collect();
            (label.clone(), points)
        })
        .collect()
}

pub fn run(args: &ChartArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut grouped = Grouped::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Row = serde_json::from_str(line)?;
        grouped
            .entry(row.label.clone())
            .or_default()
            .entry(row.subscribers)
            .or_default()
            .push(row);
    }
    print_table(&grouped, &args.subject);
    draw(&grouped, &args.png)?;
    println!("chart: {}", args.png.display());
    Ok(())
}

fn print_table(grouped: &Grouped, subject: &str) {
    for metric in &METRICS {
        println!("\n{} (median over rounds)", metric.title);
        let by_label = medians(grouped, metric);
        let ns: std::collections::BTreeSet<usize> =
            by_label.values().flatten().map(|(n, _)| *n).collect();
        for n in ns {
            let at = |label: &str| {
                by_label
                    .get(label)
                    .and_then(|pts| pts.iter().find(|(pn, _)| *pn == n).map(|(_, v)| *v))
            };
            let mut line = format!("  N={n:>4}:");
            for label in by_label.keys() {
                if let Some(v) = at(label) {
                    line += &format!("  {label} {v:.4}");
                }
            }
            if let Some(s) = at(subject) {
                for peer in by_label.keys().filter(|l| *l != subject) {
                    if let Some(p) = at(peer).filter(|p| *p != 0.0) {
                        line += &format!("  {subject}/{peer} = {:.2}", s / p);
                    }
                }
            }
            println!("{line}");
        }
    }
}

fn draw(grouped: &Grouped, png: &std::path::Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("reading font {FONT}"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("invalid font {FONT}"))?;
    let root = BitMapBackend::new(png, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "WHEP fan-out, one ~1.5 Mbit/s VP8 publisher",
        ("sans-serif", 28),
    )?;
    let palette = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
    ];
    for (area, metric) in root.split_evenly((2, 2)).iter().zip(METRICS.iter()) {
        let series = medians(grouped, metric);
        let max_n = series
            .values()
            .flatten()
            .map(|(n, _)| *n)
            .max()
            .unwrap_or(1) as f64;
        let max_v = series
            .values()
            .flatten()
            .map(|(_, v)| *v)
            .fold(0.0_f64, f64::max)
            .max(1e-9);
        let mut chart = ChartBuilder::on(area)
            .caption(metric.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_n * 1.05, 0.0..max_v * 1.15)?;
        chart
            .configure_mesh()
            .x_desc("subscribers")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, (label, points)) in series.iter().enumerate() {
            let color = palette[i % palette.len()];
            let pts: Vec<(f64, f64)> = points.iter().map(|(n, v)| (*n as f64, *v)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
