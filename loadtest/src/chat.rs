//! `chat`: N websocket members in one room, M messages per second in (one publisher per
//! message per second, as in a real room where many people each say a little). Measures
//! deliveries per second, end-to-end latency (from a send time in each message), the server's
//! CPU and memory. Speaks Vitrine's chat protocol, or the Nchan peer's raw pub/sub.

use crate::stats::{CpuUse, CpuWindow, percentile, rss_of};
use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Clone)]
pub struct ChatArgs {
    /// `vitrine` or `nchan`.
    #[arg(long, default_value = "vitrine")]
    pub target: String,
    /// Server base URL (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A seller API token (Vitrine: the room is a new stream of this seller).
    #[arg(long, default_value = "")]
    pub token: String,
    /// Member counts to measure, in order (members are added between steps).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub members: Vec<usize>,
    /// Messages per second into the room.
    #[arg(long, default_value = "100")]
    pub rate: u32,
    /// Measurement window per step.
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value = "vitrine")]
    pub label: String,
    #[arg(long, default_value = "chat-report.jsonl")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRow {
    pub label: String,
    pub members: usize,
    pub rate: u32,
    pub seconds: f64,
    pub messages_sent: u64,
    pub deliveries_expected: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub delivery_ratio: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub server_cpu_per_s: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub generator_cpu_per_s: f64,
}

/// Latency samples (µs) of messages sent inside the window, and the member's count.
#[derive(Default)]
struct Tally {
    samples: std::sync::Mutex<Vec<u32>>,
}

struct Shared {
    recording: AtomicBool,
    /// Messages whose send time is at or after this (µs since the generator's epoch) count.
    window_start: AtomicU64,
    window_end: AtomicU64,
}

/// Members connecting at once while the room grows.
const JOIN_CONCURRENCY: usize = 64;

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn micros_now() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// Finds `t=<micros>;` in a frame.
fn stamp(text: &str) -> Option<u64> {
    let start = text.find("t=")? + 2;
    let end = text[start..].find(';')? + start;
    text[start..end].parse().ok()
}

/// The room: where members subscribe and publishers publish.
struct Room {
    target: String,
    ws_base: String,
    /// Vitrine: stream id; Nchan: channel id.
    id: String,
}

impl Room {
    async fn create(args: &ChatArgs) -> anyhow::Result<Self> {
        let ws_base = args.server.replacen("http", "ws", 1);
        let id = match args.target.as_str() {
            "vitrine" => {
                let http = reqwest::Client::new();
                let stream =
                    crate::create_stream(&http, &args.server, &args.token, "chat loadtest").await?;
                stream["id"].as_str().context("stream id")?.to_owned()
            }
            "nchan" => format!("room{}", micros_now()),
            other => bail!("unknown target {other}"),
        };
        Ok(Self {
            target: args.target.clone(),
            ws_base,
            id,
        })
    }

    fn member_url(&self) -> String {
        match self.target.as_str() {
            "vitrine" => format!("{}/ws/streams/{}/chat", self.ws_base, self.id),
            _ => format!("{}/sub/{}", self.ws_base, self.id),
        }
    }

    fn publisher_url(&self) -> String {
        match self.target.as_str() {
            "vitrine" => self.member_url(),
            _ => format!("{}/pub/{}", self.ws_base, self.id),
        }
    }

    /// The frame a publisher sends for one message.
    fn message(&self, seq: u64) -> String {
        let body = format!("t={}; message {seq} from the load generator", micros_now());
        match self.target.as_str() {
            "vitrine" => serde_json::json!({ "type": "chat", "text": body }).to_string(),
            _ => body,
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str, hello: Option<serde_json::Value>) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connecting {url}"))?;
    if let Some(hello) = hello {
        ws.send(Message::Text(hello.to_string().into())).await?;
        // Wait for the welcome so the member is in the room before it counts.
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg?
                && t.contains("\"welcome\"")
            {
                break;
            }
        }
    }
    Ok(ws)
}

fn spawn_member(mut ws: Ws, shared: Arc<Shared>, tally: Arc<Tally>) {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            if !shared.recording.load(Ordering::Relaxed) {
                continue;
            }
            let Some(sent) = stamp(&text) else { continue };
            let (from, to) = (
                shared.window_start.load(Ordering::Relaxed),
                shared.window_end.load(Ordering::Relaxed),
            );
            if sent >= from && sent < to {
                let delay = micros_now().saturating_sub(sent).min(u64::from(u32::MAX)) as u32;
                tally.samples.lock().unwrap().push(delay);
            }
        }
    });
}

/// Buyer tokens for Vitrine publishers (chat needs a buyer identity).
async fn buyer_token(server: &str, n: u32) -> anyhow::Result<String> {
    let b: serde_json::Value = reqwest::Client::new()
        .post(format!("{server}/api/v1/buyers"))
        .json(&serde_json::json!({ "display_name": format!("publisher {n}") }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(b["token"].as_str().context("token")?.to_owned())
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    if args.members.is_empty() || args.rate == 0 || args.seconds == 0 {
        bail!("need member counts, a positive rate and a positive duration");
    }
    let room = Arc::new(Room::create(&args).await?);
    let shared = Arc::new(Shared {
        recording: AtomicBool::new(false),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(0),
    });
    let sent = Arc::new(AtomicU64::new(0));
    // Publishers: `rate` of them, one message per second each, spread over the second.
    for p in 0..args.rate {
        let hello = match room.target.as_str() {
            "vitrine" => Some(
                serde_json::json!({ "type": "hello", "token": buyer_token(&args.server, p).await? }),
            ),
            _ => None,
        };
        let ws = open(&room.publisher_url(), hello).await?;
        let (room, sent) = (Arc::clone(&room), Arc::clone(&sent));
        let offset = Duration::from_micros(1_000_000 * u64::from(p) / u64::from(args.rate));
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seq = 0u64;
            let (mut sink, mut source) = ws.split();
            // Publishers read (and drop) what the room sends them, so they are never slow members.
            tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
            loop {
                tick.tick().await;
                seq += 1;
                if sink
                    .send(Message::Text(room.message(seq).into()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut tallies: Vec<Arc<Tally>> = Vec::new();
    for &n in &args.members {
        // Members join JOIN_CONCURRENCY at a time, as a crowd arriving does.
        while tallies.len() < n {
            let batch = (n - tallies.len()).min(JOIN_CONCURRENCY);
            let mut joins = tokio::task::JoinSet::new();
            for _ in 0..batch {
                let url = room.member_url();
                let hello =
                    (room.target == "vitrine").then(|| serde_json::json!({ "type": "hello" }));
                joins.spawn(async move { open(&url, hello).await });
            }
            while let Some(joined) = joins.join_next().await {
                let tally = Arc::new(Tally::default());
                spawn_member(joined??, Arc::clone(&shared), Arc::clone(&tally));
                tallies.push(tally);
            }
        }
        // Settle: let connection bursts finish before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let row = measure(&args, n, &shared, &sent, &tallies[..n]).await;
        crate::report::append(&args.out, &row)?;
    }
    Ok(())
}

async fn measure(
    args: &ChatArgs,
    members: usize,
    shared: &Shared,
    sent: &AtomicU64,
    tallies: &[Arc<Tally>],
) -> ChatRow {
    for t in tallies {
        t.samples.lock().unwrap().clear();
    }
    let cpu = CpuWindow::start(&args.server_pid);
    let sent0 = sent.load(Ordering::Relaxed);
    shared.window_start.store(micros_now(), Ordering::Relaxed);
    shared.window_end.store(u64::MAX, Ordering::Relaxed);
    shared.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    shared.window_end.store(micros_now(), Ordering::Relaxed);
    let messages = sent.load(Ordering::Relaxed) - sent0;
    let CpuUse {
        elapsed,
        server_per_s: server_cpu,
        generator_per_s: own_cpu,
    } = cpu.finish();
    // Messages sent at the end of the window are still on their way: let them land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.recording.store(false, Ordering::Relaxed);
    let mut samples = Vec::new();
    for t in tallies {
        samples.extend(t.samples.lock().unwrap().drain(..));
    }
    samples.sort_unstable();
    let expected = messages * members as u64;
    let deliveries = samples.len() as u64;
    ChatRow {
        label: args.label.clone(),
        members,
        rate: args.rate,
        seconds: elapsed,
        messages_sent: messages,
        deliveries_expected: expected,
        deliveries,
        deliveries_per_s: deliveries as f64 / elapsed,
        delivery_ratio: if expected == 0 {
            0.0
        } else {
            deliveries as f64 / expected as f64
        },
        latency_p50_ms: percentile(&samples, 0.50),
        latency_p99_ms: percentile(&samples, 0.99),
        server_cpu_per_s: server_cpu,
        server_rss_mb: rss_of(&args.server_pid),
        generator_cpu_per_s: own_cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_send_time_in_either_framing() {
        assert_eq!(stamp("t=123; message 1"), Some(123));
        assert_eq!(
            stamp(r#"{"id":"1-0","type":"chat","text":"t=42; hi"}"#),
            Some(42)
        );
        assert_eq!(stamp("no stamp"), None);
    }
}
