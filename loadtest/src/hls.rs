//! `hls`: N LL-HLS viewers of one live stream, each behaving as a low-latency player does
//! (hls.js without preload hints): a blocking playlist reload for the next part
//! (`_HLS_msn`/`_HLS_part`), then that part. Reports requests per second, the time to fetch a
//! listed part (the serving latency: the part exists when it is asked for), the blocking reload
//! time (about one part long by design), and the server's CPU and memory.

use crate::stats::{CpuWindow, percentile, rss_of, threads_cpu};

/// The name the server's async runtime gives its threads, as /proc shows it.
const RUNTIME_THREADS: &str = "tokio-rt";
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct HlsArgs {
    /// Master playlist of a live stream.
    #[arg(long)]
    pub master: String,
    /// Viewer counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    pub viewers: Vec<usize>,
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value = "vitrine")]
    pub label: String,
    #[arg(long, default_value = "hls-report.jsonl")]
    pub out: std::path::PathBuf,
    /// The origin's `/metrics`, when the viewers go through a cache: what reached the origin
    /// is counted there (`vitrine_hls_requests_total`, against `vitrine_hls_parts_total`).
    #[arg(long)]
    pub origin_metrics: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HlsRow {
    pub label: String,
    pub viewers: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    pub parts_per_s: f64,
    pub megabytes_per_s: f64,
    pub fetch_p50_ms: f64,
    pub fetch_p99_ms: f64,
    pub reload_p50_ms: f64,
    pub reload_p99_ms: f64,
    pub server_cpu_per_s: Option<f64>,
    /// The server's async runtime threads alone (HTTP serving, storage reads, the SFU's
    /// packets), without GStreamer's encoders: the origin's share of its CPU.
    #[serde(default)]
    pub server_runtime_cpu_per_s: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub generator_cpu_per_s: f64,
    /// Requests the origin answered per second (with `--origin-metrics`).
    #[serde(default)]
    pub origin_requests_per_s: Option<f64>,
    /// Part fetches that reached the origin per part it listed (all renditions together):
    /// about 1 behind a cache that collapses requests, the viewers' share without one.
    #[serde(default)]
    pub origin_part_fetches_per_part: Option<f64>,
    /// The same for blocking playlist reloads.
    #[serde(default)]
    pub origin_reloads_per_part: Option<f64>,
}

/// The origin's counters at one instant: every HLS request, part fetches, blocking reloads,
/// parts listed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct OriginCounts {
    requests: f64,
    parts_fetched: f64,
    reloads: f64,
    parts_listed: f64,
}

impl OriginCounts {
    /// Read from Prometheus text.
    fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if name.starts_with("vitrine_hls_requests_total{") {
                c.requests += v;
            }
            match name {
                "vitrine_hls_requests_total{kind=\"part\"}" => c.parts_fetched = v,
                "vitrine_hls_requests_total{kind=\"blocking\"}" => c.reloads = v,
                "vitrine_hls_parts_total" => c.parts_listed = v,
                _ => {}
            }
        }
        c
    }

    async fn read(http: &reqwest::Client, url: &str) -> anyhow::Result<Self> {
        let text = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Self::parse(&text))
    }
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    parts: AtomicU64,
    bytes: AtomicU64,
    fetch_us: std::sync::Mutex<Vec<u32>>,
    reload_us: std::sync::Mutex<Vec<u32>>,
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The part a playlist's preload hint names: (msn, index).
fn hint(playlist: &str) -> Option<(u64, u32)> {
    let uri = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))?
        .trim_end_matches('"');
    let (msn, index) = uri
        .strip_prefix('p')?
        .strip_suffix(".m4s")?
        .split_once('.')?;
    Some((msn.parse().ok()?, index.parse().ok()?))
}

/// Media playlist URLs of the master's variants.
async fn variants(http: &reqwest::Client, master: &str) -> anyhow::Result<Vec<String>> {
    let text = http
        .get(master)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let base = master.rsplit_once('/').context("master URL has no path")?.0;
    let list: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("{base}/{}", l.trim()))
        .collect();
    if list.is_empty() {
        bail!("the master playlist lists no variant");
    }
    Ok(list)
}

async fn viewer(http: reqwest::Client, playlist: String, deadline: Instant, tally: Arc<Tally>) {
    let dir = playlist.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
    let mut next = None;
    while Instant::now() < deadline {
        let url = match next {
            Some((msn, part)) => format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}"),
            None => playlist.clone(),
        };
        let started = Instant::now();
        let text = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.ok(),
            _ => None,
        };
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let Some(text) = text else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            next = None;
            continue;
        };
        if next.is_some() {
            tally.reload_us.lock().unwrap().push(micros(started));
        }
        let Some(upcoming) = hint(&text) else { return }; // ended
        // The part just listed (the one before the new hint), if the reload asked for it.
        if let Some((msn, part)) = next {
            let started = Instant::now();
            let got = match http.get(format!("{dir}/p{msn}.{part}.m4s")).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                _ => None,
            };
            tally.requests.fetch_add(1, Ordering::Relaxed);
            match got {
                Some(bytes) => {
                    tally.fetch_us.lock().unwrap().push(micros(started));
                    tally.parts.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                None => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        next = Some(upcoming);
    }
}

pub async fn run(args: HlsArgs) -> anyhow::Result<()> {
    if args.viewers.is_empty() || args.seconds == 0 {
        bail!("need at least one viewer count and a positive duration");
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(100_000)
        .timeout(Duration::from_secs(20))
        .build()?;
    let playlists = variants(&http, &args.master).await?;
    for &n in &args.viewers {
        let tally = Arc::new(Tally::default());
        let origin_before = match &args.origin_metrics {
            Some(url) => Some(OriginCounts::read(&http, url).await?),
            None => None,
        };
        let cpu = CpuWindow::start(&args.server_pid);
        let runtime0 = threads_cpu(&args.server_pid, RUNTIME_THREADS);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        if n == 0 {
            // The baseline: the server transcoding with nobody watching.
            tokio::time::sleep_until(deadline.into()).await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for v in 0..n {
            let playlist = playlists[v % playlists.len()].clone();
            tasks.spawn(viewer(http.clone(), playlist, deadline, Arc::clone(&tally)));
        }
        while tasks.join_next().await.is_some() {}
        let used = cpu.finish();
        let runtime = match (threads_cpu(&args.server_pid, RUNTIME_THREADS), runtime0) {
            (Some(b), Some(a)) => Some((b - a) / used.elapsed),
            _ => None,
        };
        let origin = match (&args.origin_metrics, origin_before) {
            (Some(url), Some(before)) => {
                let after = OriginCounts::read(&http, url).await?;
                let listed = (after.parts_listed - before.parts_listed).max(1.0);
                Some((
                    (after.requests - before.requests) / used.elapsed,
                    (after.parts_fetched - before.parts_fetched) / listed,
                    (after.reloads - before.reloads) / listed,
                ))
            }
            _ => None,
        };
        let mut fetch = std::mem::take(&mut *tally.fetch_us.lock().unwrap());
        let mut reload = std::mem::take(&mut *tally.reload_us.lock().unwrap());
        fetch.sort_unstable();
        reload.sort_unstable();
        let ms = percentile;
        let requests = tally.requests.load(Ordering::Relaxed);
        let row = HlsRow {
            label: args.label.clone(),
            viewers: n,
            seconds: used.elapsed,
            requests,
            errors: tally.errors.load(Ordering::Relaxed),
            requests_per_s: requests as f64 / used.elapsed,
            parts_per_s: tally.parts.load(Ordering::Relaxed) as f64 / used.elapsed,
            megabytes_per_s: tally.bytes.load(Ordering::Relaxed) as f64 / used.elapsed / 1e6,
            fetch_p50_ms: ms(&fetch, 0.50),
            fetch_p99_ms: ms(&fetch, 0.99),
            reload_p50_ms: ms(&reload, 0.50),
            reload_p99_ms: ms(&reload, 0.99),
            server_cpu_per_s: used.server_per_s,
            server_runtime_cpu_per_s: runtime,
            server_rss_mb: rss_of(&args.server_pid),
            generator_cpu_per_s: used.generator_per_s,
            origin_requests_per_s: origin.map(|o| o.0),
            origin_part_fetches_per_part: origin.map(|o| o.1),
            origin_reloads_per_part: origin.map(|o| o.2),
        };
        crate::report::append(&args.out, &row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_counts_are_read_from_prometheus_text() {
        let text = "# HELP vitrine_hls_requests HLS requests\n\
            vitrine_hls_requests_total{kind=\"part\"} 40\n\
            vitrine_hls_requests_total{kind=\"blocking\"} 38\n\
            vitrine_hls_requests_total{kind=\"master\"} 2\n\
            vitrine_hls_parts_total 20\n";
        let c = super::OriginCounts::parse(text);
        assert_eq!(
            c,
            super::OriginCounts {
                requests: 80.0,
                parts_fetched: 40.0,
                reloads: 38.0,
                parts_listed: 20.0
            }
        );
    }

    #[test]
    fn preload_hint() {
        let p = "#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p12.3.m4s\"\n";
        assert_eq!(super::hint(p), Some((12, 3)));
        assert_eq!(super::hint("#EXTM3U\n#EXT-X-ENDLIST\n"), None);
    }
}
