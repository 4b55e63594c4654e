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
            .unwrap_or_else(|| default_node_id(&crate::app::hostname()));
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
    sfu: &Arc<vitrine_sfu::Sfu>,
    metrics: vitrine_cluster::ClusterMetrics,
) -> anyhow::Result<vitrine_cluster::Cluster> {
    let mut roles = Vec::new();
    if config.roles.web {
        roles.push("web".to_owned());
    }
    if config.roles.subtitles {
        roles.push("subtitles".to_owned());
    }
    let cluster = vitrine_cluster::Cluster::join(
        vitrine_cluster::ClusterConfig {
            name: settings.name.clone(),
            node_id: settings.node_id.clone(),
            region: settings.region.clone(),
            url,
            roles,
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
    tracing::info!(node = cluster.node_id(), cluster = %settings.name, "joined the media cluster");
    Ok(cluster)
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
