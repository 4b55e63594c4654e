//! `api`: an authenticated, rate-limited read endpoint of the seller API under load, from one
//! node or several sharing Redis (workers spread round-robin over the nodes), and
//! `webhooks`: how fast the dispatcher delivers signed messages into a receiver on loopback
//! while orders pour in, then how fast it drains the backlog an outage of the receiver left,
//! next to what the same receiver takes from a plain HTTP client (its ceiling).

use crate::stats::{CpuWindow, percentile};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args, Clone)]
pub struct ApiArgs {
    /// Node base URLs, comma separated; workers are spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub servers: Vec<String>,
    /// A seller API token.
    #[arg(long)]
    pub token: String,
    #[arg(long, default_value = "/api/v1/products")]
    pub path: String,
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub concurrency: Vec<usize>,
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value = "vitrine")]
    pub label: String,
    #[arg(long, default_value = "api-report.jsonl")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiRow {
    pub label: String,
    pub nodes: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub ok: u64,
    pub limited: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub server_cpu_per_s: Option<f64>,
    pub generator_cpu_per_s: f64,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<u32>>,
}

pub async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    for server in &args.servers {
        let r = http
            .get(format!("{server}{}", args.path))
            .bearer_auth(&args.token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{server}{}: {}", args.path, r.status());
        }
    }
    for &c in &args.concurrency {
        let tally = Arc::new(Tally::default());
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let cpu = CpuWindow::start(&args.server_pid);
        let workers: Vec<_> = (0..c)
            .map(|w| {
                let (http, tally) = (http.clone(), Arc::clone(&tally));
                let url = format!("{}{}", args.servers[w % args.servers.len()], args.path);
                let token = args.token.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        match http.get(&url).bearer_auth(&token).send().await {
                            Ok(r) if r.status().is_success() => {
                                let _ = r.bytes().await;
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                                let us =
                                    started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                                tally.samples.lock().unwrap().push(us);
                            }
                            Ok(r) if r.status() == 429 => {
                                tally.limited.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                tally.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await?;
        }
        let used = cpu.finish();
        let mut samples = std::mem::take(&mut *tally.samples.lock().unwrap());
        samples.sort_unstable();
        let ok = tally.ok.load(Ordering::Relaxed);
        let row = ApiRow {
            label: args.label.clone(),
            nodes: args.servers.len(),
            concurrency: c,
            seconds: used.elapsed,
            ok,
            limited: tally.limited.load(Ordering::Relaxed),
            errors: tally.errors.load(Ordering::Relaxed),
            requests_per_s: ok as f64 / used.elapsed,
            latency_p50_ms: percentile(&samples, 0.50),
            latency_p99_ms: percentile(&samples, 0.99),
            server_cpu_per_s: used.server_per_s,
            generator_cpu_per_s: used.generator_per_s,
        };
        crate::report::append(&args.out, &row)?;
    }
    Ok(())
}

#[derive(clap::Args, Clone)]
pub struct WebhooksArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A seller API token.
    #[arg(long)]
    pub token: String,
    /// How long orders are placed (each makes two events: created, paid).
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    /// Concurrent buyers placing orders.
    #[arg(long, default_value = "32")]
    pub buyers: usize,
    /// Loopback port of the receiver this command runs.
    #[arg(long, default_value = "18099")]
    pub port: u16,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value = "webhooks-report.jsonl")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhooksRow {
    pub label: String,
    /// Messages that reached the receiver (distinct webhook-ids).
    pub deliveries: u64,
    pub seconds: f64,
    pub deliveries_per_s: f64,
    /// Events made while measuring (two per order); 0 for the plain client.
    pub events: u64,
    /// Events not yet delivered when the orders stopped, and how long they took to arrive.
    pub backlog_at_end: u64,
    pub drain_s: f64,
    pub server_cpu_per_s: Option<f64>,
}

/// A minimal HTTP/1.1 receiver: counts distinct `webhook-id`s and answers 204; while it is
/// "down" it answers 503 with a `Retry-After` that points every retry at the moment it comes
/// back, so the whole backlog falls due at once.
#[derive(Default)]
struct Receiver {
    ids: Mutex<HashSet<String>>,
    down_until: Mutex<Option<Instant>>,
    /// When the first and the latest new message arrived (since the last clear).
    arrivals: Mutex<Option<(Instant, Instant)>>,
}

impl Receiver {
    /// Whole seconds until the receiver is back, when it is down.
    fn retry_after(&self) -> Option<u64> {
        let until = (*self.down_until.lock().unwrap())?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs() + 1)
    }
}

async fn serve_one(mut sock: tokio::net::TcpStream, rx: Arc<Receiver>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        // One request: headers, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let answer = match rx.retry_after() {
            Some(secs) => format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {secs}\r\nContent-Length: 0\r\n\r\n"
            ),
            None => {
                if let Some(id) = head.lines().find_map(|l| l.strip_prefix("webhook-id:"))
                    && rx.ids.lock().unwrap().insert(id.trim().to_owned())
                {
                    let now = Instant::now();
                    let mut a = rx.arrivals.lock().unwrap();
                    *a = Some((a.map_or(now, |(first, _)| first), now));
                }
                "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
            }
        };
        if sock.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn json(req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    Ok(req.send().await?.error_for_status()?.json().await?)
}

fn delivered(rx: &Receiver) -> u64 {
    rx.ids.lock().unwrap().len() as u64
}

/// Places orders from `args.buyers` buyers for `args.seconds`; returns how many were paid.
async fn place_orders(
    http: &reqwest::Client,
    args: &WebhooksArgs,
    product: &str,
) -> anyhow::Result<u64> {
    let s = &args.server;
    let placed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut workers = vec![];
    for w in 0..args.buyers {
        let buyer = json(
            http.post(format!("{s}/api/v1/buyers"))
                .json(&serde_json::json!({ "display_name": "LT" })),
        )
        .await?;
        let buyer = buyer["token"].as_str().context("buyer token")?.to_owned();
        let (http, s, product, placed) = (
            http.clone(),
            s.clone(),
            product.to_owned(),
            Arc::clone(&placed),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                i += 1;
                let r = http
                    .post(format!("{s}/api/v1/orders"))
                    .bearer_auth(&buyer)
                    .header(
                        "Idempotency-Key",
                        format!("wh-{w}-{i}-{}", rand::random::<u32>()),
                    )
                    .json(&serde_json::json!({ "product_id": product, "quantity": 1,
                                               "payment": { "card_number": "4242424242424242" } }))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 201) {
                    placed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    Ok(placed.load(Ordering::Relaxed))
}

pub async fn webhooks(args: WebhooksArgs) -> anyhow::Result<()> {
    let rx = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    {
        let rx = Arc::clone(&rx);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_one(sock, Arc::clone(&rx)));
            }
        });
    }
    let http = reqwest::Client::new();
    let s = &args.server;
    json(
        http.post(format!("{s}/api/v1/webhooks/endpoints"))
            .bearer_auth(&args.token)
            .json(
                &serde_json::json!({ "url": format!("http://127.0.0.1:{}/hooks", args.port),
                             "event_types": ["order.created", "order.paid"] }),
            ),
    )
    .await
    .context("adding the endpoint (the server needs [webhooks] allow_private_targets = true)")?;
    let product = json(http.post(format!("{s}/api/v1/products")).bearer_auth(&args.token).json(
        &serde_json::json!({ "sku": format!("WH-{}", rand::random::<u32>()), "title": "Webhook load",
                             "price": { "amount": 100, "currency": "USD" }, "stock": 1_000_000_000i64 }),
    ))
    .await?;
    let product = product["id"].as_str().context("product id")?.to_owned();
    let cpu = CpuWindow::start(&args.server_pid);
    let events = place_orders(&http, &args, &product).await? * 2;
    let backlog = events.saturating_sub(delivered(&rx));
    let stopped = Instant::now();
    let give_up = stopped + Duration::from_secs(120);
    while delivered(&rx) < events {
        if Instant::now() > give_up {
            bail!("only {} of {events} deliveries arrived", delivered(&rx));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_s = stopped.elapsed().as_secs_f64();
    let used = cpu.finish();
    let row = WebhooksRow {
        label: "vitrine-dispatcher".into(),
        deliveries: events,
        seconds: used.elapsed,
        deliveries_per_s: events as f64 / used.elapsed,
        events,
        backlog_at_end: backlog,
        drain_s,
        server_cpu_per_s: used.server_per_s,
    };
    crate::report::append(&args.out, &row)?;

    // A backlog: the receiver is down while orders pour in, and its 503s ask every retry to
    // come when it is back, so the whole backlog falls due at once (within the second that
    // Retry-After can name); then how fast it drains, from the first arrival to the last.
    rx.ids.lock().unwrap().clear();
    *rx.arrivals.lock().unwrap() = None;
    let back_at = Instant::now() + Duration::from_secs(args.seconds + 3);
    *rx.down_until.lock().unwrap() = Some(back_at);
    let backlog = place_orders(&http, &args, &product).await? * 2;
    tokio::time::sleep_until(back_at.into()).await;
    let cpu = CpuWindow::start(&args.server_pid);
    let give_up = Instant::now() + Duration::from_secs(300);
    while delivered(&rx) < backlog {
        if Instant::now() > give_up {
            bail!("only {} of a backlog of {backlog} arrived", delivered(&rx));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let used = cpu.finish();
    let (first, last) = rx.arrivals.lock().unwrap().context("no arrivals")?;
    let drain_s = (last - first).as_secs_f64().max(1e-3);
    let row = WebhooksRow {
        label: "vitrine-dispatcher-backlog".into(),
        deliveries: backlog,
        seconds: drain_s,
        deliveries_per_s: backlog as f64 / drain_s,
        events: backlog,
        backlog_at_end: backlog,
        drain_s,
        server_cpu_per_s: used.server_per_s,
    };
    crate::report::append(&args.out, &row)?;

    // The receiver's ceiling: as many POSTs of a delivery's size from a plain client, 16 at a
    // time (the dispatcher's concurrency).
    rx.ids.lock().unwrap().clear();
    let events = events.max(backlog);
    let body = Arc::new(vec![b'x'; 900]);
    let started = Instant::now();
    let workers: Vec<_> = (0..16u64)
        .map(|w| {
            let (http, body) = (http.clone(), Arc::clone(&body));
            let url = format!("http://127.0.0.1:{}/hooks", args.port);
            tokio::spawn(async move {
                for i in (w..events).step_by(16) {
                    let _ = http
                        .post(&url)
                        .header("webhook-id", format!("peer-{i}"))
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone())
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent = delivered(&rx);
    let row = WebhooksRow {
        label: "plain-client".into(),
        deliveries: sent,
        seconds,
        deliveries_per_s: sent as f64 / seconds,
        events: 0,
        backlog_at_end: 0,
        drain_s: 0.0,
        server_cpu_per_s: None,
    };
    crate::report::append(&args.out, &row)?;
    Ok(())
}
