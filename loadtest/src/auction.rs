//! `auction`: N bidders in one room, each a guest buyer connected to the chat, bidding in one
//! live auction at an offered rate (all of them together), each bid a little over the highest
//! one announced so far. Reported: bids answered and accepted per second, the reply time (bid
//! frame sent -> `bid.accepted`/`bid.refused`), and bid-to-broadcast latency: from a bid's frame
//! sent to the `auction_bid` event announcing it, at every member of the room.
//! Its peer is `db-ceiling --statement bid` (in `checkout`): the bid's conditional UPDATE straight
//! to the database, on one row: the ceiling a room's bids are written against.

use crate::stats::{CpuWindow, percentile};
use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Clone)]
pub struct AuctionArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A seller API token.
    #[arg(long)]
    pub token: String,
    /// Members of the room, every one a bidder.
    #[arg(long, default_value = "1000")]
    pub bidders: usize,
    /// Bids per second offered by all bidders together, one step each.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    pub rate: Vec<u32>,
    #[arg(long, default_value = "15")]
    pub seconds: u64,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value = "vitrine-auction")]
    pub label: String,
    #[arg(long, default_value = "auction-report.jsonl")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Serialize)]
pub struct AuctionRow {
    pub label: String,
    pub bidders: usize,
    pub offered_per_s: u32,
    pub seconds: f64,
    /// Bids sent, and answered (accepted or refused) within the step.
    pub sent: u64,
    pub answered: u64,
    pub accepted: u64,
    pub answered_per_s: f64,
    pub accepted_per_s: f64,
    pub reply_p50_ms: f64,
    pub reply_p99_ms: f64,
    /// Bid frame sent -> its `auction_bid` event received, over every member.
    pub broadcast_p50_ms: f64,
    pub broadcast_p99_ms: f64,
    /// `auction_bid` frames received, against accepted bids times members.
    pub deliveries: u64,
    pub deliveries_expected: u64,
    pub server_cpu_per_s: Option<f64>,
    pub generator_cpu_per_s: f64,
}

/// What the members of one step share.
#[derive(Default)]
struct Room {
    /// The highest bid any member has seen announced.
    highest: AtomicI64,
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    deliveries: AtomicU64,
    /// When each bid was sent, by (bidder, amount): what its announcement is timed from.
    sent_at: RwLock<HashMap<(usize, i64), Instant>>,
    replies: Mutex<Vec<u32>>,
    broadcasts: Mutex<Vec<u32>>,
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

async fn json(req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    let r = req.send().await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Joins the room as guest buyer `token`; the connection once welcomed.
async fn join(server: &str, stream: &str, token: &str) -> anyhow::Result<Ws> {
    let url = format!(
        "{}/ws/streams/{stream}/chat",
        server.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let hello = serde_json::json!({ "type": "hello", "token": token });
    ws.send(Message::Text(hello.to_string().into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg?
            && t.contains("\"welcome\"")
        {
            return Ok(ws);
        }
    }
    anyhow::bail!("closed before the welcome")
}

/// One member: bids every `every` (from a random phase) until `deadline`, and reads the room
/// until `until`.
#[allow(clippy::too_many_arguments)]
async fn member(
    mut ws: Ws,
    me: usize,
    auction: String,
    increment: i64,
    every: Duration,
    deadline: Instant,
    until: Instant,
    room: Arc<Room>,
) -> anyhow::Result<()> {
    let name = format!("b{me}");
    let phase = Duration::from_micros(rand::random::<u64>() % every.as_micros().max(1) as u64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    // Ticks missed while leading are not fired in a burst once outbid.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let (mut replies, mut broadcasts) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    let mut leading = false;
    let stop = tokio::time::Instant::from_std(until);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(stop) => break,
            _ = tick.tick(), if Instant::now() < deadline && !leading => {
                n += 1;
                let amount = room.highest.load(Ordering::Relaxed)
                    + increment * (1 + (rand::random::<u64>() % 4) as i64);
                let request_id = format!("{me}-{n}");
                let now = Instant::now();
                room.sent_at.write().unwrap().insert((me, amount), now);
                pending.insert(request_id.clone(), now);
                let bid = serde_json::json!({ "type": "bid", "request_id": request_id,
                    "auction_id": auction, "amount": { "amount": amount, "currency": "USD" } });
                ws.send(Message::Text(bid.to_string().into())).await?;
                room.sent.fetch_add(1, Ordering::Relaxed);
            }
            msg = ws.next() => {
                let Some(msg) = msg else { anyhow::bail!("chat closed") };
                let Message::Text(text) = msg? else { continue };
                let v: serde_json::Value = serde_json::from_str(&text)?;
                match v["type"].as_str() {
                    Some("auction_bid") => {
                        let a = &v["auction"];
                        let amount = a["current_bid"]["amount"].as_i64().unwrap_or(0);
                        room.highest.fetch_max(amount, Ordering::Relaxed);
                        room.deliveries.fetch_add(1, Ordering::Relaxed);
                        leading = a["bidder"].as_str() == Some(name.as_str());
                        let bidder = a["bidder"].as_str().and_then(|b| b.strip_prefix('b'))
                            .and_then(|b| b.parse::<usize>().ok());
                        if let Some(at) = bidder.and_then(|b| room.sent_at.read().unwrap().get(&(b, amount)).copied()) {
                            broadcasts.push(micros(at));
                        }
                    }
                    Some(kind @ ("bid.accepted" | "bid.refused")) => {
                        if let Some(at) = v["request_id"].as_str().and_then(|r| pending.remove(r)) {
                            replies.push(micros(at));
                            room.answered.fetch_add(1, Ordering::Relaxed);
                            if kind == "bid.accepted" {
                                room.accepted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    room.replies.lock().unwrap().extend(replies);
    room.broadcasts.lock().unwrap().extend(broadcasts);
    Ok(())
}

/// A product pinned on a new stream, and an auction of it running for `secs`.
async fn auction(
    http: &reqwest::Client,
    s: &str,
    token: &str,
    secs: u64,
) -> anyhow::Result<(String, String)> {
    let product = json(http.post(format!("{s}/api/v1/products")).bearer_auth(token).json(
        &serde_json::json!({ "sku": format!("LT-A-{}", rand::random::<u32>()), "title": "Auction",
                             "price": { "amount": 100, "currency": "USD" }, "stock": 1_000_000i64 }),
    ))
    .await
    .context("creating the product")?;
    let product = product["id"].as_str().context("product id")?.to_owned();
    let stream = crate::create_stream(http, s, token, "auction loadtest").await?;
    let stream = stream["id"].as_str().context("stream id")?.to_owned();
    json(
        http.post(format!("{s}/api/v1/streams/{stream}/pins"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "product_id": product })),
    )
    .await?;
    let started = json(
        http.post(format!("{s}/api/v1/streams/{stream}/auctions"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "product_id": product,
                "start_price": { "amount": 100, "currency": "USD" },
                "min_increment": { "amount": 1, "currency": "USD" },
                "duration_secs": secs, "extend_secs": 0 })),
    )
    .await
    .context("starting the auction")?;
    Ok((
        stream,
        started["id"].as_str().context("auction id")?.to_owned(),
    ))
}

pub async fn run(args: AuctionArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let s = &args.server;
    let mut tokens = Vec::with_capacity(args.bidders);
    let mut made = futures::stream::iter(0..args.bidders)
        .map(|i| {
            json(
                http.post(format!("{s}/api/v1/buyers"))
                    .json(&serde_json::json!({ "display_name": format!("b{i}") })),
            )
        })
        .buffered(32);
    while let Some(b) = made.next().await {
        tokens.push(b?["token"].as_str().context("token")?.to_owned());
    }
    for &rate in &args.rate {
        let (stream, id) = auction(&http, s, &args.token, args.seconds + 600).await?;
        let mut joined = futures::stream::iter(&tokens)
            .map(|t| join(s, &stream, t))
            .buffered(64);
        let mut sockets = Vec::with_capacity(tokens.len());
        while let Some(ws) = joined.next().await {
            sockets.push(ws?);
        }
        let room = Arc::new(Room::default());
        room.highest.store(99, Ordering::Relaxed);
        let every = Duration::from_secs_f64(args.bidders as f64 / f64::from(rate.max(1)));
        let cpu = CpuWindow::start(&args.server_pid);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        // Announcements of the last bids still arrive after the bidding stops.
        let until = deadline + Duration::from_secs(2);
        let mut tasks = tokio::task::JoinSet::new();
        for (me, ws) in sockets.into_iter().enumerate() {
            let (id, room) = (id.clone(), Arc::clone(&room));
            tasks.spawn(member(ws, me, id, 1, every, deadline, until, room));
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                eprintln!("member: {e:#}");
            }
        }
        let used = cpu.finish();
        let row = row(&args, rate, &room, used);
        crate::report::append(&args.out, &row)?;
    }
    Ok(())
}

fn row(args: &AuctionArgs, rate: u32, room: &Room, used: crate::stats::CpuUse) -> AuctionRow {
    let sorted = |m: &Mutex<Vec<u32>>| {
        let mut v = std::mem::take(&mut *m.lock().unwrap());
        v.sort_unstable();
        v
    };
    let (replies, broadcasts) = (sorted(&room.replies), sorted(&room.broadcasts));
    // The bidding's own length: announcements trail it by the drain.
    let bidding = args.seconds as f64;
    let accepted = room.accepted.load(Ordering::Relaxed);
    let answered = room.answered.load(Ordering::Relaxed);
    AuctionRow {
        label: args.label.clone(),
        bidders: args.bidders,
        offered_per_s: rate,
        seconds: bidding,
        sent: room.sent.load(Ordering::Relaxed),
        answered,
        accepted,
        answered_per_s: answered as f64 / bidding,
        accepted_per_s: accepted as f64 / bidding,
        reply_p50_ms: percentile(&replies, 0.50),
        reply_p99_ms: percentile(&replies, 0.99),
        broadcast_p50_ms: percentile(&broadcasts, 0.50),
        broadcast_p99_ms: percentile(&broadcasts, 0.99),
        deliveries: room.deliveries.load(Ordering::Relaxed),
        deliveries_expected: accepted * args.bidders as u64,
        server_cpu_per_s: used.server_per_s,
        generator_cpu_per_s: used.generator_per_s,
    }
}
