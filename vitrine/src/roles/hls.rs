//! The `hls` role: packaging live streams to LL-HLS, recordings and replays, and queueing
//! finished recordings for replay subtitles. Live media reaches it from this node's
//! publishers and, in a cluster, from streams of nodes without the role (see
//! `vitrine_cluster::Cluster::consume_live`).

use crate::captions;
use crate::config::Config;
use anyhow::Context;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vitrine_sfu::Sfu;
use vitrine_subtitles::pool::Pool;
use vitrine_transcode::metrics::HlsMetrics;
use vitrine_transcode::object_media::ObjectMedia;
use vitrine_transcode::{Hls, LocalDisk, MediaStore};

/// Builds HLS when it is on (its storage, its subtitle languages when captions run here), and
/// starts packaging every publisher `sfu` announces, and every stream of another node the
/// cluster gives this node's `work`, when this node has the role. A node with
/// HLS on but without the role (a `subtitles` worker) only reads recordings.
pub fn build(
    config: &Config,
    pool: Option<&Arc<Pool>>,
    sfu: &Arc<Sfu>,
    work: &super::ClusterWork,
    registry: &mut Registry,
) -> anyhow::Result<Option<Arc<Hls>>> {
    if !config.hls.enabled {
        return Ok(None);
    }
    let hls_metrics = Arc::new(HlsMetrics::default());
    hls_metrics.register(registry);
    let media: Arc<dyn MediaStore> = match &config.hls.storage {
        Some(url) => Arc::new(ObjectMedia::s3(url).context("opening the HLS bucket")?),
        None => Arc::new(LocalDisk::new(config.data_dir.join("hls"))),
    };
    let mut hls_config = config.hls.clone();
    if (pool.is_some() && config.roles.media) || places_remote_captions(config) {
        hls_config.subtitle_languages = captions::languages(&config.subtitles);
    }
    let hls = Hls::new(hls_config, media, hls_metrics)
        .context("starting HLS (turn it off with --no-hls)")?;
    if config.roles.hls {
        hls.spawn(sfu.went_live.subscribe());
        hls.spawn(work.hls.subscribe());
    }
    Ok(Some(hls))
}

/// Whether this node's HLS subtitle renditions take captions made on other nodes: it packages
/// streams in a cluster whose streams are captioned (subtitles on; the model loads only where a
/// media or subtitles role runs captions, see `captions::load_pool`).
pub fn places_remote_captions(config: &Config) -> bool {
    config.roles.hls && config.cluster.is_some() && config.subtitles.enabled
}

/// Replay subtitles: the web role queues every recording that becomes a replay; the
/// subtitles role works the queue. Without Redis both happen in this process (or not at all
/// when it has no model); with Redis any process may queue and any subtitles worker take.
pub async fn spawn_replay_subtitles(
    config: &Config,
    hls: &Arc<Hls>,
    pool: Option<&Arc<vitrine_subtitles::pool::Pool>>,
    background: &CancellationToken,
) -> anyhow::Result<()> {
    use vitrine_subtitles::jobs::{self, JobQueue, MemoryQueue, RedisQueue};
    let worker = pool.filter(|_| config.roles.subtitles);
    let queue: Arc<dyn JobQueue> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisQueue::connect(url)
                .await
                .context("connecting to the subtitle job queue")?,
        ),
        None if worker.is_some() => Arc::new(MemoryQueue::default()),
        None => return Ok(()),
    };
    if config.roles.hls {
        let mut replays = hls.replays.subscribe();
        let queue = Arc::clone(&queue);
        let stop = background.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = replays.recv() => match r {
                        Ok(s) => s,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "replays missed by the subtitle queue");
                            continue;
                        }
                        Err(_) => return,
                    },
                    _ = stop.cancelled() => return,
                };
                if let Err(e) = queue.push(&stream).await {
                    tracing::warn!(%stream, error = %e, "queueing replay subtitles");
                }
            }
        });
    }
    if let Some(pool) = worker {
        let replays = captions::replays(&config.subtitles, Arc::clone(pool), Arc::clone(hls))?;
        let consumer = format!("{}-{}", crate::state::hostname(), std::process::id());
        tokio::spawn(jobs::work(
            queue,
            replays,
            consumer,
            background.clone(),
            Arc::clone(pool.metrics()),
        ));
    }
    Ok(())
}
