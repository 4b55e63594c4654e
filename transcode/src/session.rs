//! One stream's transcoding life: wait for the publisher, learn the picture size from its first
//! keyframe, run the encoder pipeline and package its output, and start again after a
//! publisher change (same playlists, `EXT-X-DISCONTINUITY`) or a pipeline failure (bounded
//! exponential back-off). When the publisher stays away past the grace period, the recording
//! is finalised as a replay.

use crate::Hls;
use crate::fmp4::{Sample, Track, TrackKind};
use crate::ladder::{self, Rendition};
use crate::media::{AUDIO, MANIFEST, POSTER, StreamMedia, Variant};
use crate::pipeline::{Encoded, Output, Pipeline, PipelinePlan, TrackCaps};
use crate::playlist::{MediaPlaylist, PartEntry, part_name, segment_name};
use crate::probe::picture_size;
use crate::segmenter::{Cut, Segmenter};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rtc::shared::marshal::Marshal;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use vitrine_sfu::codec::{Codec, MediaKind};
use vitrine_sfu::router::{Router, SourceInfo};

/// First wait after a failed run; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the codecs of a new publisher may take to all be announced.
const CODEC_SETTLE: Duration = Duration::from_millis(1500);
/// Packets kept while waiting for the first keyframe (oldest dropped beyond).
const EARLY_PACKETS: usize = 2048;
/// How often a keyframe is asked for while none has come.
const KEYFRAME_RETRY: Duration = Duration::from_secs(2);
/// The manifest is saved every this many segments (and whenever a run ends).
const MANIFEST_EVERY: u64 = 3;

/// Why a run ended.
#[derive(Debug)]
enum RunEnd {
    /// A new publisher replaced this one, or the publisher left.
    SourceChanged,
    Failed(String),
    Shutdown,
}

/// Drives one stream until its recording is final (or the server stops).
pub(crate) async fn run_stream(
    hls: Arc<Hls>,
    router: Arc<Router>,
    media: Arc<StreamMedia>,
    restart: Arc<Notify>,
) {
    let stream = router.stream().clone();
    let mut source = router.source();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(info) = wait_live(&hls, &mut source).await else {
            if hls.shutdown.is_cancelled() {
                save_manifest(&hls, &media).await;
                return;
            }
            if hls.end_session(&stream, &router) {
                finalize(&hls, &media).await;
                return;
            }
            continue;
        };
        let end = Run::start(&hls, &router, &media, &mut source, info, &restart).await;
        match end {
            RunEnd::SourceChanged => backoff = FIRST_BACKOFF,
            RunEnd::Shutdown => {
                save_manifest(&hls, &media).await;
                return;
            }
            RunEnd::Failed(why) => {
                hls.metrics.pipeline_restarts.inc();
                tracing::warn!(%stream, %why, retry_in = ?backoff, "HLS pipeline failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = hls.shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The current source once it is live with its codecs announced; `None` when it stayed away
/// for the grace period, or on shutdown.
async fn wait_live(hls: &Hls, source: &mut watch::Receiver<SourceInfo>) -> Option<SourceInfo> {
    let deadline = tokio::time::Instant::now() + hls.config.finalize_after;
    let mut live_since: Option<tokio::time::Instant> = None;
    loop {
        let info = source.borrow_and_update().clone();
        if info.live && !info.codecs.is_empty() {
            let both = [MediaKind::Audio, MediaKind::Video]
                .iter()
                .all(|k| info.codecs.iter().any(|c| c.codec.kind() == *k));
            let since = *live_since.get_or_insert_with(tokio::time::Instant::now);
            if both || since.elapsed() >= CODEC_SETTLE {
                return Some(info);
            }
        } else if !info.live {
            live_since = None;
        }
        let wake = match live_since {
            Some(since) => since + CODEC_SETTLE,
            None => deadline,
        };
        tokio::select! {
            changed = source.changed() => if changed.is_err() { return None },
            _ = tokio::time::sleep_until(wake) => if live_since.is_none() { return None },
            _ = hls.shutdown.cancelled() => return None,
        }
    }
}

/// Per-output packaging state of a run.
struct TrackOut {
    /// Rendition directory (`720p`, `audio`).
    name: String,
    segmenter: Option<Segmenter>,
    /// Parts of the open segment; a segment is their concatenation.
    parts: Vec<Bytes>,
    /// Arrival running times of samples not yet in a listed part.
    arrivals: VecDeque<u64>,
    nominal_ticks: u32,
}

/// One encoder run.
struct Run<'a> {
    hls: &'a Arc<Hls>,
    media: &'a StreamMedia,
    pipeline: Pipeline,
    tracks: Vec<TrackOut>,
    first_msn: u64,
    offset_ns: u64,
    init: String,
    poster_final: bool,
    segments: u64,
    /// End of this run's timeline so far, nanoseconds.
    end_ns: u64,
}

impl<'a> Run<'a> {
    async fn start(
        hls: &'a Arc<Hls>,
        router: &Arc<Router>,
        media: &'a StreamMedia,
        source: &mut watch::Receiver<SourceInfo>,
        info: SourceInfo,
        restart: &Notify,
    ) -> RunEnd {
        let video = info
            .codecs
            .iter()
            .find(|c| c.codec.kind() == MediaKind::Video)
            .cloned();
        let audio = info.codecs.iter().find(|c| c.codec == Codec::Opus).cloned();
        let mut leg = router.join_tap();
        let mut early: VecDeque<(MediaKind, Bytes)> = VecDeque::new();
        // The ladder is planned from the picture size of the first keyframe.
        let mut size = None;
        if let Some(v) = &video {
            let mut ask = tokio::time::interval(KEYFRAME_RETRY);
            while size.is_none() {
                tokio::select! {
                    packet = leg.recv() => {
                        let Some(f) = packet else { return RunEnd::SourceChanged };
                        if f.kind == MediaKind::Video && f.keyframe && f.packet.header.payload_type == v.payload_type {
                            size = picture_size(v.codec, &f.packet.payload);
                        }
                        if size.is_some() || !early.is_empty() || f.kind == MediaKind::Audio {
                            if early.len() == EARLY_PACKETS {
                                early.pop_front();
                            }
                            if let Ok(wire) = f.packet.marshal() {
                                early.push_back((f.kind, wire.freeze()));
                            }
                        }
                    }
                    _ = ask.tick() => router.request_keyframe(),
                    changed = source.changed() => {
                        if changed.is_err() || source_moved(source, info.generation) {
                            return RunEnd::SourceChanged;
                        }
                    }
                    _ = hls.shutdown.cancelled() => return RunEnd::Shutdown,
                }
            }
        }
        let renditions = hls.plan_renditions(media, size, audio.is_some());
        let plan = PipelinePlan {
            video: video
                .as_ref()
                .map(|v| (v.codec, v.payload_type))
                .filter(|_| !renditions.is_empty()),
            audio: audio.as_ref().map(|a| a.payload_type),
            renditions: renditions.clone(),
            encoder: hls.config.encoder,
            x264_preset: hls.config.x264_preset.clone(),
            segment: hls.config.segment,
            audio_bitrate_kbps: hls.config.audio_bitrate_kbps,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(crate::pipeline::OUTPUT_QUEUE);
        let keyframes = Arc::clone(router);
        let pipeline =
            match Pipeline::build(&plan, tx, Arc::new(move || keyframes.request_keyframe())) {
                Ok(p) => p,
                Err(e) => return RunEnd::Failed(e.to_string()),
            };
        let Some(bus) = pipeline.bus() else {
            return RunEnd::Failed("pipeline without a bus".into());
        };
        let mut messages = bus.stream();
        let mut names: Vec<String> = Vec::new();
        if plan.video.is_some() {
            names.extend(renditions.iter().map(|r| r.name.clone()));
        }
        if plan.audio.is_some() {
            names.push(AUDIO.to_owned());
        }
        let segment_ns = hls.config.segment.as_nanos() as u64;
        let (init, first_msn, offset_ns) = media.update(|m| {
            m.runs += 1;
            m.ended = false;
            let init = format!("init{}.mp4", m.runs);
            for name in &names {
                let playlist = m.playlists.entry(name.clone()).or_insert_with(|| {
                    MediaPlaylist::new(
                        hls.config.segment.as_secs_f64(),
                        hls.config.part.as_secs_f64(),
                        hls.config.window_segments,
                    )
                });
                playlist.begin_run(init.clone());
            }
            let first_msn = m
                .playlists
                .values()
                .map(MediaPlaylist::next_msn)
                .max()
                .unwrap_or(0);
            let offset = if m.timeline_ns == 0 {
                0
            } else {
                (m.timeline_ns / segment_ns + 1) * segment_ns
            };
            (init, first_msn, offset)
        });
        let tracks = names
            .iter()
            .enumerate()
            .map(|(i, name)| TrackOut {
                name: name.clone(),
                segmenter: None,
                parts: Vec::new(),
                arrivals: VecDeque::new(),
                nominal_ticks: renditions
                    .get(i)
                    .filter(|_| name != AUDIO)
                    .map_or(1024, |r| 90_000 / r.fps.max(1)),
            })
            .collect();
        hls.metrics.pipelines.inc();
        let mut run = Run {
            hls,
            media,
            pipeline,
            tracks,
            first_msn,
            offset_ns,
            init,
            poster_final: false,
            segments: 0,
            end_ns: offset_ns,
        };
        tracing::info!(stream = %media.stream, renditions = ?names, first_msn, "HLS run started");
        for (kind, wire) in early {
            run.pipeline.push(kind, &wire);
        }
        let end = loop {
            tokio::select! {
                biased;
                _ = hls.shutdown.cancelled() => break RunEnd::Shutdown,
                _ = restart.notified() => {
                    run.pipeline.fail("restart requested");
                }
                message = messages.next() => match message.as_ref().map(|m| m.view()) {
                    Some(gstreamer::MessageView::Error(e)) => break RunEnd::Failed(format!(
                        "{} ({})",
                        e.error(),
                        e.debug().map(|d| d.to_string()).unwrap_or_default()
                    )),
                    Some(gstreamer::MessageView::Eos(_)) => break RunEnd::Failed("end of stream".into()),
                    Some(_) => {}
                    None => break RunEnd::Failed("bus closed".into()),
                },
                output = rx.recv() => match output {
                    Some(output) => run.package(output).await,
                    None => break RunEnd::Failed("pipeline outputs closed".into()),
                },
                packet = leg.recv() => match packet {
                    Some(f) => {
                        if let Ok(wire) = f.packet.marshal() {
                            run.pipeline.push(f.kind, &wire);
                        }
                    }
                    None => break RunEnd::SourceChanged,
                },
                changed = source.changed() => {
                    if changed.is_err() || source_moved(source, info.generation) {
                        break RunEnd::SourceChanged;
                    }
                }
            }
        };
        drop(leg);
        run.finish().await;
        hls.metrics.pipelines.dec();
        end
    }

    /// Packages one output of the pipeline.
    async fn package(&mut self, output: Output) {
        match output {
            Output::Poster { pts_ns, jpeg } => {
                // The first picture at once, then one from three seconds in (past any fade-in).
                let first = !self.media.read(|m| m.poster);
                if first || (!self.poster_final && pts_ns >= 3_000_000_000) {
                    self.poster_final |= !first;
                    let key = format!("{}/{POSTER}", self.media.stream);
                    if self.hls.put(&key, jpeg).await {
                        self.media.update(|m| m.poster = true);
                    }
                }
            }
            Output::Encoded(e) => self.encoded(e).await,
        }
    }

    async fn encoded(&mut self, e: Encoded) {
        let Some(track) = self.tracks.get_mut(e.track) else {
            return;
        };
        if let Some(caps) = &e.caps
            && track.segmenter.is_none()
        {
            let (kind, timescale) = match caps.clone() {
                TrackCaps::Video {
                    width,
                    height,
                    codec_data,
                } => (
                    TrackKind::Video {
                        width,
                        height,
                        avcc: codec_data,
                    },
                    90_000,
                ),
                TrackCaps::Audio {
                    rate,
                    channels,
                    codec_data,
                } => (
                    TrackKind::Audio {
                        sample_rate: rate,
                        channels,
                        asc: codec_data,
                    },
                    rate,
                ),
            };
            let t = Track { timescale, kind };
            let key = format!("{}/{}/{}", self.media.stream, track.name, self.init);
            let init_ok = self.hls.put(&key, t.init_segment()).await;
            let codecs = t.codecs();
            let name = track.name.clone();
            self.media.update(|m| {
                if name == AUDIO {
                    m.audio_codecs = Some(codecs);
                } else if let Some(v) = m.variants.iter_mut().find(|v| v.rendition.name == name) {
                    v.codecs = Some(codecs);
                }
            });
            if init_ok {
                track.segmenter = Some(Segmenter::new(
                    t,
                    self.hls.config.segment,
                    self.hls.config.part,
                    self.first_msn,
                ));
            }
        }
        let Some(segmenter) = track.segmenter.as_mut() else {
            return;
        };
        let timescale = u64::from(segmenter.track().timescale);
        let ticks = |ns: u64| (u128::from(ns) * u128::from(timescale) / 1_000_000_000) as u64;
        let duration = e
            .duration_ns
            .map(|d| ticks(d) as u32)
            .filter(|d| *d > 0)
            .unwrap_or(track.nominal_ticks);
        // Time zero is the run's first decoded frame; anything before it is dropped.
        let Some(origin) = self.pipeline.origin_ns(e.pts_ns) else {
            return;
        };
        let Some(since) = e.dts_ns.min(e.pts_ns).checked_sub(origin) else {
            return;
        };
        let dts_ns = since + self.offset_ns;
        track.arrivals.push_back(e.pts_ns);
        let cuts = segmenter.push(Sample {
            dts: ticks(dts_ns),
            duration,
            keyframe: e.keyframe,
            data: e.data,
        });
        self.end_ns = self
            .end_ns
            .max(dts_ns + u64::from(duration) * 1_000_000_000 / timescale);
        self.apply(e.track, cuts).await;
    }

    /// Stores what the segmenter cut, then lists it (a listed part is always fetchable).
    async fn apply(&mut self, index: usize, cuts: Vec<Cut>) {
        for cut in cuts {
            let stream = self.media.stream.clone();
            let track = &mut self.tracks[index];
            match cut {
                Cut::Part {
                    msn,
                    index: part,
                    duration,
                    independent,
                    samples,
                    bytes,
                } => {
                    let key = format!("{stream}/{}/{}", track.name, part_name(msn, part));
                    track.parts.push(bytes.clone());
                    if !self.hls.put(&key, bytes).await {
                        continue;
                    }
                    let name = track.name.clone();
                    self.media.update(|m| {
                        if let Some(p) = m.playlists.get_mut(&name) {
                            p.add_part(
                                msn,
                                PartEntry {
                                    duration,
                                    independent,
                                },
                            );
                        }
                    });
                    self.hls.metrics.parts.inc();
                    if let Some(now) = self.pipeline.running_time_ns() {
                        for _ in 0..samples {
                            if let Some(arrived) = track.arrivals.pop_front() {
                                self.hls
                                    .metrics
                                    .part_latency
                                    .observe(now.saturating_sub(arrived) as f64 / 1e9);
                            }
                        }
                    }
                }
                Cut::Segment { msn, duration } => {
                    let mut whole = BytesMut::new();
                    for p in track.parts.drain(..) {
                        whole.extend_from_slice(&p);
                    }
                    let key = format!("{stream}/{}/{}", track.name, segment_name(msn));
                    if !self.hls.put(&key, whole.freeze()).await {
                        continue;
                    }
                    let name = track.name.clone();
                    self.media.update(|m| {
                        if let Some(p) = m.playlists.get_mut(&name) {
                            p.finish_segment(msn, duration);
                        }
                    });
                    self.hls.metrics.segments.inc();
                    if index == 0 {
                        let end_ns = self.end_ns;
                        self.media
                            .update(|m| m.timeline_ns = m.timeline_ns.max(end_ns));
                        self.segments += 1;
                        if self.segments % MANIFEST_EVERY == 0 {
                            save_manifest(self.hls, self.media).await;
                        }
                    }
                }
            }
        }
    }

    /// Closes the open segments, stops the pipeline and saves the manifest.
    async fn finish(mut self) {
        for i in 0..self.tracks.len() {
            let cuts = self.tracks[i]
                .segmenter
                .as_mut()
                .map(Segmenter::flush)
                .unwrap_or_default();
            self.apply(i, cuts).await;
        }
        let end_ns = self.end_ns;
        self.media.update(|m| {
            m.timeline_ns = m.timeline_ns.max(end_ns);
            m.playlists.values_mut().for_each(MediaPlaylist::pause);
        });
        save_manifest(self.hls, self.media).await;
    }
}

/// Whether the router's source is no longer the live generation this run serves.
fn source_moved(source: &mut watch::Receiver<SourceInfo>, generation: u64) -> bool {
    let now = source.borrow_and_update();
    now.generation != generation || !now.live
}

async fn save_manifest(hls: &Hls, media: &StreamMedia) {
    let json = media.read(|m| serde_json::to_vec(m));
    match json {
        Ok(json) => {
            hls.put(&format!("{}/{MANIFEST}", media.stream), Bytes::from(json))
                .await;
        }
        Err(e) => tracing::error!(error = %e, "serialising the HLS manifest"),
    }
}

/// The publisher is gone for good: every playlist gets `EXT-X-ENDLIST`.
async fn finalize(hls: &Hls, media: &StreamMedia) {
    let had_media = media.update(|m| {
        m.playlists.values_mut().for_each(MediaPlaylist::end);
        m.ended = true;
        m.playlists.values().any(|p| !p.segments.is_empty())
    });
    save_manifest(hls, media).await;
    if had_media {
        hls.metrics.replays.inc();
    }
    tracing::info!(stream = %media.stream, "recording finalised as a replay");
}

impl Hls {
    /// The renditions of this recording: planned on its first run, kept for later runs so the
    /// master playlist never changes under a player.
    fn plan_renditions(
        &self,
        media: &StreamMedia,
        size: Option<(u32, u32)>,
        audio: bool,
    ) -> Vec<Rendition> {
        media.update(|m| {
            if m.runs == 0 && m.variants.is_empty() {
                if let Some((w, h)) = size {
                    m.variants = ladder::plan(w, h, &self.config.renditions)
                        .into_iter()
                        .map(|rendition| Variant {
                            rendition,
                            codecs: None,
                        })
                        .collect();
                }
                m.has_audio = audio;
                m.audio_bitrate_kbps = self.config.audio_bitrate_kbps;
            }
            m.variants.iter().map(|v| v.rendition.clone()).collect()
        })
    }
}
