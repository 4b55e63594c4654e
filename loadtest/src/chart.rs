//! Summary of a report (`whep`, `chat` or `checkout` JSON lines): medians per (server, x) over
//! the alternating rounds, the ratio of the subject server against each peer, and a PNG chart of
//! the four figures that matter for that kind of report.

use crate::ChartArgs;
use anyhow::{Context, bail};
use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// Font the chart is drawn with (Debian's fonts-dejavu-core, installed by the setup script).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One figure of a row, as charted: its title and the row field holding it.
struct Metric {
    title: &'static str,
    field: &'static str,
}

/// What a kind of report charts: its title, the field on the x axis, four metrics.
struct Spec {
    title: &'static str,
    x: &'static str,
    metrics: [Metric; 4],
}

const fn m(title: &'static str, field: &'static str) -> Metric {
    Metric { title, field }
}

const SPECS: [(&str, Spec); 11] = [
    (
        "glass",
        Spec {
            title: "Glass to glass, one publisher and one viewer (WebRTC, and LL-HLS in hls.js)",
            x: "part_ms",
            metrics: [
                m("glass to glass p50 (ms)", "p50_ms"),
                m("glass to glass p95 (ms)", "p95_ms"),
                m("hls.js stalls while measured", "stalls"),
                m(
                    "a video part asked for, after its media ended (ms)",
                    "video_part_asked_ms",
                ),
            ],
        },
    ),
    (
        "api",
        Spec {
            title: "Seller API: a rate-limited read, one node and two sharing Redis",
            x: "concurrency",
            metrics: [
                m("requests per second", "requests_per_s"),
                m("latency p50 (ms)", "latency_p50_ms"),
                m("latency p99 (ms)", "latency_p99_ms"),
                m("server CPU s/s (both nodes)", "server_cpu_per_s"),
            ],
        },
    ),
    (
        "whep",
        Spec {
            title: "WHEP fan-out, one ~1.5 Mbit/s VP8 publisher",
            x: "subscribers",
            metrics: [
                m(
                    "server CPU s/s per 100 subscribers",
                    "server_cpu_per_100_subscribers",
                ),
                m(
                    "server resident memory (MB, all its processes)",
                    "server_rss_mb",
                ),
                m("forwarding delay p99 (ms)", "delay_p99_ms"),
                m("delivery ratio", "delivery_ratio"),
            ],
        },
    ),
    (
        "chat",
        Spec {
            title: "Chat fan-out: one room, messages in at a fixed rate",
            x: "members",
            metrics: [
                m("deliveries per second", "deliveries_per_s"),
                m("end-to-end latency p99 (ms)", "latency_p99_ms"),
                m("server CPU s/s", "server_cpu_per_s"),
                m("server resident memory (MB)", "server_rss_mb"),
            ],
        },
    ),
    (
        "checkout",
        Spec {
            title: "Orders per second against the database's own ceiling",
            x: "concurrency",
            metrics: [
                m("orders (or raw UPDATEs) per second", "orders_per_s"),
                m("latency p50 (ms)", "latency_p50_ms"),
                m("latency p99 (ms)", "latency_p99_ms"),
                m("server CPU s/s", "server_cpu_per_s"),
            ],
        },
    ),
    (
        "transcode",
        Spec {
            title: "HLS ladder: the same input, the same renditions, preset and bitrates",
            x: "ladders",
            metrics: [
                m("input frames per second (all ladders)", "frames_per_s"),
                m("slowest ladder's speed (x real time)", "speed"),
                m("CPU s/s", "cpu_per_s"),
                m("wall seconds", "wall_s"),
            ],
        },
    ),
    (
        "whisper",
        Spec {
            title: "Whisper tiny.en on the CPU: the same weights, clips and threads",
            x: "clip_seconds",
            metrics: [
                m("real-time factor (lower is faster)", "rtf"),
                m("word error rate", "wer"),
                m("speed (x real time)", "speed"),
                m("transcription seconds", "transcribe_seconds"),
            ],
        },
    ),
    (
        "captions",
        Spec {
            title: "Live captions: streams speaking at once, one 2-core machine",
            x: "streams",
            metrics: [
                m("final caption latency p50 (s)", "latency_p50_s"),
                m("final caption latency p95 (s)", "latency_p95_s"),
                m("phrases captioned (share)", "captioned_ratio"),
                m("word error rate", "wer"),
            ],
        },
    ),
    (
        "translate",
        Spec {
            title: "Translation on product pitches (x: 1 en>es, 2 en>de, 3 es>en, 4 de>en)",
            x: "direction_no",
            metrics: [
                m("chrF2 (0-100, higher is better)", "chrf"),
                m("seconds per sentence (text input)", "seconds_per_sentence"),
                m("chrF2 of the transcript (speech input)", "source_chrf"),
                m("sentences", "sentences"),
            ],
        },
    ),
    (
        "auction",
        Spec {
            title: "Live auction: N bidders in one room, bids offered per second",
            x: "offered_per_s",
            metrics: [
                m("bids answered per second", "answered_per_s"),
                m("bids accepted (leading) per second", "accepted_per_s"),
                m(
                    "bid to broadcast p99, every member (ms)",
                    "broadcast_p99_ms",
                ),
                m("server CPU s/s", "server_cpu_per_s"),
            ],
        },
    ),
    (
        "hls",
        Spec {
            title: "LL-HLS viewers: blocking playlist reloads and part fetches",
            x: "viewers",
            metrics: [
                m("part fetch p99 (ms)", "fetch_p99_ms"),
                m("server CPU s/s", "server_cpu_per_s"),
                m(
                    "server runtime CPU s/s (serving)",
                    "server_runtime_cpu_per_s",
                ),
                m("server resident memory (MB)", "server_rss_mb"),
            ],
        },
    ),
];

fn field(row: &Value, name: &str) -> Option<f64> {
    row.get(name).and_then(Value::as_f64)
}

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

/// label -> x -> rows.
type Grouped = BTreeMap<String, BTreeMap<usize, Vec<Value>>>;

fn medians(grouped: &Grouped, metric: &Metric) -> BTreeMap<String, Vec<(usize, f64)>> {
    grouped
        .iter()
        .map(|(label, by_n)| {
            let points = by_n
                .iter()
                .filter_map(|(n, rows)| {
                    median(rows.iter().filter_map(|r| field(r, metric.field)).collect())
                        .map(|m| (*n, m))
                })
                .collect();
            (label.clone(), points)
        })
        .collect()
}

pub fn run(args: &ChartArgs) -> anyhow::Result<()> {
    let Some((_, spec)) = SPECS.iter().find(|(k, _)| *k == args.kind) else {
        bail!(
            "unknown report kind {} (glass, api, whep, chat, checkout, auction, transcode, hls, whisper, captions, translate)",
            args.kind
        );
    };
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut grouped = Grouped::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line)?;
        let label = row["label"]
            .as_str()
            .context("row without label")?
            .to_owned();
        let x = field(&row, spec.x).with_context(|| format!("row without {}", spec.x))? as usize;
        grouped
            .entry(label)
            .or_default()
            .entry(x)
            .or_default()
            .push(row);
    }
    print_table(&grouped, spec, &args.subject);
    draw(
        &grouped,
        spec,
        args.title.as_deref().unwrap_or(spec.title),
        &args.png,
    )?;
    println!("chart: {}", args.png.display());
    Ok(())
}

fn print_table(grouped: &Grouped, spec: &Spec, subject: &str) {
    for metric in &spec.metrics {
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
            let mut line = format!("  {}={n:>5}:", spec.x);
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

fn draw(grouped: &Grouped, spec: &Spec, title: &str, png: &std::path::Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("reading font {FONT}"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("invalid font {FONT}"))?;
    let root = BitMapBackend::new(png, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 28))?;
    let palette = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    for (area, metric) in root.split_evenly((2, 2)).iter().zip(spec.metrics.iter()) {
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
            .x_desc(spec.x)
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
