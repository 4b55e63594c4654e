//! Live media for a role that consumes it (HLS) on a node other than the stream's origin: the
//! node follows the cluster's live streams, takes the role's work lease on each stream nobody
//! works on yet, opens a relay from the origin into its local router and announces that router
//! to the role, exactly as a local publisher is announced. One node of the cluster does each
//! stream's work; when its relay ends (the role's tap left and the idle grace passed), the
//! lease is given up.
//!
//! **Must never:** take a stream whose origin is this node (the local announcement covers
//! it), or hold a work lease for a stream it no longer relays.

use crate::Inner;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::broadcast;
use vitrine_core::StreamId;
use vitrine_sfu::router::{Router, Routers};

/// Follows the live streams until the cluster is left.
pub(crate) async fn run(
    inner: Arc<Inner>,
    role: &'static str,
    routers: Arc<Routers>,
    went_live: broadcast::Sender<Arc<Router>>,
) {
    let mut working: HashSet<StreamId> = HashSet::new();
    // Every heartbeat, not every relay check: each look costs a Redis round trip per live stream.
    let mut tick = tokio::time::interval(inner.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let live = match inner.registry.live_streams().await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, role, "live streams unavailable");
                continue;
            }
        };
        finish_ended(&inner, role, &mut working).await;
        for stream in live {
            if inner.held.lock().expect("held lock").contains(&stream) {
                continue;
            }
            let lease = inner.config.origin_lease;
            let ours = inner
                .registry
                .take_work(role, &stream, &inner.node.id, lease)
                .await
                .unwrap_or(false);
            if !ours && working.remove(&stream) {
                // The origin claimed it (a publisher that moved to a node doing this work
                // itself); this node's session ends with the relay.
                tracing::warn!(%stream, role, "lost the stream's work lease to another node");
            }
            if !ours || working.contains(&stream) {
                continue;
            }
            let router = routers.get_or_create(&stream);
            // A relay may already run for this node's viewers: the role joins its router.
            inner.start_relay(&stream, &router);
            if inner
                .relays
                .lock()
                .expect("relays lock")
                .contains_key(&stream)
            {
                tracing::info!(%stream, role, "taking the stream's work from its origin");
                working.insert(stream);
                tokio::spawn(announce(router, went_live.clone()));
            }
        }
    }
    for stream in working {
        let _ = inner
            .registry
            .drop_work(role, &stream, &inner.node.id)
            .await;
    }
}

/// Gives up the work of streams whose relay has ended.
async fn finish_ended(inner: &Arc<Inner>, role: &str, working: &mut HashSet<StreamId>) {
    let ended: Vec<StreamId> = {
        let relays = inner.relays.lock().expect("relays lock");
        working
            .iter()
            .filter(|s| !relays.contains_key(*s))
            .cloned()
            .collect()
    };
    for stream in ended {
        working.remove(&stream);
        if inner.held.lock().expect("held lock").contains(&stream) {
            // The publisher came to this node, whose own work lease it is now.
            continue;
        }
        let _ = inner
            .registry
            .drop_work(role, &stream, &inner.node.id)
            .await;
        tracing::info!(%stream, role, "the stream's work is done here");
    }
}

/// How long the role waits for a relayed stream's video before it starts without (an
/// audio-only stream has none): a relay's video starts at the origin's next keyframe, later
/// than its audio, and the role plans its outputs from the codecs it sees first.
const VIDEO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Announces the relay's router to the role once its video (or the wait's end) has come.
async fn announce(router: Arc<Router>, went_live: broadcast::Sender<Arc<Router>>) {
    router.video_known(VIDEO_WAIT, false).await;
    // Nobody listening (the role is being shut down) is fine.
    let _ = went_live.send(router);
}
