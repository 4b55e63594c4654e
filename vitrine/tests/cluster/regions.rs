//! Two regions, a PostgreSQL database and a real `vitrine serve` node each: sellers and buyers
//! live in the region that made them, an API call that belongs to the other region is answered
//! there (a page is redirected there), and an order of a buyer from abroad is kept in the
//! seller's region with nothing of the buyer but an id.

use crate::nodes::{BIN, Node, free_port, launch, one_port_each, printed};
use crate::{buyer, call};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::process::Command;
use vitrine::regions::vouch::{CLIENT_ADDRESS, RegionsKey};
use vitrine_checkout::db::{Backend, connect};
use vitrine_checkout::testing::TestDatabase;

/// One region: its database and its node.
struct Region {
    name: &'static str,
    database: TestDatabase,
    node: Node,
}

struct Regions {
    eu: Region,
    us: Region,
    dir: tempfile::TempDir,
}

impl Regions {
    /// Databases first, then the file naming both regions, then one node per region, with no
    /// per-address limits.
    async fn start() -> Self {
        Self::start_with(&["--no-ip-limits"]).await
    }

    /// [`Regions::start`] with `args` for both nodes.
    async fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (eu_db, us_db) = (
            TestDatabase::create(Backend::Postgres).await.unwrap(),
            TestDatabase::create(Backend::Postgres).await.unwrap(),
        );
        let (eu_port, us_port) = (free_port(), free_port());
        let secret = dir.path().join("regions.secret");
        std::fs::write(&secret, [7u8; 32]).unwrap();
        let file = format!(
            "regions_secret_file = {secret:?}\n\n[regions.eu]\ndatabase_url = \"{}\"\npublic_url = \"http://127.0.0.1:{eu_port}\"\n\n\
             [regions.us]\ndatabase_url = \"{}\"\npublic_url = \"http://127.0.0.1:{us_port}\"\n",
            eu_db.url, us_db.url
        );
        std::fs::write(dir.path().join("regions.toml"), file).unwrap();
        let eu = node(dir.path(), "eu", eu_port, args).await;
        let us = node(dir.path(), "us", us_port, args).await;
        Self {
            eu: Region {
                name: "eu",
                database: eu_db,
                node: eu,
            },
            us: Region {
                name: "us",
                database: us_db,
                node: us,
            },
            dir,
        }
    }

    /// A seller made with the operator's CLI in `region`; its account token.
    fn seller(&self, region: &Region, name: &str) -> String {
        let mut command = Command::new(BIN);
        command
            .args(["sellers", "create", "--name", name, "--region", region.name])
            .arg("--config")
            .arg(self.dir.path().join("regions.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("cli"));
        printed(command, "api_token")
    }
}

async fn node(dir: &Path, region: &str, port: u16, args: &[&str]) -> Node {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--region", region, "--no-hls", "--no-subtitles"])
        .args(args)
        .arg("--config")
        .arg(dir.join("regions.toml"))
        .arg("--data-dir")
        .arg(dir.join(region))
        .args(one_port_each());
    let log: PathBuf = dir.join(format!("{region}.log"));
    launch(region, port, log, command).await
}

/// Every row of every table of `database`, as text (PostgreSQL's row-to-text cast).
async fn every_row(database: &TestDatabase) -> Vec<String> {
    let (pool, _) = connect(&database.url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(tables.len() > 20, "{tables:?}");
    let mut rows = Vec::new();
    for table in tables {
        // Names from the catalog, quoted.
        let sql = format!("SELECT t::text FROM \"{table}\" t");
        for r in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            rows.push(format!("{table}: {}", r.get::<String, _>(0)));
        }
    }
    pool.close().await;
    rows
}

async fn count(database: &TestDatabase, sql: &str) -> i64 {
    let (pool, _) = connect(&database.url).await.unwrap();
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    pool.close().await;
    n
}

async fn product(base: &str, seller: &str, sku: &str) -> Value {
    let new = json!({ "sku": sku, "title": sku, "stock": 5,
                      "price": { "amount": 1500, "currency": "EUR" } });
    let (s, p) = call(
        base,
        Method::POST,
        "/api/v1/products",
        Some(seller),
        Some(new),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    p
}

/// A new stream of `seller`, made through `base`; its id.
async fn new_stream(base: &str, seller: &str) -> String {
    let new = json!({ "title": "Live" });
    let (s, stream) = call(
        base,
        Method::POST,
        "/api/v1/streams",
        Some(seller),
        Some(new),
    )
    .await;
    assert_eq!(s, 201, "{stream}");
    stream["id"].as_str().unwrap().to_owned()
}

fn order_of(product: &Value) -> Value {
    json!({ "product_id": product["id"], "quantity": 1,
            "payment": { "card_number": "4242424242424242" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyers_data_stays_in_its_region() {
    let mut regions = Regions::start().await;
    let (eu, us) = (regions.eu.node.base.clone(), regions.us.node.base.clone());
    let us_seller = regions.seller(&regions.us, "Boutique US");
    let eu_seller = regions.seller(&regions.eu, "Boutique EU");
    assert!(us_seller.starts_with("vt_us_"), "{us_seller}");

    // The US seller works through the EU node: every call is answered by the US, and its
    // product and stream are made (and tagged) there.
    let hat = product(&eu, &us_seller, "HAT").await;
    let stream = new_stream(&eu, &us_seller).await;
    assert!(stream.starts_with("st_us_"), "{stream}");
    // Its watch page, asked of the EU, is a redirect to the US.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirects
        .get(format!("{eu}/watch/{stream}?lang=fr"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 307);
    assert_eq!(
        page.headers()["location"],
        format!("{us}/watch/{stream}?lang=fr").as_str()
    );
    // So is a viewer's WHEP offer: its media comes from the stream's region.
    let offer = no_redirects
        .post(format!("{eu}/whep/{stream}"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(offer.status(), 307);
    assert_eq!(
        offer.headers()["location"],
        format!("{us}/whep/{stream}").as_str()
    );
    assert!(hat["id"].as_str().unwrap().starts_with("pr_us_"), "{hat}");
    let scarf = product(&eu, &eu_seller, "SCARF").await;
    assert!(
        scarf["id"].as_str().unwrap().starts_with("pr_eu_"),
        "{scarf}"
    );

    // A buyer signs up in the EU and buys from both sellers, always through the EU node.
    let alice = buyer(&eu, "Alice from Lyon").await;
    assert!(alice.starts_with("bt_eu_"));
    let (s, abroad) = call(
        &eu,
        Method::POST,
        "/api/v1/orders",
        Some(&alice),
        Some(order_of(&hat)),
    )
    .await;
    assert_eq!(s, 201, "{abroad}");
    assert_eq!(abroad["status"], "paid");
    let (s, home) = call(
        &eu,
        Method::POST,
        "/api/v1/orders",
        Some(&alice),
        Some(order_of(&scarf)),
    )
    .await;
    assert_eq!(s, 201, "{home}");
    let alice_id = abroad["buyer_id"].as_str().unwrap().to_owned();
    assert_eq!(home["buyer_id"], abroad["buyer_id"]);

    // The US order is the seller's, in the US; the buyer's row, name and token hash never
    // left the EU database.
    let order = |o: &Value| {
        format!(
            "SELECT count(*) FROM orders WHERE id = '{}'",
            o["id"].as_str().unwrap()
        )
    };
    assert_eq!(count(&regions.us.database, &order(&abroad)).await, 1);
    assert_eq!(count(&regions.eu.database, &order(&abroad)).await, 0);
    assert_eq!(count(&regions.eu.database, &order(&home)).await, 1);
    assert_eq!(count(&regions.us.database, &order(&home)).await, 0);
    let token_hash = vitrine_core::Secret::from_presented(&alice).hash().0;
    let us_rows = every_row(&regions.us.database).await;
    let leaks: Vec<&String> = us_rows
        .iter()
        .filter(|r| r.contains("Alice") || r.contains(&token_hash) || r.starts_with("buyers:"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the buyer's data reached the US: {leaks:?}"
    );
    assert!(
        us_rows
            .iter()
            .any(|r| r.starts_with("orders:") && r.contains(&alice_id))
    );
    let eu_rows = every_row(&regions.eu.database).await;
    assert!(
        eu_rows
            .iter()
            .any(|r| r.starts_with("buyers:") && r.contains("Alice from Lyon"))
    );
    assert!(
        !eu_rows.iter().any(|r| r.contains("HAT")),
        "the US catalog is not copied to the EU"
    );

    // The buyer reads the US order through either node; the US seller sees it too.
    for base in [&eu, &us] {
        let path = format!("/api/v1/orders/{}", abroad["id"].as_str().unwrap());
        let (s, seen) = call(base, Method::GET, &path, Some(&alice), None).await;
        assert_eq!(s, 200, "{seen}");
        assert_eq!(seen["buyer_id"], alice_id.as_str());
    }
    // Her order list, asked anywhere, holds both: her home merges the US's page into its own,
    // a page at a time.
    for base in [&eu, &us] {
        let mut seen = Vec::new();
        let mut path = "/api/v1/orders?limit=1".to_owned();
        loop {
            let (s, page) = call(base, Method::GET, &path, Some(&alice), None).await;
            assert_eq!(s, 200, "{page}");
            assert_eq!(page["orders"].as_array().unwrap().len(), 1, "{page}");
            seen.push(page["orders"][0]["id"].as_str().unwrap().to_owned());
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/orders?limit=1&cursor={c}"),
                None => break,
            }
        }
        // Newest first: the order at home was placed second.
        assert_eq!(
            seen,
            [&home["id"], &abroad["id"]].map(|v| v.as_str().unwrap().to_owned())
        );
    }
    let (s, page) = call(&eu, Method::GET, "/api/v1/orders", Some(&us_seller), None).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["orders"].as_array().map(Vec::len), Some(1), "{page}");

    // A made-up EU token is refused by the US after asking the EU.
    let forged = vitrine_core::Secret::generate("bt_eu");
    let (s, refused) = call(
        &us,
        Method::POST,
        "/api/v1/orders",
        Some(forged.expose()),
        Some(order_of(&hat)),
    )
    .await;
    assert_eq!(s, 401, "{refused}");
    // A call one region forwarded (vouched for with the regions' secret) is answered where it
    // lands, never sent on: the EU does not know the US seller, and says so rather than
    // bouncing the call back. Claiming to be forwarded without the secret changes nothing.
    let client = reqwest::Client::new();
    let key = RegionsKey::from_secret(&[7; 32]).unwrap();
    let us_region = vitrine_core::Region::parse("us").unwrap();
    let voucher = key.vouch(
        &us_region,
        [198, 51, 100, 4].into(),
        unix_now(),
        &Method::GET,
        "/api/v1/products",
    );
    let bounced = client
        .get(format!("{eu}/api/v1/products"))
        .bearer_auth(&us_seller)
        .header("vitrine-forwarded-from", "us")
        .header(CLIENT_ADDRESS, voucher)
        .send()
        .await
        .unwrap();
    assert_eq!(bounced.status(), 401);
    let claimed = client
        .get(format!("{eu}/api/v1/products"))
        .bearer_auth(&us_seller)
        .header("vitrine-forwarded-from", "us")
        .send()
        .await
        .unwrap();
    assert_eq!(claimed.status(), 200);
    assert_eq!(claimed.headers()["vitrine-region"], "us");
    // A new order's body is read to find its product's region, within the body limit.
    let huge = client
        .post(format!("{eu}/api/v1/orders"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let problem: Value = huge.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/body-too-large"),
        "{problem}"
    );

    // With the EU down, an EU buyer the US has not met cannot buy there (503, nothing
    // charged); the US's own buyers still can.
    let bob = buyer(&eu, "Bob").await;
    regions.eu.node.kill();
    let (s, down) = call(
        &us,
        Method::POST,
        "/api/v1/orders",
        Some(&bob),
        Some(order_of(&hat)),
    )
    .await;
    assert_eq!(s, 503, "{down}");
    assert!(
        down["detail"].as_str().unwrap().contains("home region eu"),
        "{down}"
    );
    // And the EU's sellers cannot be served by the US for it: 503, not another region's SQL.
    let (s, down) = call(&us, Method::GET, "/api/v1/products", Some(&eu_seller), None).await;
    assert_eq!(s, 503, "{down}");
    assert!(
        down["type"]
            .as_str()
            .unwrap()
            .ends_with("/region-unavailable"),
        "{down}"
    );
    let carol = buyer(&us, "Carol").await;
    assert!(carol.starts_with("bt_us_"));
    let (s, local) = call(
        &us,
        Method::POST,
        "/api/v1/orders",
        Some(&carol),
        Some(order_of(&hat)),
    )
    .await;
    assert_eq!(s, 201, "{local}");
    assert_eq!(
        count(&regions.us.database, "SELECT count(*) FROM orders").await,
        2
    );
    // Her list needs the EU's page too, which cannot be read: 503 rather than a short list.
    let (s, list) = call(&us, Method::GET, "/api/v1/orders", Some(&carol), None).await;
    assert_eq!(s, 503, "{list}");
    assert!(
        list["detail"].as_str().unwrap().contains("region eu"),
        "{list}"
    );
}

/// A client whose requests leave from `address` (any of 127.0.0.0/8 reaches the nodes).
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .build()
        .unwrap()
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// The attack: callers of the EU node reading a US stream all reached the US from the EU
/// node's address, so one caller used up every forwarded caller's per-address allowance
/// there. Now each keeps its own, vouched for by the forwarding node, and a caller who
/// claims to be forwarded without the regions' secret is counted at its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_callers_keep_their_own_address_at_home() {
    let regions = Regions::start_with(&["--limit-public", "3/min burst 3"]).await;
    let (eu, us) = (regions.eu.node.base.clone(), regions.us.node.base.clone());
    let us_seller = regions.seller(&regions.us, "Boutique US");
    let public = format!(
        "/api/v1/public/streams/{}",
        new_stream(&us, &us_seller).await
    );

    // One greedy caller through the EU uses up its own allowance at the US...
    let greedy = client_from([127, 0, 0, 2]);
    for _ in 0..3 {
        assert_eq!(status_of(greedy.get(format!("{eu}{public}"))).await, 200);
    }
    assert_eq!(status_of(greedy.get(format!("{eu}{public}"))).await, 429);
    // ...and nobody else's.
    let other = client_from([127, 0, 0, 3]);
    assert_eq!(status_of(other.get(format!("{eu}{public}"))).await, 200);

    // A caller straight to the US claiming to be forwarded from the EU, for a new address
    // each time, is counted at its own.
    let forger = client_from([127, 0, 0, 4]);
    let mut statuses = Vec::new();
    for n in 0..4 {
        let forged = forger
            .get(format!("{us}{public}"))
            .header("vitrine-forwarded-from", "eu")
            .header(
                "vitrine-client-address",
                format!("10.0.0.{n} {} 00ff", unix_now()),
            )
            .header("x-forwarded-for", format!("10.0.1.{n}"));
        statuses.push(status_of(forged).await);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
