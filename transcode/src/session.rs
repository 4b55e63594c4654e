//! One stream's transcoding life: wait for the publisher, learn the picture size from its first
//! keyframe, run the encoder pipeline and package its output, and start again after a
//! publisher change (same playlists, `EXT-X-DISCONTINUITY`) or a pipeline failure (bounded
//! exponential back-off). When the publisher stays away past the grace period, the recording
//! is finalised as a replay.

use crate::Hls;
use crate::ladder::{self, Rendition};
use crate::media::{StreamMedia, Variant};
use crate::packager::{Packager, save_manifest};
use crate::pipeline::{Pipeline, PipelinePlan, Source};
use crate::playlist::MediaPlaylist;
use crate::probe::picture_size;
use bytes::Bytes;
use futures::StreamExt;
use rtc::shared::marshal::Marshal;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
                save_manifest(&hls, &media, &format!("{}/", media.stream)).await;
                return;
            }
            if hls.end_session(&stream, &router) {
                finalize(&hls, &media).await;
                return;
            }
            continue;
        };
        let end = run_once(&hls, &router, &media, &mut source, info, &restart).await;
        match end {
            RunEnd::SourceChanged => backoff = FIRST_BACKOFF,
            RunEnd::Shutdown => {
                save_manifest(&hls, &media, &format!("{}/", media.stream)).await;
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
            _ = tokio::time::sleep_until(wake) => { live_since?; }
            _ = hls.shutdown.cancelled() => return None,
        }
    }
}

/// One encoder run of a live stream: the tap, the pipeline and the packager.
async fn run_once(
    hls: &Arc<Hls>,
    router: &Arc<Router>,
    media: &StreamMedia,
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
    // Time zero of the run's pipeline clock: packets keep their arrival times from here on.
    let zero = Instant::now();
    let mut early: VecDeque<(MediaKind, Bytes, Instant)> = VecDeque::new();
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
                            early.push_back((f.kind, wire.freeze(), Instant::now()));
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
    // A browser starts small while its bandwidth estimate ramps up: the size it says its
    // camera captures, when larger, plans the ladder (whatever arrives is scaled into it).
    let declared = video.as_ref().and(source.borrow().capture.or(info.capture));
    let renditions = hls.plan_renditions(media, larger(size, declared), audio.is_some());
    let plan = PipelinePlan {
        source: Source::Rtp {
            video: video
                .as_ref()
                .map(|v| (v.codec, v.payload_type))
                .filter(|_| !renditions.is_empty()),
            audio: audio.as_ref().map(|a| a.payload_type),
        },
        renditions: renditions.clone(),
        encoder: hls.config.encoder,
        x264_preset: hls.config.x264_preset.clone(),
        segment: hls.config.segment,
        audio_bitrate_kbps: hls.config.audio_bitrate_kbps,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(crate::pipeline::OUTPUT_QUEUE);
    let keyframes = Arc::clone(router);
    let pipeline = match Pipeline::build(
        &plan,
        zero,
        tx,
        Arc::new(move || keyframes.request_keyframe()),
    ) {
        Ok(p) => p,
        Err(e) => return RunEnd::Failed(e.to_string()),
    };
    pipeline.watch_stages(&hls.metrics);
    let Some(bus) = pipeline.bus() else {
        return RunEnd::Failed("pipeline without a bus".into());
    };
    let mut messages = bus.stream();
    tracing::info!(stream = %media.stream, outputs = ?plan.outputs(), "HLS run started");
    let mut packager = Packager::begin(hls, media, format!("{}/", media.stream), &plan);
    hls.metrics.pipelines.inc();
    for (kind, wire, received) in early {
        pipeline.push(kind, wire, received);
    }
    let end = loop {
        tokio::select! {
            biased;
            _ = hls.shutdown.cancelled() => break RunEnd::Shutdown,
            _ = restart.notified() => {
                pipeline.fail("restart requested");
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
                Some(output) => packager.package(&pipeline, output).await,
                None => break RunEnd::Failed("pipeline outputs closed".into()),
            },
            packet = leg.recv() => match packet {
                Some(f) => {
                    if let Ok(wire) = f.packet.marshal() {
                        pipeline.push(f.kind, wire.freeze(), Instant::now());
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
    // Close the outputs first: a streaming thread blocked on a full queue then returns, and
    // stopping the pipeline (which joins those threads) cannot deadlock.
    drop(rx);
    drop(pipeline);
    packager.finish().await;
    hls.metrics.pipelines.dec();
    end
}

/// Whether the router's source is no longer the live generation this run serves.
fn source_moved(source: &mut watch::Receiver<SourceInfo>, generation: u64) -> bool {
    let now = source.borrow_and_update();
    now.generation != generation || !now.live
}

/// The publisher is gone for good: every playlist gets `EXT-X-ENDLIST`.
async fn finalize(hls: &Hls, media: &StreamMedia) {
    let stream = &media.stream;
    if !hls.origins().hold(stream).await {
        // The publisher went to another node, which continues the recording.
        tracing::info!(%stream, "another node continues this recording");
        hls.forget(stream);
        return;
    }
    let had_media = media.update(|m| {
        m.playlists.values_mut().for_each(MediaPlaylist::end);
        m.ended = true;
        m.playlists.values().any(|p| !p.segments.is_empty())
    });
    save_manifest(hls, media, &format!("{}/", media.stream)).await;
    if had_media {
        hls.metrics.replays.inc();
        // Nobody listening (no subtitles role) is fine.
        let _ = hls.replays.send(media.stream.clone());
    }
    hls.origins().release(stream).await;
    tracing::info!(%stream, "recording finalised as a replay");
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

/// The taller of a first keyframe's picture size and a declared capture size.
fn larger(first: Option<(u32, u32)>, declared: Option<(u32, u32)>) -> Option<(u32, u32)> {
    match (first, declared) {
        (Some(f), Some(d)) if d.1 > f.1 => Some(d),
        (None, d) => d,
        (f, _) => f,
    }
}

#[cfg(test)]
mod tests {
    use super::larger;

    #[test]
    fn a_declared_size_plans_the_ladder_only_when_taller() {
        let (small, camera) = (Some((320, 180)), Some((1280, 720)));
        assert_eq!(larger(small, camera), camera);
        assert_eq!(larger(camera, small), camera);
        assert_eq!(larger(small, None), small);
        assert_eq!(larger(None, camera), camera);
        assert_eq!(larger(None, None), None);
    }
}
