//! Where a stream's media comes from: this node's memory while it produces the stream (or
//! read lately), else the recording's manifest in the store, which a node may finalise only as
//! an orphan and under the recording's lease (see [`crate::origins`]); a new session's media,
//! numbered past a lost producer's.

use crate::media::{MANIFEST, Manifest, StreamMedia};
use crate::origins::Producer;
use crate::{Hls, StoreError, packager, playlist};
use std::sync::Arc;
use vitrine_core::StreamId;
use vitrine_core::time::Timestamp;

/// Streams' media kept in memory; beyond it, replays are dropped and reloaded on demand.
const MAX_CACHED_MEDIA: usize = 1024;

/// How long a snapshot of a recording produced elsewhere is reused.
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Snapshots kept at most; beyond, they start over.
const MAX_SNAPSHOTS: usize = 4096;

/// How long after its last save an unfinished recording nobody produces may be taken for an
/// orphan, beyond the grace its producer gives a publisher to come back.
const ORPHAN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Hls {
    /// The stream's media: in memory while it is live or was read lately, else its recording's
    /// manifest from the store.
    pub async fn media(&self, stream: &StreamId) -> Option<Arc<StreamMedia>> {
        if let Some(m) = self.media.lock().expect("media lock").get(stream) {
            return Some(Arc::clone(m));
        }
        if let Some((at, m)) = self.snapshots.lock().expect("snapshots lock").get(stream)
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Some(Arc::clone(m));
        }
        let mut manifest = self.load(stream).await.ok()??;
        // Not in memory yet not final: produced on another node, being taken over, or left
        // open by a process that stopped (a restart, a crash) while the stream was live. Only
        // the last is finalised here, under the recording's lease; the others are what the
        // store holds now, not kept.
        let orphan = !manifest.ended;
        if orphan {
            if !self.may_finalise(stream, &manifest).await {
                let snapshot = Arc::new(StreamMedia::new(stream.clone(), manifest));
                let mut snapshots = self.snapshots.lock().expect("snapshots lock");
                if snapshots.len() >= MAX_SNAPSHOTS {
                    snapshots.clear();
                }
                snapshots.insert(
                    stream.clone(),
                    (std::time::Instant::now(), Arc::clone(&snapshot)),
                );
                return Some(snapshot);
            }
            manifest.resume_after_loss(Timestamp::now().millis());
            manifest
                .playlists
                .values_mut()
                .for_each(playlist::MediaPlaylist::end);
            manifest.ended = true;
        }
        let media = {
            let mut all = self.media.lock().expect("media lock");
            if all.len() >= MAX_CACHED_MEDIA {
                // Replays are reloaded from the store when asked for again.
                all.retain(|_, m| !m.read(|m| m.ended));
            }
            Arc::clone(
                all.entry(stream.clone())
                    .or_insert_with(|| Arc::new(StreamMedia::new(stream.clone(), manifest))),
            )
        };
        if orphan {
            tracing::info!(%stream, "recording left open by an earlier process finalised");
            packager::save_manifest(self, &media, &format!("{stream}/")).await;
            self.origins().release(stream).await;
        }
        Some(media)
    }

    /// The recording's manifest from the store (`None` when it has none).
    async fn load(&self, stream: &StreamId) -> Result<Option<Manifest>, StoreError> {
        let Some(raw) = self.store.get(&format!("{stream}/{MANIFEST}")).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&raw) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                tracing::error!(%stream, error = %e, "unreadable HLS manifest");
                Ok(None)
            }
        }
    }

    /// Whether an unfinished recording read from the store is an orphan this node may end: its
    /// producer would have saved it since (or ended it) were it alive, no node produces or
    /// publishes the stream, and this node holds the recording's lease.
    async fn may_finalise(&self, stream: &StreamId, manifest: &Manifest) -> bool {
        let quiet = self.config.finalize_after + ORPHAN_MARGIN;
        let origins = self.origins();
        Timestamp::now().millis() - manifest.saved_ms > quiet.as_millis() as i64
            && origins.producer(stream).await == Producer::Here
            && !origins.live(stream).await
            && origins.hold(stream).await
    }

    /// The media a new session of this node produces into: its own live media, else the
    /// recording as the store has it now (another node's copy in memory may be older), its
    /// numbers moved past those a lost producer may have used; a new recording when there is
    /// none. `None` when the store cannot be read (starting afresh would reuse object names).
    pub(crate) async fn media_to_produce(&self, stream: &StreamId) -> Option<Arc<StreamMedia>> {
        if let Some(m) = self.media.lock().expect("media lock").get(stream) {
            if !m.read(|m| m.ended) {
                return Some(Arc::clone(m));
            }
        }
        let manifest = match self.load(stream).await {
            Ok(Some(mut m)) => {
                if !m.ended {
                    m.resume_after_loss(Timestamp::now().millis());
                    tracing::info!(%stream, "continuing a recording another process left open");
                }
                m
            }
            Ok(None) => Manifest::default(),
            Err(e) => {
                tracing::error!(%stream, error = %e, "reading the recording's manifest: not packaging");
                return None;
            }
        };
        let media = Arc::new(StreamMedia::new(stream.clone(), manifest));
        self.media
            .lock()
            .expect("media lock")
            .insert(stream.clone(), Arc::clone(&media));
        self.snapshots
            .lock()
            .expect("snapshots lock")
            .remove(stream);
        self.appeared.notify_waiters();
        Some(media)
    }

    /// [`Self::media`], waiting up to `wait` for a session to start when there is none yet (a
    /// player asking the moment a publisher connects is ahead of the session by a few ms).
    pub async fn media_soon(
        &self,
        stream: &StreamId,
        wait: std::time::Duration,
    ) -> Option<Arc<StreamMedia>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let appeared = self.appeared.notified();
            tokio::pin!(appeared);
            appeared.as_mut().enable();
            if let Some(m) = self.media(stream).await {
                return Some(m);
            }
            tokio::time::timeout_at(deadline, appeared).await.ok()?;
        }
    }

    /// Drops the stream's media from memory (another node continues its recording).
    pub(crate) fn forget(&self, stream: &StreamId) {
        self.media.lock().expect("media lock").remove(stream);
        self.snapshots
            .lock()
            .expect("snapshots lock")
            .remove(stream);
    }
}
