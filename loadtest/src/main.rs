//! `vitrine-loadtest`: black-box load generators for Vitrine's public surface.
//!
//! `whep`: creates a stream through the API, publishes a synthetic ~1.5 Mbit/s VP8 stream over
//! WHIP, attaches N WHEP subscribers and measures, per N: delivery ratio, forwarding delay
//! (publisher write -> subscriber read, from a send time embedded in each payload), and the
//! server's CPU seconds per second (from /proc of `--server-pid`) next to the generator's own.
//!
//! `chat`: N websocket members in one room, M messages per second in; deliveries per second,
//! end-to-end latency, server CPU and memory (Vitrine or the Nchan peer).
//!
//! `hls`: N LL-HLS viewers of a live stream; requests per second, part fetch time, server CPU.
//!
//! `captions`: N live streams speaking known phrases over WHIP; final-caption latency, the share
//! of phrases captioned and the word error rate. `whisper-row`: one transcription scored
//! against its clip's text (the Whisper engines' comparison). `translate`: chrF2 of a
//! translation service on a parallel set of product-pitch sentences; `translate-row`: one
//! speech translation scored the same way.
//!
//! `checkout`: orders per second through the HTTP API or the chat, with latency percentiles;
//! `db-ceiling`: the same conditional UPDATE the order path uses (or a bid's), straight to the
//! database.
//!
//! `auction`: N bidders in one room bidding in a live auction: bids answered and accepted per
//! second, reply time, bid-to-broadcast latency at every member.

mod api;
mod auction;
mod captions;
mod chart;
mod chat;
mod checkout;
mod chrf;
mod client;
mod hls;
mod report;
mod stats;
mod translate;
mod wer;
mod whisper;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "vitrine-loadtest")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N WHEP subscribers on one published stream.
    Whep(WhepArgs),
    /// N chat members in one room, M messages per second.
    Chat(chat::ChatArgs),
    /// Orders per second through the API or the chat.
    Checkout(checkout::CheckoutArgs),
    /// The database's own ceiling for the order path's conditional UPDATE (or a bid's).
    DbCeiling(checkout::CeilingArgs),
    /// N bidders in one room bidding in a live auction; bids/s and bid-to-broadcast latency.
    Auction(auction::AuctionArgs),
    /// N LL-HLS viewers of one live stream (blocking reloads and parts).
    Hls(hls::HlsArgs),
    /// N live streams speaking known phrases; final-caption latency, coverage and WER.
    Captions(captions::CaptionsArgs),
    /// Scores one transcription (JSON line) of a clip against its known text: a report row.
    WhisperRow(whisper::WhisperRowArgs),
    /// Translation quality (chrF2) of a LibreTranslate-compatible service on product pitches.
    Translate(translate::TranslateArgs),
    /// Translation quality (chrF2) of one speech translation (spoken pitch sentences).
    TranslateRow(translate::TranslateRowArgs),
    /// An authenticated, rate-limited read endpoint from one or more nodes.
    Api(api::ApiArgs),
    /// Webhook deliveries per second to a receiver this command runs on loopback.
    Webhooks(api::WebhooksArgs),
    /// Summarise a report: medians per server and step, ratios, and a PNG chart.
    Chart(ChartArgs),
}

#[derive(clap::Args, Clone)]
pub struct WhepArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A seller API token (from `vitrine sellers create`).
    #[arg(long)]
    pub token: String,
    /// Subscriber counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    pub subscribers: Vec<usize>,
    /// Measurement window per subscriber count.
    #[arg(long, default_value = "15")]
    pub seconds: u64,
    /// Published video bitrate.
    #[arg(long, default_value = "1500")]
    pub kbps: u64,
    /// PIDs of the server's processes (comma separated), for their CPU and memory.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Name of the server under test in the report (e.g. vitrine, mediasoup).
    #[arg(long, default_value = "vitrine")]
    pub label: String,
    /// JSON-lines file each measured step is appended to.
    #[arg(long, default_value = "whep-report.jsonl")]
    pub out: std::path::PathBuf,
    /// Base URLs of the nodes viewers subscribe through, round robin (a cluster: the stream is
    /// published on `--server`, watched on these). Default: the stream's own WHEP URL.
    #[arg(long, value_delimiter = ',')]
    pub viewer_servers: Vec<String>,
}

#[derive(clap::Args)]
pub struct ChartArgs {
    /// Which report: whep, chat, checkout, transcode or hls.
    #[arg(long, default_value = "whep")]
    pub kind: String,
    /// JSON-lines file written by a generator.
    #[arg(long, default_value = "whep-report.jsonl")]
    pub input: std::path::PathBuf,
    /// PNG to draw.
    #[arg(long, default_value = "whep-report.png")]
    pub png: std::path::PathBuf,
    /// The server the ratios are computed for, against every other label.
    #[arg(long, default_value = "vitrine")]
    pub subject: String,
    /// The chart's title, when the run differs from what the kind's title says (a bitrate).
    #[arg(long)]
    pub title: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Whep(args) => whep(args).await,
        Command::Chat(args) => chat::run(args).await,
        Command::Checkout(args) => checkout::run(args).await,
        Command::Api(args) => api::api(args).await,
        Command::Webhooks(args) => api::webhooks(args).await,
        Command::DbCeiling(args) => checkout::ceiling(args).await,
        Command::Auction(args) => auction::run(args).await,
        Command::Hls(args) => hls::run(args).await,
        Command::Captions(args) => captions::run(&args).await,
        Command::WhisperRow(args) => whisper::run(&args),
        Command::Translate(args) => translate::run(&args).await,
        Command::TranslateRow(args) => translate::row(&args),
        Command::Chart(args) => chart::run(&args),
    }
}

async fn whep(args: WhepArgs) -> anyhow::Result<()> {
    if args.subscribers.is_empty() || args.seconds == 0 {
        bail!("need at least one subscriber count and a positive duration");
    }
    let http = reqwest::Client::new();
    let stream = create_stream(&http, &args.server, &args.token, "loadtest").await?;
    let whip = stream["whip_url"].as_str().context("whip_url")?.to_owned();
    let whep = stream["whep_url"].as_str().context("whep_url")?.to_owned();
    let key = stream["stream_key"]
        .as_str()
        .context("stream_key")?
        .to_owned();

    let publisher = client::Publisher::start(&http, &whip, &key, args.kbps).await?;
    let id = stream["id"].as_str().context("id")?.to_owned();
    let mut subscribers = Vec::new();
    // Viewers join a stream that is already live: the first one waits for its first picture
    // before the others come, and is left out of their time to first frame.
    subscribers.push(client::Subscriber::start(&http, &whep).await?);
    client::wait_first_keyframe(&subscribers[0], Duration::from_secs(30)).await?;
    for &n in &args.subscribers {
        let before = subscribers.len();
        while subscribers.len() < n {
            let url = match args.viewer_servers.as_slice() {
                [] => whep.clone(),
                nodes => format!(
                    "{}/whep/{id}",
                    nodes[subscribers.len() % nodes.len()].trim_end_matches('/')
                ),
            };
            subscribers.push(client::Subscriber::start(&http, &url).await?);
        }
        // Let every subscriber receive its first keyframe before measuring.
        client::wait_all_receiving(&subscribers, Duration::from_secs(30)).await?;
        // A profiler attached from outside starts on this line (loadtest/profile-whep.sh).
        eprintln!("measuring {n} subscribers");
        let row = report::measure(&publisher, &subscribers, &subscribers[before..], &args).await?;
        report::append(&args.out, &row)?;
    }
    for s in subscribers {
        s.close().await;
    }
    publisher.close().await;
    Ok(())
}

/// Creates a stream through the API with a seller token; returns its JSON.
pub async fn create_stream(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    title: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .post(format!("{server}/api/v1/streams"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await?
        .error_for_status()
        .context("creating the stream")?
        .json()
        .await?)
}
