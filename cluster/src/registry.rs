//! The cluster's shared state in Redis: the node registry (each node's entry, refreshed with a
//! TTL, so a dead node drops out within three heartbeats) and each live stream's origin (the
//! node holding its publisher, under a lease its holder renews; it expires when the node dies).
//!
//! Keys, under the cluster's prefix `vitrine:cluster:{name}`:
//! - `:node:{id}` — the node's [`NodeInfo`] as JSON, `PX` = 3 heartbeats;
//! - `:nodes` — the set of node ids (members whose entry expired are pruned when listed);
//! - `:origin:{stream}` — the origin node's id, `PX` = the origin lease;
//! - `:live` — the set of streams with an origin (members whose origin expired are pruned when
//!   listed), which the roles consuming live media on other nodes follow;
//! - `:work:{role}:{stream}` — the node doing `role`'s work on the stream (HLS), under a lease
//!   its holder renews, so that one node of the cluster packages each stream.
//!
//! **Must never:** renew or release another node's origin lease (both are compare-and-set
//! scripts on the holder's id), or treat a node whose entry expired as serving.

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use vitrine_core::StreamId;

/// What a node tells the cluster about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub region: String,
    /// Where other nodes reach this node's HTTP routes (WHEP for relays, the admin routes).
    pub url: String,
    /// Where clients reach it (the base of the redirects that send them here). Entries of
    /// nodes from before it was announced have none: see [`NodeInfo::client_base`].
    #[serde(default)]
    pub public_url: String,
    pub roles: Vec<String>,
    /// A draining node is taken out of selection; it still serves what it has.
    pub draining: bool,
    pub load: Load,
}

impl NodeInfo {
    /// The base URL clients are sent to: the public one, else the one nodes use.
    pub fn client_base(&self) -> &str {
        let base = if self.public_url.is_empty() {
            &self.url
        } else {
            &self.public_url
        };
        base.trim_end_matches('/')
    }

    /// The origin (`scheme://host[:port]`) of [`NodeInfo::client_base`]: what a page's
    /// `connect-src` must name for a browser to follow a redirect here. None when the base is
    /// not an http(s) URL.
    pub fn client_origin(&self) -> Option<String> {
        let url = reqwest::Url::parse(self.client_base()).ok()?;
        matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
    }
}

/// A node's load, as last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    pub publishers: u64,
    pub subscribers: u64,
    /// Relays this node runs (streams it receives from another origin).
    pub relays: u64,
}

impl Load {
    /// One figure to compare nodes by: media sessions of every kind.
    pub fn sessions(&self) -> u64 {
        self.publishers + self.subscribers + self.relays
    }
}

/// Redis failed; the caller decides whether that is fatal (it never is for a viewer).
#[derive(Debug, thiserror::Error)]
#[error("cluster registry: {0}")]
pub struct RegistryError(String);

impl RegistryError {
    pub(crate) fn from_display(e: &dyn std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

fn failed(e: impl std::fmt::Display) -> RegistryError {
    RegistryError(e.to_string())
}

/// Renews `KEYS[1]` for `ARGV[2]` ms only while it holds `ARGV[1]`.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// [`RENEW`] for an origin lease, which also lists `ARGV[3]` in the live set `KEYS[2]`.
/// `KEYS[3..]` are the holder's own work leases on the stream, set to it for as long.
const RENEW_ORIGIN: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SADD', KEYS[2], ARGV[3]); \
     for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end; \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Deletes `KEYS[1]` only while it holds `ARGV[1]`.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// The cluster's keys in one Redis.
#[derive(Clone)]
pub struct Registry {
    redis: MultiplexedConnection,
    prefix: String,
}

impl Registry {
    pub async fn connect(url: &str, cluster: &str) -> Result<Self, RegistryError> {
        let client = redis::Client::open(url).map_err(failed)?;
        let redis = client
            .get_multiplexed_async_connection()
            .await
            .map_err(failed)?;
        Ok(Self {
            redis,
            prefix: format!("vitrine:cluster:{cluster}"),
        })
    }

    fn node_key(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    fn origin_key(&self, stream: &StreamId) -> String {
        format!("{}:origin:{stream}", self.prefix)
    }

    fn live_key(&self) -> String {
        format!("{}:live", self.prefix)
    }

    fn work_key(&self, role: &str, stream: &str) -> String {
        format!("{}:work:{role}:{stream}", self.prefix)
    }

    /// Streams published somewhere in the cluster now; members whose origin lease expired (the
    /// node died) are pruned.
    pub async fn live_streams(&self) -> Result<Vec<StreamId>, RegistryError> {
        let mut redis = self.redis.clone();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.live_key())
            .query_async(&mut redis)
            .await
            .map_err(failed)?;
        let mut live = Vec::new();
        for member in members {
            let Ok(stream) = StreamId::parse(&member) else {
                continue;
            };
            if self.origin(&stream).await?.is_some() {
                live.push(stream);
            } else {
                let _: Result<(), _> = redis::cmd("SREM")
                    .arg(self.live_key())
                    .arg(&member)
                    .query_async(&mut redis)
                    .await;
            }
        }
        Ok(live)
    }

    /// Takes `role`'s work on `stream` for `node` if nobody holds it (or renews it if `node`
    /// does); true when `node` holds it now.
    pub async fn take_work(
        &self,
        role: &str,
        stream: &StreamId,
        node: &str,
        lease: Duration,
    ) -> Result<bool, RegistryError> {
        let key = self.work_key(role, stream.as_str());
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(node)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(failed)?;
        if taken.is_some() {
            return Ok(true);
        }
        self.renew(&key, node, lease).await
    }

    /// Takes `role`'s work on `stream` for `node` whoever holds it (the stream's origin, which
    /// works on its own streams).
    pub async fn claim_work(
        &self,
        role: &str,
        stream: &StreamId,
        node: &str,
        lease: Duration,
    ) -> Result<(), RegistryError> {
        redis::cmd("SET")
            .arg(self.work_key(role, stream.as_str()))
            .arg(node)
            .arg("PX")
            .arg(millis(lease))
            .query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(failed)
    }

    /// Gives up `role`'s work on `stream` if `node` holds it.
    pub async fn drop_work(
        &self,
        role: &str,
        stream: &StreamId,
        node: &str,
    ) -> Result<(), RegistryError> {
        self.release(&self.work_key(role, stream.as_str()), node)
            .await
    }

    async fn renew(&self, key: &str, node: &str, lease: Duration) -> Result<bool, RegistryError> {
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(key)
            .arg(node)
            .arg(millis(lease))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(failed)?;
        Ok(renewed == 1)
    }

    async fn release(&self, key: &str, node: &str) -> Result<(), RegistryError> {
        redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(key)
            .arg(node)
            .query_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
            .map_err(failed)
    }

    /// Publishes this node's entry for `ttl`.
    pub async fn announce(&self, node: &NodeInfo, ttl: Duration) -> Result<(), RegistryError> {
        self.entry(node, ttl)?
            .query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(failed)
    }

    /// A pipeline that writes `node`'s entry for `ttl` and lists it (both replies ignored).
    fn entry(&self, node: &NodeInfo, ttl: Duration) -> Result<redis::Pipeline, RegistryError> {
        let json = serde_json::to_string(node).map_err(failed)?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.node_key(&node.id))
            .arg(json)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .cmd("SADD")
            .arg(self.nodes_key())
            .arg(&node.id)
            .ignore();
        Ok(pipe)
    }

    /// Removes this node's entry at once (a clean exit).
    pub async fn withdraw(&self, id: &str) -> Result<(), RegistryError> {
        redis::pipe()
            .cmd("DEL")
            .arg(self.node_key(id))
            .ignore()
            .cmd("SREM")
            .arg(self.nodes_key())
            .arg(id)
            .ignore()
            .query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(failed)
    }

    /// One node's entry, if it is alive.
    pub async fn node(&self, id: &str) -> Result<Option<NodeInfo>, RegistryError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.node_key(id))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(failed)?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Every live node, sorted by id; ids whose entry expired are pruned from the set.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, RegistryError> {
        let mut redis = self.redis.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.nodes_key())
            .query_async(&mut redis)
            .await
            .map_err(failed)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.node_key(id)).collect();
        let entries: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .map_err(failed)?;
        let mut nodes = Vec::new();
        for (id, entry) in ids.iter().zip(entries) {
            match entry.and_then(|j| serde_json::from_str::<NodeInfo>(&j).ok()) {
                Some(node) => nodes.push(node),
                None => {
                    let _: Result<(), _> = redis::cmd("SREM")
                        .arg(self.nodes_key())
                        .arg(id)
                        .query_async(&mut redis)
                        .await;
                }
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Makes `node` the origin of `stream` for `lease` (the newest publisher wins, as on one
    /// node: a seller who reconnects elsewhere takes the stream with them).
    pub async fn claim_origin(
        &self,
        stream: &StreamId,
        node: &str,
        lease: Duration,
    ) -> Result<(), RegistryError> {
        redis::pipe()
            .cmd("SET")
            .arg(self.origin_key(stream))
            .arg(node)
            .arg("PX")
            .arg(millis(lease))
            .ignore()
            .cmd("SADD")
            .arg(self.live_key())
            .arg(stream.as_str())
            .ignore()
            .query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(failed)
    }

    /// One heartbeat of `node` in one round trip, however many streams it holds: publishes
    /// its entry for `ttl`, and for each of `origins` extends its lease by `lease`, keeps the
    /// stream listed as live (a listing that a concurrent prune of a moment without origin
    /// took away comes back) and takes the node's own `work` leases on it (the origin's claim
    /// wins over a node that worked on the stream while it was elsewhere). One flag per
    /// stream, in order: false when another node holds it now (or nobody), and then its work
    /// leases are left alone.
    pub async fn heartbeat(
        &self,
        node: &NodeInfo,
        ttl: Duration,
        origins: &[StreamId],
        work: &[&str],
        lease: Duration,
    ) -> Result<Vec<bool>, RegistryError> {
        let mut pipe = self.entry(node, ttl)?;
        for stream in origins {
            let works: Vec<String> = work
                .iter()
                .map(|role| self.work_key(role, stream.as_str()))
                .collect();
            pipe.cmd("EVAL")
                .arg(RENEW_ORIGIN)
                .arg(2 + works.len())
                .arg(self.origin_key(stream))
                .arg(self.live_key())
                .arg(&works)
                .arg(&node.id)
                .arg(millis(lease))
                .arg(stream.as_str());
        }
        let renewed: Vec<i64> = pipe
            .query_async(&mut self.redis.clone())
            .await
            .map_err(failed)?;
        Ok(renewed.into_iter().map(|r| r == 1).collect())
    }

    /// The id of the node holding `role`'s work on `stream`, if any holds it.
    pub async fn work_holder(
        &self,
        role: &str,
        stream: &StreamId,
    ) -> Result<Option<String>, RegistryError> {
        redis::cmd("GET")
            .arg(self.work_key(role, stream.as_str()))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(failed)
    }

    /// Gives up `node`'s lease on `stream` (its publisher stopped); another node's is kept, and
    /// the stream stays listed as live until its origin is gone.
    pub async fn release_origin(&self, stream: &StreamId, node: &str) -> Result<(), RegistryError> {
        self.release(&self.origin_key(stream), node).await
    }

    /// The id of the node holding `stream`'s publisher, if any holds it.
    pub async fn origin(&self, stream: &StreamId) -> Result<Option<String>, RegistryError> {
        redis::cmd("GET")
            .arg(self.origin_key(stream))
            .query_async(&mut self.redis.clone())
            .await
            .map_err(failed)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.redis.clone())
            .await
            .map(drop)
            .map_err(failed)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_a_public_url_sends_clients_to_its_node_url() {
        let old = r#"{"id":"a","region":"eu","url":"http://10.0.0.5:8080/","roles":["media"],
            "draining":false,"load":{"publishers":0,"subscribers":0,"relays":0}}"#;
        let node: NodeInfo = serde_json::from_str(old).unwrap();
        assert_eq!(node.client_base(), "http://10.0.0.5:8080");
        let new = NodeInfo {
            public_url: "https://a.example/".into(),
            ..node
        };
        assert_eq!(new.client_base(), "https://a.example");
    }

    #[test]
    fn a_nodes_client_origin_is_its_public_scheme_host_and_port() {
        let node = |public: &str| NodeInfo {
            id: "a".into(),
            region: "eu".into(),
            url: "http://10.0.0.5:8080".into(),
            public_url: public.into(),
            roles: vec!["media".into()],
            draining: false,
            load: Load::default(),
        };
        let origin = |public: &str| node(public).client_origin();
        assert_eq!(
            origin("https://A.example:443/live/"),
            Some("https://a.example".into())
        );
        assert_eq!(
            origin("http://[2001:db8::7]:8080/x"),
            Some("http://[2001:db8::7]:8080".into())
        );
        assert_eq!(origin(""), Some("http://10.0.0.5:8080".into()));
        assert_eq!(origin("ftp://a.example"), None);
        assert_eq!(origin("not a url; script-src *"), None);
    }
}
