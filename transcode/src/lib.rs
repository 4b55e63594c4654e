//! HLS for every live stream: a GStreamer ABR ladder fed from the SFU's tap, packaged in Rust
//! as fMP4/CMAF segments and LL-HLS parts, served at `/hls/{stream}/...`, and kept as a
//! recording that becomes a replay when the seller stops.
//!
//! **Shape:** [`Hls`] listens for publishers the SFU announces and runs one session per live
//! stream ([`session`]). The sans-IO parts ([`probe`], [`ladder`], [`fmp4`], [`segmenter`],
//! [`playlist`], [`media`]) are pure and tested without GStreamer; [`pipeline`] is the only
//! module that touches it, and [`store`] the only one that touches storage.

pub mod config;
pub mod fmp4;
pub mod ladder;
pub mod media;
pub mod metrics;
pub mod object_media;
pub mod offline;
pub mod origins;
mod packager;
pub mod pipeline;
pub mod playlist;
pub mod probe;
pub mod routes;
pub mod segmenter;
mod session;
pub mod sinks;
pub mod stages;
pub mod steering;
pub mod store;
pub mod text_track;
pub mod validate;

pub use config::{EncoderChoice, HlsConfig, RenditionSpec};
pub use store::{LocalDisk, MediaStore, StoreError};

use bytes::Bytes;
use media::{AUDIO, MANIFEST, Manifest, StreamMedia};
use metrics::HlsMetrics;
use origins::{Alone, Origins, Producer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vitrine_core::StreamId;
use vitrine_sfu::router::Router;

/// Streams' media kept in memory; beyond it, replays are dropped and reloaded on demand.
const MAX_CACHED_MEDIA: usize = 1024;

/// A running transcoding session of one stream.
struct SessionEntry {
    /// Asks the session's pipeline to fail and restart.
    restart: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// What the API tells about a stream's HLS output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HlsStatus {
    /// A master playlist can be fetched.
    pub ready: bool,
    /// The recording is final: a replay.
    pub replay: bool,
    pub poster: bool,
}

/// The HLS role of one process.
pub struct Hls {
    pub config: HlsConfig,
    pub(crate) store: Arc<dyn MediaStore>,
    pub metrics: Arc<HlsMetrics>,
    shutdown: CancellationToken,
    media: Mutex<HashMap<StreamId, Arc<StreamMedia>>>,
    sessions: Mutex<HashMap<StreamId, SessionEntry>>,
    /// Announces every recording that became a replay (the subtitle jobs start from it).
    pub replays: broadcast::Sender<StreamId>,
    /// The cluster's side (who produces a stream, the right to write its recording), set once
    /// when the node joins one; [`Alone`] otherwise.
    origins: OnceLock<Arc<dyn Origins>>,
    /// Woken when a session starts producing a stream's media.
    appeared: Notify,
    /// Unfinished recordings another node produces, as the store had them, kept briefly: every
    /// viewer's page asks for its stream's status every second or two.
    snapshots: Mutex<HashMap<StreamId, (std::time::Instant, Arc<StreamMedia>)>>,
}

/// How long a snapshot of a recording produced elsewhere is reused.
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Snapshots kept at most; beyond, they start over.
const MAX_SNAPSHOTS: usize = 4096;

/// How long after its last save an unfinished recording nobody produces may be taken for an
/// orphan, beyond the grace its producer gives a publisher to come back.
const ORPHAN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One encoder run's audio in a recording: an fMP4 file (init segment and media segments)
/// whose first sample is at `start_ns` on the media timeline.
#[derive(Debug, Clone)]
pub struct AudioRun {
    pub start_ns: u64,
    pub mp4: Bytes,
}

/// Replay announcements waiting for a slow listener; beyond it the oldest are lost (a replay
/// without subtitles can be given them again through the API).
const REPLAY_QUEUE: usize = 256;

impl Hls {
    /// Checks GStreamer and its plugins, then builds the role (nothing runs until [`Hls::spawn`]).
    pub fn new(
        config: HlsConfig,
        store: Arc<dyn MediaStore>,
        metrics: Arc<HlsMetrics>,
    ) -> Result<Arc<Self>, pipeline::PipelineError> {
        pipeline::init()?;
        Ok(Arc::new(Self {
            config,
            store,
            metrics,
            shutdown: CancellationToken::new(),
            media: Mutex::default(),
            sessions: Mutex::default(),
            replays: broadcast::Sender::new(REPLAY_QUEUE),
            origins: OnceLock::new(),
            appeared: Notify::new(),
            snapshots: Mutex::default(),
        }))
    }

    /// Makes this node one HLS origin of a cluster's (once; later calls change nothing).
    pub fn set_origins(&self, origins: Arc<dyn Origins>) {
        let _ = self.origins.set(origins);
    }

    pub(crate) fn origins(&self) -> &dyn Origins {
        static ALONE: Alone = Alone;
        self.origins.get().map_or(&ALONE, |o| o.as_ref())
    }

    /// Whether this node runs a session for `stream` (it produces its HLS).
    pub fn producing(&self, stream: &StreamId) -> bool {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(stream)
            .is_some_and(|s| !s.task.is_finished())
    }

    /// Starts a session for every publisher announced on `went_live`.
    pub fn spawn(
        self: &Arc<Self>,
        went_live: broadcast::Receiver<Arc<Router>>,
    ) -> tokio::task::JoinHandle<()> {
        let hls = Arc::clone(self);
        let stop = self.shutdown.clone();
        tokio::spawn(vitrine_sfu::each_publisher(
            went_live,
            stop,
            "hls",
            move |router| {
                let hls = Arc::clone(&hls);
                async move { hls.on_live(router).await }
            },
        ))
    }

    async fn on_live(self: &Arc<Self>, router: Arc<Router>) {
        let stream = router.stream().clone();
        let Some(media) = self.media_to_produce(&stream).await else {
            return;
        };
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if sessions.get(&stream).is_some_and(|s| !s.task.is_finished()) {
            return; // the running session follows the new publisher itself
        }
        let restart = Arc::new(Notify::new());
        let span = tracing::info_span!("hls", %stream);
        let task = tokio::spawn(
            session::run_stream(Arc::clone(self), router, media, Arc::clone(&restart))
                .instrument(span),
        );
        sessions.insert(stream, SessionEntry { restart, task });
    }

    /// Called by a session whose publisher stayed away: ends it unless a publisher came back
    /// meanwhile (decided under the sessions lock, so no announcement falls in between).
    pub(crate) fn end_session(&self, stream: &StreamId, router: &Router) -> bool {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if router.is_live() {
            return false;
        }
        sessions.remove(stream);
        true
    }

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
            manifest.resume_after_loss(now_ms());
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
        now_ms() - manifest.saved_ms > quiet.as_millis() as i64
            && origins.producer(stream).await == Producer::Here
            && !origins.live(stream).await
            && origins.hold(stream).await
    }

    /// The media a new session of this node produces into: its own live media, else the
    /// recording as the store has it now (another node's copy in memory may be older), its
    /// numbers moved past those a lost producer may have used; a new recording when there is
    /// none. `None` when the store cannot be read (starting afresh would reuse object names).
    async fn media_to_produce(&self, stream: &StreamId) -> Option<Arc<StreamMedia>> {
        if let Some(m) = self.media.lock().expect("media lock").get(stream) {
            if !m.read(|m| m.ended) {
                return Some(Arc::clone(m));
            }
        }
        let manifest = match self.load(stream).await {
            Ok(Some(mut m)) => {
                if !m.ended {
                    m.resume_after_loss(now_ms());
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

    /// A final caption of a live stream, spoken between `started` and `ended` (when that audio
    /// reached the server): it goes into the stream's subtitle rendition of `language`. Ignored
    /// for a language without one, and between encoder runs (no media timeline to place it on).
    pub fn caption(
        &self,
        stream: &StreamId,
        language: &str,
        started: std::time::Instant,
        ended: std::time::Instant,
        text: &str,
    ) {
        let Some(media) = self.media.lock().expect("media lock").get(stream).cloned() else {
            return;
        };
        let (Some(start_ns), Some(end_ns)) = (media.media_ns(started), media.media_ns(ended))
        else {
            return;
        };
        media.update(|m| {
            if let Some(t) = m.subtitles.iter_mut().find(|t| t.language == language) {
                t.add_cue(text_track::TextCue {
                    start_ns,
                    end_ns,
                    text: text.to_owned(),
                });
            }
        });
    }

    /// The audio of a recording, run by run, for transcription.
    pub async fn recording_audio(&self, stream: &StreamId) -> Result<Vec<AudioRun>, StoreError> {
        let Some(media) = self.media(stream).await else {
            return Ok(Vec::new());
        };
        let segments = media.read(|m| {
            m.playlists
                .get(AUDIO)
                .map(|p| p.segments.clone())
                .unwrap_or_default()
        });
        let mut runs: Vec<(String, Vec<u64>)> = Vec::new();
        for s in segments {
            match runs.last_mut() {
                Some((init, msns)) if *init == s.init => msns.push(s.msn),
                _ => runs.push((s.init.clone(), vec![s.msn])),
            }
        }
        let mut out = Vec::new();
        for (init, msns) in runs {
            let Some(init) = self.store.get(&format!("{stream}/{AUDIO}/{init}")).await? else {
                continue;
            };
            let mut mp4 = bytes::BytesMut::from(&init[..]);
            let mut start_ns = None;
            for msn in msns {
                let key = format!("{stream}/{AUDIO}/{}", playlist::segment_name(msn));
                if let Some(segment) = self.store.get(&key).await? {
                    start_ns = start_ns.or_else(|| fmp4::start_ns(&init, &segment));
                    mp4.extend_from_slice(&segment);
                }
            }
            if let Some(start_ns) = start_ns {
                out.push(AudioRun {
                    start_ns,
                    mp4: mp4.freeze(),
                });
            }
        }
        Ok(out)
    }

    /// Stores the whole recording's subtitles in `language` (a WebVTT file on the media
    /// timeline, see [`text_track::webvtt`]); the replay lists it, adding the language when new.
    pub async fn write_subtitles(
        &self,
        stream: &StreamId,
        language: &str,
        vtt: String,
    ) -> Result<(), StoreError> {
        let Some(media) = self.media(stream).await else {
            return Ok(());
        };
        let key = format!(
            "{stream}/{}/{}",
            text_track::rendition_name(language),
            text_track::WHOLE
        );
        self.store.put(&key, Bytes::from(vtt)).await?;
        media.update(|m| {
            let length = m.timeline_ns as f64 / 1e9;
            match m.subtitles.iter_mut().find(|t| t.language == language) {
                Some(t) => t.whole = Some(length),
                None => {
                    let mut t = text_track::TextTrack::new(language);
                    t.whole = Some(length);
                    m.subtitles.push(t);
                }
            }
        });
        packager::save_manifest(self, &media, &format!("{stream}/")).await;
        Ok(())
    }

    /// Whether the stream has HLS output, and whether it is a replay.
    pub async fn status(&self, stream: &StreamId) -> Option<HlsStatus> {
        let media = self.media(stream).await?;
        Some(media.read(|m| HlsStatus {
            ready: m.playable(),
            replay: m.ended && m.playlists.values().any(|p| !p.segments.is_empty()),
            poster: m.poster,
        }))
    }

    /// Makes the stream's running pipeline fail, as a crashed element would; the session
    /// restarts it. Returns whether a session was running.
    pub fn restart(&self, stream: &StreamId) -> bool {
        let sessions = self.sessions.lock().expect("sessions lock");
        match sessions.get(stream) {
            Some(s) => {
                s.restart.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops the stream's session and deletes all of its media.
    pub async fn delete(&self, stream: &StreamId) -> Result<(), StoreError> {
        let session = self.sessions.lock().expect("sessions lock").remove(stream);
        if let Some(s) = session {
            s.task.abort();
            let _ = s.task.await;
        }
        self.forget(stream);
        self.store.delete_prefix(stream.as_str()).await
    }

    /// Stops every session; their recordings stay open (a restarted server continues them).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks: Vec<_> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(_, s)| s.task)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Writes one object; a failure is logged and reported as `false` (the part is then not
    /// listed, so players never see a URL that does not resolve).
    pub(crate) async fn put(&self, key: &str, data: Bytes) -> bool {
        match self.store.put(key, data).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(%key, error = %e, "writing HLS media");
                false
            }
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.store.get(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::{MediaPlaylist, PartEntry};

    /// Another node produces the stream: this one's playlists come from it.
    struct Elsewhere;

    #[async_trait::async_trait]
    impl Origins for Elsewhere {
        async fn producer(&self, _: &StreamId) -> Producer {
            Producer::Node("http://10.0.0.2:8080".into())
        }
        async fn live(&self, _: &StreamId) -> bool {
            true
        }
        async fn hold(&self, _: &StreamId) -> bool {
            false
        }
        async fn release(&self, _: &StreamId) {}
        async fn forward(&self, _: &str, _: &str) -> axum::response::Response {
            unreachable!("not asked here")
        }
    }

    /// A recording another node is producing is read as the store has it, never ended here,
    /// and the read is reused for a moment (every viewer's page asks for the status).
    #[tokio::test]
    async fn a_recording_produced_elsewhere_is_read_not_ended() {
        let dir = std::env::temp_dir().join(format!("vitrine-elsewhere-{}", std::process::id()));
        let store = Arc::new(LocalDisk::new(&dir));
        let mut manifest = Manifest {
            runs: 1,
            saved_ms: 1,
            ..Manifest::default()
        };
        manifest
            .playlists
            .insert("audio".into(), MediaPlaylist::new(2.0, 0.5, 6));
        let raw = serde_json::to_vec(&manifest).unwrap();
        store
            .put("st3/manifest.json", Bytes::from(raw))
            .await
            .unwrap();
        let hls = Hls::new(HlsConfig::default(), store.clone(), Arc::default()).unwrap();
        hls.set_origins(Arc::new(Elsewhere));
        let stream = StreamId::parse("st3").unwrap();
        let first = hls.media(&stream).await.unwrap();
        assert!(!first.read(|m| m.ended));
        let again = hls.media(&stream).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "reused within its time");
        let saved = store.get("st3/manifest.json").await.unwrap().unwrap();
        let saved: Manifest = serde_json::from_slice(&saved).unwrap();
        assert!(!saved.ended, "nothing written");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A recording whose process stopped while it was live is final the next time it is read.
    #[tokio::test]
    async fn an_orphaned_recording_is_finalised_when_read() {
        let dir = std::env::temp_dir().join(format!("vitrine-orphan-{}", std::process::id()));
        let store = Arc::new(LocalDisk::new(&dir));
        let mut playlist = MediaPlaylist::new(2.0, 0.5, 6);
        playlist.begin_run("init1.mp4".into());
        playlist.add_part(
            0,
            PartEntry {
                duration: 2.0,
                independent: true,
            },
        );
        playlist.finish_segment(0, 2.0);
        let mut manifest = Manifest {
            runs: 1,
            ..Manifest::default()
        };
        manifest.playlists.insert("audio".into(), playlist);
        let raw = serde_json::to_vec(&manifest).unwrap();
        store
            .put("st1/manifest.json", Bytes::from(raw))
            .await
            .unwrap();

        let hls = Hls::new(HlsConfig::default(), store.clone(), Arc::default()).unwrap();
        let stream = StreamId::parse("st1").unwrap();
        let media = hls.media(&stream).await.unwrap();
        assert!(media.read(|m| m.ended));
        assert!(media.read(|m| m.playlists["audio"].render().ends_with("#EXT-X-ENDLIST\n")));
        let saved = store.get("st1/manifest.json").await.unwrap().unwrap();
        let saved: Manifest = serde_json::from_slice(&saved).unwrap();
        assert!(saved.ended, "the final state is saved");
        assert_eq!(hls.status(&stream).await.map(|s| s.replay), Some(true));
        assert!(hls.media(&StreamId::parse("st2").unwrap()).await.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
