//! Kill -9 of the server in the middle of a purchase burst, then a restart on the same
//! database: every order confirmed to a buyer is there with its payment, every charge has its
//! order, and no unit stays reserved past the reservation window. On SQLite and PostgreSQL.

mod support;

use serde_json::{Value, json};
use sqlx::Row;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{ChatClient, WAIT};
use vitrine::store::Store;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");
const STOCK: i64 = 1000;
const BUYERS: usize = 60;

/// A server process, killed when dropped so that a failing test leaves nothing behind.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn(data_dir: &std::path::Path, database_url: &str) -> Server {
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .args([
            "--database-url",
            database_url,
            "--reservation-window-secs",
            "2",
            // The burst's buyers all come from this one address.
            "--no-ip-limits",
            // Servers of tests running at once each take a free shared ICE port.
            "--ice-udp-port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await
            && r.status() == 200
        {
            return server;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

async fn crash_mid_burst(backend: Backend) {
    let db = TestDatabase::create(backend).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "sellers",
            "create",
            "--name",
            "Crashy",
            "--database-url",
            &db.url,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let seller: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = seller["api_token"].as_str().unwrap().to_owned();

    let server = spawn(dir.path(), &db.url).await;
    let post = |path: &str, body: Value| {
        call(
            reqwest::Method::POST,
            format!("{}{path}", server.base),
            Some(&token),
            Some(body),
        )
    };
    let stream = post("/api/v1/streams", json!({ "title": "Crash sale" })).await;
    let sid = stream["id"].as_str().unwrap().to_owned();
    let product = post(
        "/api/v1/products",
        json!({ "sku": "X", "title": "X", "price": { "amount": 100, "currency": "USD" }, "stock": STOCK }),
    )
    .await;
    let pid = product["id"].as_str().unwrap().to_owned();
    post(
        &format!("/api/v1/streams/{sid}/pins"),
        json!({ "product_id": pid }),
    )
    .await;

    // Buyers buy over the chat; confirmations are reported as they arrive.
    let (confirmed_tx, mut confirmed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut buyers = tokio::task::JoinSet::new();
    for i in 0..BUYERS {
        let b = call(
            reqwest::Method::POST,
            format!("{}/api/v1/buyers", server.base),
            None,
            Some(json!({ "display_name": format!("b{i}") })),
        )
        .await;
        let btoken = b["token"].as_str().unwrap().to_owned();
        let (base, sid, pid, tx) = (
            server.base.clone(),
            sid.clone(),
            pid.clone(),
            confirmed_tx.clone(),
        );
        buyers.spawn(async move {
            let Some(mut c) = ChatClient::try_join(&base, &sid, &btoken).await else {
                return;
            };
            for n in 0..3 {
                let buy = json!({ "type": "buy", "request_id": format!("{i}-{n}"), "product_id": pid,
                                  "card_number": "4242424242424242" });
                if c.try_send_text(buy.to_string()).await.is_err() {
                    return;
                }
            }
            // Until the server dies: report every confirmation.
            while let Ok(v) = c.next_or_close().await {
                if v["type"] == "order.confirmed" {
                    let _ = tx.send(v["order"]["id"].as_str().unwrap().to_owned());
                }
            }
        });
    }
    drop(confirmed_tx);
    let mut confirmed = HashSet::new();
    while confirmed.len() < 20 {
        confirmed.insert(confirmed_rx.recv().await.expect("confirmations stopped"));
    }
    drop(server); // SIGKILL, mid-burst
    while let Some(id) = confirmed_rx.recv().await {
        confirmed.insert(id);
    }
    while buyers.join_next().await.is_some() {}
    assert!(
        confirmed.len() < BUYERS * 3,
        "the kill landed before the burst ended"
    );

    let server = spawn(dir.path(), &db.url).await;
    let get = |path: String| {
        call(
            reqwest::Method::GET,
            format!("{}{path}", server.base),
            Some(&token),
            None,
        )
    };
    // The reaper settles what the dead process left pending once the window has passed.
    let deadline = tokio::time::Instant::now() + WAIT;
    let orders = loop {
        let orders = get("/api/v1/orders".into()).await["orders"]
            .as_array()
            .unwrap()
            .clone();
        if orders.iter().all(|o| o["status"] != "pending") {
            break orders;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders still pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let paid: HashSet<String> = orders
        .iter()
        .filter(|o| o["status"] == "paid")
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        confirmed.is_subset(&paid),
        "every confirmed order survived the crash"
    );
    for o in orders.iter().filter(|o| o["status"] == "paid") {
        assert!(
            o["payment_id"].is_string(),
            "paid order without payment: {o}"
        );
    }
    let product = get(format!("/api/v1/products/{pid}")).await;
    assert_eq!(
        product["stock"].as_i64().unwrap(),
        STOCK - paid.len() as i64,
        "no unit stays reserved: stock plus sold is what we started with"
    );

    // Every charge at the processor has its paid order, and the other way round.
    let store = Store::connect(&db.url).await.unwrap();
    // The sandbox processor's books: a file of their own on SQLite, the shared database else.
    let books = match backend {
        Backend::Sqlite => {
            let file = vitrine_checkout::SandboxProvider::books_beside(&db.url).unwrap();
            let url = format!("sqlite://{}", file.display());
            vitrine_checkout::db::connect(&url).await.unwrap().0
        }
        Backend::Postgres => store.pool().clone(),
    };
    let charged: HashSet<String> =
        sqlx::query("SELECT reference FROM sandbox_payments WHERE status = 'succeeded'")
            .fetch_all(&books)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap())
            .collect();
    assert_eq!(
        charged, paid,
        "no charge without an order, no order without a charge"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_burst_on_sqlite() {
    crash_mid_burst(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_burst_on_postgres() {
    crash_mid_burst(Backend::Postgres).await;
}
