//! The roles a process runs (`--roles`), each of which works on a node of its own:
//! - `api`: the seller and buyer API, OAuth2, the pages and the chat;
//! - `media`: WHIP, WHEP and the SFU (publishers, viewers, relays);
//! - `hls`: transcoding and packaging live streams to HLS, recordings and replays;
//! - `subtitles`: the replay subtitle queue's worker and, with a cluster, live captions of
//!   streams whose origin does not caption them (audio over a relay, captions into the chat).
//!
//! `web` means `api` + `media` + `hls`, what one node ran before roles could be split, so
//! existing deployments run as before. A node without `media` still answers WHIP and WHEP: in a
//! cluster it sends each client to a media node (307).

pub mod api;
pub mod commerce;
pub mod hls;
pub mod media;

use anyhow::bail;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::broadcast;
use vitrine_sfu::router::Router;

/// Streams published on other nodes that this node works on for its cluster, one channel per
/// kind of work: once this node holds a stream's work lease, the cluster announces the router
/// its relay feeds on the work's channel (a role's own, so that another role here does not take
/// the stream as well). Local publishers are announced on the SFU's own `went_live`.
#[derive(Clone)]
pub struct ClusterWork {
    pub hls: broadcast::Sender<Arc<Router>>,
    pub captions: broadcast::Sender<Arc<Router>>,
}

impl Default for ClusterWork {
    fn default() -> Self {
        Self {
            hls: broadcast::Sender::new(16),
            captions: broadcast::Sender::new(16),
        }
    }
}

/// A role named on the command line or in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Web,
    Api,
    Media,
    Hls,
    Subtitles,
}

/// The roles this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub media: bool,
    pub hls: bool,
    pub subtitles: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            api: true,
            media: true,
            hls: true,
            subtitles: true,
        }
    }
}

impl Roles {
    pub fn of(list: &[Role]) -> anyhow::Result<Self> {
        if list.is_empty() {
            bail!("roles: name at least one of web, api, media, hls, subtitles");
        }
        let web = list.contains(&Role::Web);
        Ok(Self {
            api: web || list.contains(&Role::Api),
            media: web || list.contains(&Role::Media),
            hls: web || list.contains(&Role::Hls),
            subtitles: list.contains(&Role::Subtitles),
        })
    }

    /// The role names a node announces to its cluster.
    pub fn names(&self) -> Vec<String> {
        [
            (self.api, "api"),
            (self.media, "media"),
            (self.hls, "hls"),
            (self.subtitles, "subtitles"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect()
    }

    /// Whether these roles work only in a cluster: `api` without `media` sends media clients
    /// to a media node, `hls` without `media` gets live media from one. (A `subtitles`
    /// worker alone needs only the Redis job queue.)
    pub fn need_a_cluster(&self) -> bool {
        (self.api || self.hls) && !self.media
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_is_api_media_and_hls() {
        let web = Roles::of(&[Role::Web]).unwrap();
        assert_eq!(web.names(), ["api", "media", "hls"]);
        assert!(!web.need_a_cluster());
        let split = Roles::of(&[Role::Media, Role::Subtitles]).unwrap();
        assert_eq!(split.names(), ["media", "subtitles"]);
        assert!(!split.need_a_cluster());
        assert!(Roles::of(&[Role::Api]).unwrap().need_a_cluster());
        assert!(Roles::of(&[Role::Hls]).unwrap().need_a_cluster());
        assert!(!Roles::of(&[Role::Subtitles]).unwrap().need_a_cluster());
        assert!(Roles::of(&[]).is_err());
        assert_eq!(
            Roles::default().names(),
            ["api", "media", "hls", "subtitles"]
        );
    }
}
