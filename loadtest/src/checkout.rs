//! `checkout`: orders per second through the public surface (HTTP `POST /api/v1/orders` with
//! an idempotency key, or `buy` over the chat), each worker a guest buyer buying one unit at a
//! time. `db-ceiling`: the same conditional UPDATE the order path reserves stock with, in a tight
//! loop straight against the database, to report the order path as a fraction of it.

use crate::stats::{CpuWindow, percentile};
use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Clone)]
pub struct CheckoutArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A seller API token.
    #[arg(long)]
    pub token: String,
    /// `http` or `chat`.
    #[arg(long, default_value = "http")]
    pub via: String,
    /// Concurrent buyers to measure with, in order.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub concurrency: Vec<usize>,
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    #[arg(long, default_value = "vitrine-http")]
    pub label: String,
    #[arg(long, default_value = "checkout-report.jsonl")]
    pub out: std::path::PathBuf,
}

#[derive(clap::Args, Clone)]
pub struct CeilingArgs {
    /// Database URL (sqlite://... or postgres://...); a scratch table is created in it.
    #[arg(long)]
    pub url: String,
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub concurrency: Vec<usize>,
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    #[arg(long, default_value = "raw-update")]
    pub label: String,
    #[arg(long, default_value = "checkout-report.jsonl")]
    pub out: std::path::PathBuf,
    /// Which statement: `reserve` (the order path's stock UPDATE) or `bid` (an auction bid's
    /// UPDATE of the auction's row).
    #[arg(long, default_value = "reserve")]
    pub statement: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutRow {
    pub label: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub orders: u64,
    pub errors: u64,
    pub orders_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub server_cpu_per_s: Option<f64>,
    pub generator_cpu_per_s: f64,
}

/// What the workers of one step share.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    samples: std::sync::Mutex<Vec<u32>>,
}

impl Tally {
    fn record(&self, ok: bool, started: Instant) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            self.samples.lock().unwrap().push(us);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn row(&self, label: &str, concurrency: usize, elapsed: f64) -> CheckoutRow {
        let mut samples = std::mem::take(&mut *self.samples.lock().unwrap());
        samples.sort_unstable();
        let orders = self.ok.load(Ordering::Relaxed);
        CheckoutRow {
            label: label.to_owned(),
            concurrency,
            seconds: elapsed,
            orders,
            errors: self.errors.load(Ordering::Relaxed),
            orders_per_s: orders as f64 / elapsed,
            latency_p50_ms: percentile(&samples, 0.50),
            latency_p99_ms: percentile(&samples, 0.99),
            server_cpu_per_s: None,
            generator_cpu_per_s: 0.0,
        }
    }
}

fn key(worker: usize, n: u64) -> String {
    format!("lt-{worker}-{n}-{}", rand::random::<u64>())
}

async fn json(req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    Ok(req.send().await?.error_for_status()?.json().await?)
}

/// One guest buyer placing orders over HTTP until the deadline.
async fn http_worker(
    http: reqwest::Client,
    server: String,
    token: String,
    product: String,
    worker: usize,
    deadline: Instant,
    tally: Arc<Tally>,
) {
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let started = Instant::now();
        let r = http
            .post(format!("{server}/api/v1/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key(worker, n))
            .json(&serde_json::json!({ "product_id": product, "quantity": 1,
                                       "payment": { "card_number": "4242424242424242" } }))
            .send()
            .await;
        tally.record(r.is_ok_and(|r| r.status() == 201), started);
    }
}

/// One guest buyer buying through the chat until the deadline.
#[allow(clippy::too_many_arguments)]
async fn chat_worker(
    server: String,
    stream: String,
    token: String,
    product: String,
    worker: usize,
    deadline: Instant,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let url = format!(
        "{}/ws/streams/{stream}/chat",
        server.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    let hello = serde_json::json!({ "type": "hello", "token": token });
    ws.send(Message::Text(hello.to_string().into())).await?;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let request_id = key(worker, n);
        let buy = serde_json::json!({ "type": "buy", "request_id": request_id, "product_id": product,
                                      "card_number": "4242424242424242" });
        let started = Instant::now();
        ws.send(Message::Text(buy.to_string().into())).await?;
        loop {
            let Some(msg) = ws.next().await else {
                bail!("chat closed")
            };
            let Message::Text(text) = msg? else { continue };
            if !text.contains(&request_id) {
                continue;
            }
            tally.record(text.contains("\"order.confirmed\""), started);
            break;
        }
    }
    Ok(())
}

pub async fn run(args: CheckoutArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let s = &args.server;
    let product = json(http.post(format!("{s}/api/v1/products")).bearer_auth(&args.token).json(
        &serde_json::json!({ "sku": format!("LT-{}", rand::random::<u32>()), "title": "Load test",
                             "price": { "amount": 100, "currency": "USD" }, "stock": 1_000_000_000i64 }),
    ))
    .await
    .context("creating the product")?;
    let product = product["id"].as_str().context("product id")?.to_owned();
    let stream = crate::create_stream(&http, s, &args.token, "checkout loadtest").await?;
    let stream = stream["id"].as_str().context("stream id")?.to_owned();
    json(
        http.post(format!("{s}/api/v1/streams/{stream}/pins"))
            .bearer_auth(&args.token)
            .json(&serde_json::json!({ "product_id": product })),
    )
    .await?;
    let mut buyers = Vec::new();
    for &c in &args.concurrency {
        while buyers.len() < c {
            let b = json(
                http.post(format!("{s}/api/v1/buyers"))
                    .json(&serde_json::json!({ "display_name": format!("lt {}", buyers.len()) })),
            )
            .await?;
            buyers.push(b["token"].as_str().context("token")?.to_owned());
        }
        let tally = Arc::new(Tally::default());
        let cpu = CpuWindow::start(&args.server_pid);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for (w, token) in buyers.iter().take(c).enumerate() {
            let (token, product, tally) = (token.clone(), product.clone(), Arc::clone(&tally));
            match args.via.as_str() {
                "http" => {
                    tasks.spawn(http_worker(
                        http.clone(),
                        s.clone(),
                        token,
                        product,
                        w,
                        deadline,
                        tally,
                    ));
                }
                "chat" => {
                    let (server, stream) = (s.clone(), stream.clone());
                    tasks.spawn(async move {
                        if let Err(e) =
                            chat_worker(server, stream, token, product, w, deadline, tally).await
                        {
                            eprintln!("chat worker {w}: {e:#}");
                        }
                    });
                }
                other => bail!("unknown --via {other} (http, chat)"),
            }
        }
        while tasks.join_next().await.is_some() {}
        let used = cpu.finish();
        let mut row = tally.row(&args.label, c, used.elapsed);
        row.server_cpu_per_s = used.server_per_s;
        row.generator_cpu_per_s = used.generator_per_s;
        crate::report::append(&args.out, &row)?;
    }
    Ok(())
}

/// The reservation statement of the order path, against a scratch table of the same shape.
const RESERVE: &str = "UPDATE ceiling_products SET stock = stock - $1, updated_at = $2 \
                       WHERE id = $3 AND stock >= $1";

/// A bid's statement (checkout's `auctions::bid`), against a scratch row of the same shape:
/// every bid leads by the increment, from a bidder other than the leader.
const BID: &str = "UPDATE ceiling_auctions SET current_amount = current_amount + increment_amount, \
                   bidder_id = $1, bidder_name = $1, bid_count = bid_count + 1, \
                   ends_at = CASE WHEN sudden_death = 0 AND ends_at - $2 < extend_ms \
                             THEN $2 + extend_ms ELSE ends_at END \
                   WHERE id = $3 AND status = 'open' AND ends_at > $2 \
                   AND (bidder_id IS NULL OR bidder_id <> $1)";

/// Creates the scratch table `statement` runs against.
async fn scratch(pool: &sqlx::AnyPool, statement: &str) -> anyhow::Result<()> {
    let setup: &[&'static str] = match statement {
        "reserve" => &[
            "DROP TABLE IF EXISTS ceiling_products",
            "CREATE TABLE ceiling_products (id TEXT PRIMARY KEY, stock BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "INSERT INTO ceiling_products (id, stock, updated_at) VALUES ('p', 1000000000000, 0)",
        ],
        "bid" => &[
            "DROP TABLE IF EXISTS ceiling_auctions",
            "CREATE TABLE ceiling_auctions (id TEXT PRIMARY KEY, current_amount BIGINT NOT NULL, \
             increment_amount BIGINT NOT NULL, bidder_id TEXT, bidder_name TEXT, \
             bid_count BIGINT NOT NULL, ends_at BIGINT NOT NULL, extend_ms BIGINT NOT NULL, \
             sudden_death BIGINT NOT NULL, status TEXT NOT NULL)",
            "INSERT INTO ceiling_auctions VALUES ('p', 100, 1, NULL, NULL, 0, 9000000000000000, 10000, 0, 'open')",
        ],
        other => anyhow::bail!("unknown --statement {other} (reserve, bid)"),
    };
    for sql in setup {
        sqlx::query(*sql).execute(pool).await?;
    }
    Ok(())
}

/// One run of `statement`; true when it moved the row.
async fn once(pool: &sqlx::AnyPool, statement: &str) -> bool {
    let done = if statement == "bid" {
        sqlx::query(BID)
            .bind(format!("by_{}", rand::random::<u64>()))
            .bind(0i64)
            .bind("p")
            .execute(pool)
            .await
    } else {
        sqlx::query(RESERVE)
            .bind(1i64)
            .bind(0i64)
            .bind("p")
            .execute(pool)
            .await
    };
    done.is_ok_and(|d| d.rows_affected() == 1)
}

pub async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let sqlite = args.url.starts_with("sqlite:");
    let max = args.concurrency.iter().copied().max().unwrap_or(1) as u32;
    let pool = sqlx::any::AnyPoolOptions::new()
        // The server's own SQLite pool has 4 connections; a writer at a time either way.
        .max_connections(if sqlite { 4 } else { max })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(&args.url)
        .await
        .context("connecting")?;
    scratch(&pool, &args.statement).await?;
    for &c in &args.concurrency {
        let tally = Arc::new(Tally::default());
        let cpu = CpuWindow::start(&[]);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..c {
            let (pool, tally) = (pool.clone(), Arc::clone(&tally));
            let statement = args.statement.clone();
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let started = Instant::now();
                    tally.record(once(&pool, &statement).await, started);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let used = cpu.finish();
        let mut row = tally.row(&args.label, c, used.elapsed);
        row.generator_cpu_per_s = used.generator_per_s;
        crate::report::append(&args.out, &row)?;
    }
    let drop = if args.statement == "bid" {
        "DROP TABLE ceiling_auctions"
    } else {
        "DROP TABLE ceiling_products"
    };
    sqlx::query(drop).execute(&pool).await?;
    Ok(())
}
