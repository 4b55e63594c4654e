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
mod recording;
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
use media::{AUDIO, StreamMedia};
use metrics::HlsMetrics;
use origins::{Alone, Origins};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vitrine_core::StreamId;
use vitrine_sfu::router::Router;

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
    use crate::media::Manifest;
    use crate::origins::Producer;
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
