//! The cluster harness: real `vitrine serve` processes on loopback sharing one PostgreSQL
//! database and one Redis (each test names its own cluster in Redis), killed when dropped.

use crate::support::WAIT;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vitrine_checkout::db::Backend;
use vitrine_checkout::testing::{TestDatabase, redis_url};

pub const BIN: &str = env!("CARGO_BIN_EXE_vitrine");

/// One node: its process, its HTTP base and where its log goes.
pub struct Node {
    pub id: String,
    pub base: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Node {
    /// `kill -9`: the node vanishes without releasing anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded by [`WAIT`]) for the process to exit by itself; its exit status.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let child = self.child.as_mut().expect("node running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} did not exit:\n{}",
                self.id,
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `vitrine drain` against this node, as an operator runs it; the command's output.
    pub async fn drain(&self, secret: &Path) -> std::process::Output {
        tokio::process::Command::new(BIN)
            .args(["drain", "--url", &self.base])
            .arg("--cluster-secret-file")
            .arg(secret)
            .output()
            .await
            .unwrap()
    }

    /// The node's Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric's value on this node (0 when the node does not report it).
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics().await, name)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of the sample named exactly `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Several nodes of one cluster and what they share.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub database: TestDatabase,
    dir: tempfile::TempDir,
    name: String,
    /// The S3-compatible bucket every node keeps its HLS media in, when the test gave one.
    pub bucket: Option<Bucket>,
}

/// A bucket of its own on the test command's S3-compatible server.
pub struct Bucket {
    pub endpoint: String,
    pub name: String,
}

impl Bucket {
    /// Makes a new bucket.
    pub async fn create() -> Self {
        let endpoint = std::env::var("VITRINE_TEST_S3_ENDPOINT").expect(
            "VITRINE_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh, or \
             eval \"$(scripts/services.sh start)\" first",
        );
        let name = format!("t{}", rand::random::<u32>());
        let r = reqwest::Client::new()
            .put(format!("{endpoint}/{name}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating bucket: {}", r.status());
        Self { endpoint, name }
    }

    /// An object's bytes under the nodes' prefix, read straight from the bucket (`None` when
    /// absent).
    pub async fn get(&self, key: &str) -> Option<bytes::Bytes> {
        use object_store::ObjectStore;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.name)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let path = object_store::path::Path::from(format!("live/{key}"));
        match s3.get(&path).await {
            Ok(found) => Some(found.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
}

impl Cluster {
    /// Starts nodes `ids` one after the other (the first migrates the shared database).
    pub async fn start(ids: &[&str]) -> Self {
        let nodes: Vec<(&str, &[&str])> = ids
            .iter()
            .map(|id| (*id, &["--no-hls", "--no-ip-limits"][..]))
            .collect();
        Self::start_with(&nodes).await
    }

    /// Starts one node per (id, `--roles` value), limits per address lifted (every test client
    /// is 127.0.0.1), HLS off where the roles do not name it.
    pub async fn with_roles(nodes: &[(&str, &str)]) -> Self {
        Self::with_roles_in(nodes, None).await
    }

    /// [`Self::with_roles`], the nodes' HLS media in `bucket` when given.
    pub async fn with_roles_in(nodes: &[(&str, &str)], bucket: Option<Bucket>) -> Self {
        let args: Vec<Vec<&str>> = nodes
            .iter()
            .map(|(_, roles)| {
                let mut args = vec!["--roles", *roles, "--no-ip-limits"];
                if !roles.split(',').any(|r| r == "hls" || r == "web") {
                    args.push("--no-hls");
                }
                args
            })
            .collect();
        let nodes: Vec<(&str, &[&str])> = nodes
            .iter()
            .zip(&args)
            .map(|((id, _), args)| (*id, &args[..]))
            .collect();
        Self::start_in(&nodes, bucket).await
    }

    /// Starts nodes given as (id, extra `serve` arguments), one after the other.
    pub async fn start_with(nodes: &[(&str, &[&str])]) -> Self {
        Self::start_in(nodes, None).await
    }

    /// [`Self::start_with`], the nodes' HLS media in `bucket` when given.
    pub async fn start_in(nodes: &[(&str, &[&str])], bucket: Option<Bucket>) -> Self {
        let database = TestDatabase::create(Backend::Postgres).await.unwrap();
        let mut dir = tempfile::tempdir().unwrap();
        // Keeps the nodes' logs for a look after a failure.
        if std::env::var_os("VITRINE_TEST_KEEP_LOGS").is_some() {
            dir.disable_cleanup(true);
            eprintln!("cluster logs in {}", dir.path().display());
        }
        std::fs::write(
            dir.path().join("cluster.secret"),
            rand::random::<[u8; 32]>(),
        )
        .unwrap();
        let name = format!("t{}", rand::random::<u32>());
        let mut cluster = Self {
            nodes: Vec::new(),
            database,
            dir,
            name,
            bucket,
        };
        for (id, args) in nodes {
            let node = cluster.spawn(id, args).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Starts one more node named `id` with extra `args` and waits until it answers.
    pub async fn spawn(&self, id: &str, args: &[&str]) -> Node {
        let port = free_port();
        let data = self.dir.path().join(id);
        let log = self.dir.path().join(format!("{id}.log"));
        // Captions where a node makes them (subtitles) or places them in HLS (hls).
        let captions = args
            .windows(2)
            .any(|w| w[0] == "--roles" && w[1].split(',').any(|r| r == "subtitles" || r == "hls"));
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .args(["--database-url", &self.database.url])
            .args(["--redis", &redis_url()])
            .arg("--cluster-secret-file")
            .arg(self.dir.path().join("cluster.secret"))
            .args(["--node-id", id, "--cluster-name", &self.name])
            // Whisper only where a test asks for captions (a subtitles node).
            .args((!captions).then_some("--no-subtitles"))
            .args(one_port_each())
            .arg("--config")
            .arg(self.config())
            .args(args);
        if let Some(bucket) = &self.bucket {
            command
                .env("AWS_ENDPOINT", &bucket.endpoint)
                .env("AWS_ALLOW_HTTP", "true")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test");
        }
        launch(id, port, log, command).await
    }

    /// Settings every node of the test cluster shares: short heartbeats and leases so that
    /// failures show within a test's time.
    fn config(&self) -> PathBuf {
        let path = self.dir.path().join("cluster.toml");
        if !path.exists() {
            // With a bucket: media there, and a recording final 3 s after its publisher left.
            let storage = self.bucket.as_ref().map_or(String::new(), |b| {
                format!(
                    "storage = \"s3://{}/live\"\nfinalize_after_secs = 3\n",
                    b.name
                )
            });
            std::fs::write(
                &path,
                format!("[cluster]\nheartbeat_ms = 500\norigin_lease_ms = 1500\nrelay_idle_secs = 2\nrelay_check_ms = 200\n\n[hls]\nencoder = \"x264\"\nx264_preset = \"ultrafast\"\n{storage}\n[[hls.renditions]]\nheight = 240\nbitrate_kbps = 300\nfps = 30\n"),
            )
            .unwrap();
        }
        path
    }

    /// A seller created with the operator's CLI against the shared database; its token.
    pub async fn seller(&self, name: &str) -> String {
        self.cli(&["sellers", "create", "--name", name], "api_token")
    }

    /// An operator created with the CLI; its token.
    pub async fn operator(&self, name: &str) -> String {
        self.cli(&["operators", "create", "--name", name], "token")
    }

    /// Runs an operator command against the shared database; `field` of the JSON it prints.
    fn cli(&self, args: &[&str], field: &str) -> String {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .args(["--database-url", &self.database.url])
            .arg("--data-dir")
            .arg(self.dir.path().join("cli"));
        printed(command, field)
    }

    /// The shared secret file (the operator's credential for `vitrine drain`).
    pub fn secret(&self) -> PathBuf {
        self.dir.path().join("cluster.secret")
    }

    /// The base URL of node `id`.
    pub fn base(&self, id: &str) -> String {
        self.node(id).base.clone()
    }

    pub fn node(&self, id: &str) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    pub fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    /// Every node's log, for a failing test's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.id, tail(&n.log)))
            .collect()
    }
}

/// Runs an operator command that prints one JSON object, which must succeed; its `field`.
pub fn printed(mut command: Command, field: &str) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    line[field].as_str().unwrap().to_owned()
}

/// One UDP port per node for every WHIP and WHEP session, as in production, and one TCP port
/// (any free one: the UDP port's number may be another node's HTTP port).
pub fn one_port_each() -> Vec<String> {
    [
        "--ice-bind",
        "127.0.0.1",
        "--ice-udp-port",
        &free_udp_port().to_string(),
        "--ice-tcp-port",
        "0",
    ]
    .map(str::to_owned)
    .into()
}

/// Starts `command` (a `vitrine serve` listening on `port`) as node `id`, its log in `log`,
/// and waits until it answers.
pub async fn launch(id: &str, port: u16, log: PathBuf, mut command: Command) -> Node {
    let child = command
        .env("RUST_LOG", "info,webrtc=warn,rtc=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let node = Node {
        id: id.to_owned(),
        base: format!("http://127.0.0.1:{port}"),
        child: Some(child),
        log,
    };
    wait_healthy(&node).await;
    node
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(node: &Node) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", node.base)).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {} did not start:\n{}",
            node.id,
            tail(&node.log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// Polls `probe` (bounded by [`WAIT`]) until it returns true; on timeout the message
    /// carries every node's log.
    pub async fn until<F, Fut>(&self, what: &str, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !probe().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
