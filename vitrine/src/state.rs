//! What every handler reaches (`AppState`) and the node-wide facts the modules share. A leaf:
//! the API's handlers, the roles and the server's composition (`app`) import it, it imports
//! none of them, so they never import each other to reach the state.

use crate::api::metrics::ApiMetrics;
use crate::edge::EdgeConfig;
use crate::store::Store;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use vitrine_chat::Chat;
use vitrine_checkout::Checkout;
use vitrine_ingest::Ingest;
use vitrine_platform::Platform;
use vitrine_platform::ratelimit::RateLimiter;
use vitrine_sfu::Sfu;
use vitrine_subtitles::live::LiveCaptions;
use vitrine_transcode::Hls;

/// Largest request body any route accepts (SDP offers are the largest legitimate bodies).
pub(crate) const MAX_BODY_BYTES: usize = 128 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub checkout: Checkout,
    /// The built-in card processor, for its 3-D Secure check page.
    pub sandbox: Arc<vitrine_checkout::SandboxProvider>,
    /// Apps, API keys, OAuth2 grants and tokens, browser sessions.
    pub platform: Platform,
    /// Per-app rate limits of the seller API.
    pub limiter: RateLimiter,
    /// Buyers' bids per second, shared with the chat's bids.
    pub bids: crate::bids::BidLimit,
    pub api_metrics: Arc<ApiMetrics>,
    pub chat: Chat,
    /// Every stream's room events that replays show again.
    pub timeline: vitrine_chat::timeline::Timeline,
    pub sfu: Arc<Sfu>,
    pub ingest: Arc<Ingest>,
    /// The HLS role; `None` when turned off.
    pub hls: Option<Arc<Hls>>,
    pub captions: Option<Arc<LiveCaptions>>,
    /// The languages the streams' captions come in (see [`caption_languages`]).
    pub caption_languages: Arc<[String]>,
    /// Trusted proxies, per-address limits, who may read `/metrics`.
    pub edge: Arc<EdgeConfig>,
    /// What this node serves.
    pub roles: crate::roles::Roles,
    /// The deployment's regions when it has several (requests of other regions go there).
    pub homes: Option<crate::regions::Homes>,
    /// Buyers by token, this region's and other regions' (asked of their home).
    pub buyers: crate::regions::Buyers,
    pub(crate) registry: Arc<Registry>,
    pub(crate) public_url: Arc<OnceLock<String>>,
}

impl AppState {
    /// Base of the URLs handed out (configured, or derived from the bound address).
    pub fn public_url(&self) -> &str {
        self.public_url.get().map_or("", String::as_str)
    }
}

/// This machine's name, for naming a queue consumer or a cluster node.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vitrine".into())
}
