//! Rate limits of the seller API: a tier's burst then 429 with `Retry-After` and the IETF
//! RateLimit headers, apps counted apart from their sellers, and the limit holding across two
//! `vitrine serve` processes that share PostgreSQL and Redis.

mod support;

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use support::{ServerOptions, TestServer};
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::{TestDatabase, redis_url};
use vitrine_platform::ratelimit::{Tiers, TiersFile};

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");

/// Tiers so slow (one request an hour) that only the burst matters: no test depends on time.
const TIERS_TOML: &str = r#"
account_tier = "tiny"
default_tier = "tiny"
[tiers.tiny]
requests_per_second = 0.0002777777777777778
burst = 3
[tiers.daily]
requests_per_second = 1000
burst = 1000
requests_per_day = 2
"#;

fn tiers() -> Tiers {
    Tiers::from_file(toml::from_str::<TiersFile>(TIERS_TOML).unwrap()).unwrap()
}

#[tokio::test]
async fn a_burst_then_429_with_retry_after_and_ratelimit_headers() {
    let server = TestServer::start_with(ServerOptions {
        rate_limits: Some(tiers()),
        ..Default::default()
    })
    .await;
    let seller = server.seller("Ann").await;
    let get = || async {
        server
            .http
            .get(server.url("/api/v1/products"))
            .bearer_auth(&seller)
            .send()
            .await
            .unwrap()
    };
    for left in [2, 1, 0] {
        let r = get().await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], "\"burst\";q=3;w=10800");
        let limit = r.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            limit.starts_with(&format!("\"burst\";r={left};t=")),
            "{limit}"
        );
    }
    let r = get().await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&retry), "{retry}");
    assert!(
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"burst\";r=0;")
    );
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "/docs/problems/rate-limited");

    // Another seller has a bucket of its own; unauthenticated calls are not counted but refused.
    let other = server.seller("Bob").await;
    let r = server
        .http
        .get(server.url("/api/v1/products"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // New apps start on the configured default tier.
    let app: Value = server
        .http
        .post(server.url("/api/v1/apps"))
        .bearer_auth(&other)
        .json(&json!({ "name": "x", "redirect_uris": ["https://x.example/cb"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(app["tier"], "tiny");
    let r = server
        .http
        .get(server.url("/api/v1/products"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("ratelimit").is_none());
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("vitrine_api_rate_limited_total{tier=\"tiny\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_daily_quota_binds_with_its_own_headers() {
    let mut t: TiersFile = toml::from_str(TIERS_TOML).unwrap();
    t.account_tier = Some("daily".into());
    let server = TestServer::start_with(ServerOptions {
        rate_limits: Some(Tiers::from_file(t).unwrap()),
        ..Default::default()
    })
    .await;
    let seller = server.seller("Ann").await;
    let mut statuses = vec![];
    let mut last = None;
    for _ in 0..3 {
        let r = server
            .http
            .get(server.url("/api/v1/streams"))
            .bearer_auth(&seller)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let r = last.unwrap();
    assert_eq!(
        r.headers()["ratelimit-policy"],
        "\"burst\";q=1000;w=1, \"daily\";q=2;w=86400"
    );
    assert!(
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"daily\";r=0;t=")
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry));
    server.stop().await;
}

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_node(
    dir: &std::path::Path,
    name: &str,
    db: &str,
    redis: &str,
    config: &std::path::Path,
) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.join(name);
    let child = Command::new(BIN)
        // Each process takes a free shared ICE port (two run at once).
        .args([
            "serve",
            "--no-hls",
            "--no-subtitles",
            "--ice-udp-port",
            "0",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--database-url", db, "--redis", redis, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Ready when /healthz answers; give up after the shared wait.
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{name} did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Node { child, base }
}

#[tokio::test]
async fn the_limit_holds_across_two_processes_sharing_redis() {
    let db = TestDatabase::create(Backend::Postgres).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vitrine.toml");
    let toml = format!("[rate_limits]\n{TIERS_TOML}").replace("[tiers.", "[rate_limits.tiers.");
    std::fs::write(&config, toml).unwrap();
    let redis = redis_url();
    let a = start_node(dir.path(), "a", &db.url, &redis, &config).await;
    let b = start_node(dir.path(), "b", &db.url, &redis, &config).await;
    let out = Command::new(BIN)
        .args([
            "sellers",
            "create",
            "--name",
            "Shared",
            "--database-url",
            &db.url,
            "--data-dir",
        ])
        .arg(dir.path().join("cli"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["api_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let mut allowed = vec![];
    for i in 0..8 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = http
            .get(format!("{}/api/v1/products", node.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key("ratelimit"));
        allowed.push(r.status() == 200);
        if r.status() != 200 {
            assert_eq!(r.status(), 429);
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    // Three in all, not three per node.
    assert_eq!(
        allowed,
        [true, true, true, false, false, false, false, false]
    );

    drop(a);
    drop(b);
}
