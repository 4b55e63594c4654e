//! One measurement window and the report (JSON + PNG chart).

use crate::WhepArgs;
use crate::client::{Publisher, Subscriber};
use crate::stats::{CpuUse, CpuWindow, percentile, rss_of, udp_sockets_of};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub subscribers: usize,
    pub seconds: f64,
    pub packets_sent: u64,
    pub packets_expected: u64,
    pub packets_received: u64,
    pub delivery_ratio: f64,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub server_cpu_per_s: Option<f64>,
    pub server_cpu_per_100_subscribers: Option<f64>,
    pub server_rss_mb: Option<f64>,
    /// UDP sockets the server held at the window's end (rows from before it have none).
    #[serde(default)]
    pub server_udp_sockets: Option<usize>,
    pub generator_cpu_per_s: f64,
    /// From a subscriber's offer to its first keyframe, over the subscribers this row added
    /// (rows from before it have none).
    #[serde(default)]
    pub answered_p50_ms: Option<f64>,
    #[serde(default)]
    pub first_frame_p50_ms: Option<f64>,
    #[serde(default)]
    pub first_frame_p95_ms: Option<f64>,
}

pub async fn measure(
    publisher: &Publisher,
    subs: &[Subscriber],
    added: &[Subscriber],
    args: &WhepArgs,
) -> anyhow::Result<Row> {
    let times = |of: fn(&Subscriber) -> Option<&Duration>| {
        let mut t: Vec<u32> = added
            .iter()
            .filter_map(of)
            .map(|d| d.as_micros() as u32)
            .collect();
        t.sort_unstable();
        t
    };
    let (answered, frame) = (
        times(|s| Some(&s.tally.answered)),
        times(|s| s.tally.first_keyframe.get()),
    );
    let at = |t: &[u32], q| (!t.is_empty()).then(|| percentile(t, q));
    for s in subs {
        s.tally.delays.lock().unwrap().clear();
        s.tally.recording.store(true, Ordering::Relaxed);
    }
    let sent0 = publisher.sent.load(Ordering::Relaxed);
    let cpu = CpuWindow::start(&args.server_pid);
    let window_start = crate::client::micros_now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let sent = publisher.sent.load(Ordering::Relaxed) - sent0;
    let window_end = crate::client::micros_now();
    let CpuUse {
        elapsed,
        server_per_s: server_cpu,
        generator_per_s: own_cpu,
    } = cpu.finish();
    // Packets in flight at the window's end still arrive: give them a moment before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Only packets sent inside the window count, wherever they arrived.
    let mut delays = Vec::new();
    for s in subs {
        s.tally.recording.store(false, Ordering::Relaxed);
        delays.extend(
            s.tally
                .delays
                .lock()
                .unwrap()
                .drain(..)
                .filter(|(stamp, _)| (window_start..window_end).contains(stamp))
                .map(|(_, delay)| delay),
        );
    }
    let received = delays.len() as u64;
    delays.sort_unstable();
    let expected = sent * subs.len() as u64;
    let n = subs.len();
    Ok(Row {
        label: args.label.clone(),
        subscribers: n,
        seconds: elapsed,
        packets_sent: sent,
        packets_expected: expected,
        packets_received: received,
        delivery_ratio: if expected == 0 {
            0.0
        } else {
            received as f64 / expected as f64
        },
        delay_p50_ms: percentile(&delays, 0.50),
        delay_p99_ms: percentile(&delays, 0.99),
        server_cpu_per_s: server_cpu,
        server_cpu_per_100_subscribers: server_cpu.map(|c| c * 100.0 / n as f64),
        server_rss_mb: rss_of(&args.server_pid),
        server_udp_sockets: udp_sockets_of(&args.server_pid),
        generator_cpu_per_s: own_cpu,
        answered_p50_ms: at(&answered, 0.50),
        first_frame_p50_ms: at(&frame, 0.50),
        first_frame_p95_ms: at(&frame, 0.95),
    })
}

/// Appends one row to a JSON-lines report, and prints it as the run goes.
pub fn append(path: &std::path::Path, row: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let line = serde_json::to_string(row)?;
    println!("{line}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening report {}", path.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}
