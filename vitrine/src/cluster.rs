//! This node's part in a media cluster: the `[cluster]` settings and their flags (whether it
//! joins, and as whom) and joining. A node is clustered when it has both a Redis URL and a
//! cluster secret; without them it runs alone, as before.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vitrine_cluster::token::ClusterKey;

/// Flags of the cluster (flattened into `vitrine serve`); each also reads its variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// A file of at least 32 random bytes every node of the cluster shares: nodes relaying a
    /// stream authenticate with it. With `--redis`, it makes this node a cluster member.
    #[arg(long, env = "VITRINE_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// This node's id in the cluster (letters, digits, `-`; default: host name and process id).
    #[arg(long, env = "VITRINE_NODE_ID")]
    pub node_id: Option<String>,
    /// This node's region (default "default").
    #[arg(long, env = "VITRINE_REGION")]
    pub region: Option<String>,
    /// Where the other nodes reach this node's HTTP listener (default: the public URL, else
    /// the bound address).
    #[arg(long, env = "VITRINE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The cluster's name, so several clusters can share one Redis (default "default").
    #[arg(long, env = "VITRINE_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
}

/// The `[cluster]` table of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    secret_file: Option<PathBuf>,
    node_id: Option<String>,
    region: Option<String>,
    advertise_url: Option<String>,
    name: Option<String>,
    heartbeat_ms: Option<u64>,
    origin_lease_ms: Option<u64>,
    relay_idle_secs: Option<u64>,
    relay_check_ms: Option<u64>,
    max_load: Option<u64>,
}

impl FileCluster {
    /// The region the file gives this node (the deployment's regions need it, clustered or not).
    pub fn region(&self) -> Option<String> {
        self.region.clone()
    }
}

/// A clustered node's settings, before the listener is bound (the URL may come from it).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub name: String,
    pub node_id: String,
    pub region: String,
    pub advertise_url: Option<String>,
    pub key: ClusterKey,
    pub heartbeat: Duration,
    pub origin_lease: Duration,
    pub relay_idle: Duration,
    pub relay_check: Duration,
    /// Nodes with this many media sessions or more take no new publisher.
    pub max_load: u64,
}

impl ClusterSettings {
    /// Flags over the file; `None` when the node is not clustered (no secret file).
    pub fn resolve(args: ClusterArgs, file: FileCluster) -> anyhow::Result<Option<Self>> {
        let Some(secret_file) = args.cluster_secret_file.or(file.secret_file) else {
            return Ok(None);
        };
        let secret = std::fs::read(&secret_file)
            .with_context(|| format!("reading the cluster secret {}", secret_file.display()))?;
        let key = ClusterKey::from_secret(&secret)
            .context("the cluster secret file must hold at least 32 bytes")?;
        let node_id = args
            .node_id
            .or(file.node_id)
            .unwrap_or_else(|| default_node_id(&crate::state::hostname()));
        if !vitrine_cluster::valid_node_id(&node_id) {
            bail!("node id {node_id:?}: 1 to 64 lower-case letters, digits and '-'");
        }
        let name = args
            .cluster_name
            .or(file.name)
            .unwrap_or_else(|| "default".into());
        if !vitrine_cluster::valid_node_id(&name) {
            bail!("cluster name {name:?}: 1 to 64 lower-case letters, digits and '-'");
        }
        let advertise_url = args.advertise_url.or(file.advertise_url);
        if let Some(url) = &advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("advertise URL {url:?} is not an http(s) URL");
        }
        let ms = |v: Option<u64>, default: u64, what: &str| match v {
            Some(0) => bail!("cluster.{what} must be at least 1"),
            v => Ok(Duration::from_millis(v.unwrap_or(default))),
        };
        let heartbeat = ms(file.heartbeat_ms, 2_000, "heartbeat_ms")?;
        let origin_lease = ms(file.origin_lease_ms, 6_000, "origin_lease_ms")?;
        if origin_lease < heartbeat * 2 {
            bail!("cluster.origin_lease_ms must be at least two heartbeats");
        }
        Ok(Some(Self {
            name,
            node_id,
            region: args
                .region
                .or(file.region)
                .unwrap_or_else(|| "default".into()),
            advertise_url,
            key,
            heartbeat,
            origin_lease,
            relay_idle: Duration::from_secs(file.relay_idle_secs.unwrap_or(60)),
            relay_check: ms(file.relay_check_ms, 500, "relay_check_ms")?,
            max_load: file.max_load.unwrap_or(20_000),
        }))
    }
}

/// `host-pid`, lower-cased, other characters replaced by `-`.
fn default_node_id(host: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// Joins the media cluster as `settings` say, reachable at `url`, and makes the SFU relay
/// streams published on other nodes.
pub async fn join(
    config: &crate::config::Config,
    settings: &ClusterSettings,
    url: String,
    public_url: &str,
    state: &crate::app::AppState,
    work: crate::roles::ClusterWork,
    metrics: vitrine_cluster::ClusterMetrics,
) -> anyhow::Result<vitrine_cluster::Cluster> {
    let sfu = &state.sfu;
    let roles = config.roles.names();
    let packages = config.roles.hls && config.hls.enabled;
    // Captions run here for this node's publishers (media) and for other nodes' streams that
    // nobody captions (subtitles).
    let captions = state.captions.is_some();
    let mut own_work = Vec::new();
    if packages {
        own_work.push("hls");
    }
    if captions && config.roles.media {
        own_work.push("captions");
    }
    let cluster = vitrine_cluster::Cluster::join(
        vitrine_cluster::ClusterConfig {
            name: settings.name.clone(),
            node_id: settings.node_id.clone(),
            region: settings.region.clone(),
            url,
            public_url: public_url.to_owned(),
            max_load: settings.max_load,
            roles,
            own_work,
            key: settings.key.clone(),
            heartbeat: settings.heartbeat,
            origin_lease: settings.origin_lease,
            relay_idle: settings.relay_idle,
            relay_check: settings.relay_check,
        },
        config
            .redis_url
            .as_deref()
            .context("a cluster needs Redis")?,
        Arc::clone(&sfu.factory),
        Arc::clone(sfu.routers.metrics()),
        metrics,
    )
    .await
    .context("joining the cluster")?;
    sfu.set_upstream(Arc::new(cluster.clone()));
    if let Some(hls) = &state.hls {
        // Every node answers for every stream's HLS; the one holding its lease produces it.
        hls.set_origins(Arc::new(crate::hls_origins::ClusterOrigins::new(
            cluster.clone(),
        )));
    }
    if packages {
        // Streams published on nodes that do not package HLS are packaged here.
        cluster.consume_live("hls", Arc::clone(&sfu.routers), work.hls);
    }
    if captions && config.roles.subtitles {
        // Streams published on nodes that do not caption are captioned here.
        cluster.consume_live("captions", Arc::clone(&sfu.routers), work.captions);
    }
    tracing::info!(node = cluster.node_id(), cluster = %settings.name, "joined the media cluster");
    Ok(cluster)
}

/// How long a draining node keeps answering after it closed its sessions, so that clients
/// coming back to it are redirected to another node rather than refused.
const HANDOVER: Duration = Duration::from_secs(2);

/// A clustered node's drain, before it stops: it leaves selection, closes its publishers (their
/// pages re-publish and are sent to another node; the streams stay live) and its viewers (they
/// reconnect and are sent to another node), closes chat members with 4503 (they resume
/// elsewhere from their last event), and keeps answering for [`HANDOVER`] to redirect them.
/// Requests in flight (orders) are finished by the graceful HTTP shutdown that follows.
pub async fn hand_over(state: &crate::app::AppState, cluster: &vitrine_cluster::Cluster) {
    cluster.drain().await;
    state.ingest.hand_off_all().await;
    state.sfu.close_all().await;
    state.chat.shutdown();
    tokio::time::sleep(HANDOVER).await;
}

/// What the admin routes reach.
#[derive(Clone)]
struct Admin {
    cluster: vitrine_cluster::Cluster,
    /// Where operators' tokens are.
    store: crate::store::Store,
    /// Cancelled to ask the process to drain and exit.
    drain: tokio_util::sync::CancellationToken,
}

/// The operator's routes of a clustered node, authenticated with an operator's token (`vitrine
/// operators create`) or one derived from the cluster secret (`vitrine drain` makes one):
/// `POST /admin/drain`, `GET /admin/cluster`.
pub fn admin_routes(
    cluster: vitrine_cluster::Cluster,
    store: crate::store::Store,
    drain: tokio_util::sync::CancellationToken,
) -> axum::Router {
    use axum::routing::{get, post};
    let admin = Admin {
        cluster,
        store,
        drain,
    };
    // Every route, present and future, behind the operator's credential.
    axum::Router::new()
        .route("/admin/drain", post(drain_node))
        .route("/admin/cluster", get(cluster_view))
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_operator,
        ))
        .with_state(admin)
}

/// Lets the request through when it carries an operator's token of this cluster; 401 else.
async fn require_operator(
    axum::extract::State(admin): axum::extract::State<Admin>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let token = vitrine_sfu::signaling::bearer(request.headers()).unwrap_or_default();
    if admin.cluster.is_admin(token) {
        return next.run(request).await;
    }
    let presented = vitrine_core::Secret::from_presented(token);
    match crate::operators::by_token(&admin.store, &presented).await {
        Ok(Some(_)) => next.run(request).await,
        Ok(None) => {
            vitrine_core::Problem::unauthorized("an operator token of this cluster is needed")
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "operator lookup failed");
            vitrine_core::Problem::internal().into_response()
        }
    }
}

/// Asks this node to drain and exit; answers at once (202), the drain runs after.
async fn drain_node(
    axum::extract::State(admin): axum::extract::State<Admin>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    tracing::info!("drain requested by an operator");
    admin.drain.cancel();
    (
        axum::http::StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({
            "node": admin.cluster.node_id(),
            "draining": true,
        })),
    )
        .into_response()
}

/// The cluster's nodes with their region, roles, load and whether they drain.
async fn cluster_view(
    axum::extract::State(admin): axum::extract::State<Admin>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let view = async {
        let nodes = admin.cluster.nodes().await?;
        let streams = admin.cluster.streams().await?;
        Ok::<_, vitrine_cluster::registry::RegistryError>((nodes, streams))
    };
    match view.await {
        Ok((nodes, streams)) => axum::Json(serde_json::json!({
            "node": admin.cluster.node_id(),
            "nodes": nodes,
            "streams": streams
                .into_iter()
                .map(|(stream, origin)| serde_json::json!({ "id": stream, "origin": origin }))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => vitrine_core::Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "cluster-unavailable",
            "The cluster directory is unavailable",
        )
        .with_detail(e.to_string())
        .into_response(),
    }
}

/// `vitrine drain`: asks the node at `url` to drain, with an operator token made from the
/// cluster secret; with `wait`, returns once the node has stopped answering.
pub async fn drain_command(
    url: &str,
    secret_file: &std::path::Path,
    wait: bool,
) -> anyhow::Result<()> {
    let secret = std::fs::read(secret_file)
        .with_context(|| format!("reading the cluster secret {}", secret_file.display()))?;
    let key = ClusterKey::from_secret(&secret)
        .context("the cluster secret file must hold at least 32 bytes")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let base = url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/admin/drain"))
        .bearer_auth(key.issue_admin(now))
        .send()
        .await
        .with_context(|| format!("reaching {base}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("{base} answered {status}: {body}");
    }
    println!("{body}");
    while wait {
        match http.get(format!("{base}/healthz")).send().await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(bytes: usize) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), vec![7u8; bytes]).unwrap();
        f
    }

    #[test]
    fn a_node_without_a_secret_runs_alone() {
        let s = ClusterSettings::resolve(ClusterArgs::default(), FileCluster::default()).unwrap();
        assert!(s.is_none());
    }

    #[test]
    fn bad_cluster_settings_are_refused() {
        let short = secret(8);
        let args = ClusterArgs {
            cluster_secret_file: Some(short.path().into()),
            ..Default::default()
        };
        let e = ClusterSettings::resolve(args, FileCluster::default()).unwrap_err();
        assert!(format!("{e:#}").contains("32 bytes"), "{e:#}");
        let good = secret(32);
        for (node, url) in [("Node A", None), ("a", Some("ftp://x"))] {
            let args = ClusterArgs {
                cluster_secret_file: Some(good.path().into()),
                node_id: Some(node.into()),
                advertise_url: url.map(str::to_owned),
                ..Default::default()
            };
            assert!(ClusterSettings::resolve(args, FileCluster::default()).is_err());
        }
        let args = ClusterArgs {
            cluster_secret_file: Some(good.path().into()),
            ..Default::default()
        };
        let s = ClusterSettings::resolve(args, FileCluster::default())
            .unwrap()
            .unwrap();
        assert!(vitrine_cluster::valid_node_id(&s.node_id), "{}", s.node_id);
    }

    #[test]
    fn default_node_ids_are_valid() {
        let id = default_node_id("Web_01.example.INTERNAL");
        assert!(vitrine_cluster::valid_node_id(&id), "{id}");
        assert!(id.starts_with("web-01-example-internal-"));
    }
}
