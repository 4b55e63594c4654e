//! Packaging of one encoder run's output: each access unit through its track's segmenter into
//! fMP4 parts and segments, stored before they are listed in the stream's playlists; init
//! segments, codec strings, the poster and the recording's manifest. Shared by live sessions and
//! the offline `transcode` command.

use crate::Hls;
use crate::fmp4::{Sample, Track, TrackKind};
use crate::media::{AUDIO, MANIFEST, MediaClock, POSTER, RunClock, StreamMedia};
use crate::metrics::{StageLabels, TrackLabels};
use crate::pipeline::{Encoded, Output, Pipeline, PipelinePlan, TrackCaps};
use crate::playlist::{MediaPlaylist, PartEntry, part_name, segment_name};
use crate::segmenter::{Cut, Segmenter};
use crate::text_track::{TextTrack, rendition_name, segment_name as text_segment_name};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// The manifest is saved every this many segments (and whenever a run ends).
const MANIFEST_EVERY: u64 = 3;
/// Parts of a segment this many segments old are deleted: playlists list parts of the last two
/// segments only, so a player's copy that still names them is several seconds stale. The
/// segment itself (their concatenation) stays for the recording.
const PART_RETENTION: u64 = 4;

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

/// The packaging side of one encoder run.
pub(crate) struct Packager<'a> {
    hls: &'a Hls,
    media: &'a StreamMedia,
    /// Prepended to every object key (`{stream}/` live, empty for a folder of its own).
    prefix: String,
    tracks: Vec<TrackOut>,
    first_msn: u64,
    offset_ns: u64,
    init: String,
    poster_final: bool,
    segments: u64,
    /// End of this run's timeline so far, nanoseconds.
    end_ns: u64,
    /// Media time where the first track's open segment starts (subtitle segments mirror it).
    text_cursor_ns: Option<u64>,
    /// Segments of the first track complete but not yet given subtitles: (msn, start, length).
    /// Segments whose subtitles are still to be published (see `publish_text`).
    text_due: VecDeque<(u64, u64, f64)>,
    /// The media clock was published for live captions.
    clock_set: bool,
}

impl<'a> Packager<'a> {
    /// Starts a run of `plan`: its playlists continue (after a discontinuity) where the last
    /// run ended.
    pub fn begin(
        hls: &'a Hls,
        media: &'a StreamMedia,
        prefix: String,
        plan: &PipelinePlan,
    ) -> Self {
        let names = plan.outputs();
        let segment_ns = hls.config.segment.as_nanos() as u64;
        let languages = &hls.config.subtitle_languages;
        let has_audio = names.iter().any(|n| n == AUDIO);
        let (init, first_msn, offset_ns) = media.update(|m| {
            m.runs += 1;
            m.ended = false;
            if has_audio && !prefix.is_empty() {
                for language in languages {
                    if !m.subtitles.iter().any(|t| &t.language == language) {
                        m.subtitles.push(TextTrack::new(language));
                    }
                }
            }
            m.subtitles.iter_mut().for_each(TextTrack::begin_run);
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
                nominal_ticks: plan
                    .renditions
                    .get(i)
                    .filter(|_| name != AUDIO)
                    .map_or(1024, |r| 90_000 / r.fps.max(1)),
            })
            .collect();
        Packager {
            hls,
            media,
            prefix,
            tracks,
            first_msn,
            offset_ns,
            init,
            poster_final: false,
            segments: 0,
            end_ns: offset_ns,
            text_cursor_ns: None,
            text_due: VecDeque::new(),
            clock_set: false,
        }
    }

    /// Packages one output of the pipeline.
    pub async fn package(&mut self, pipeline: &Pipeline, output: Output) {
        match output {
            Output::Poster { pts_ns, jpeg } => {
                // The first picture at once, then one from three seconds in (past any fade-in).
                let first = !self.media.read(|m| m.poster);
                if first || (!self.poster_final && pts_ns >= 3_000_000_000) {
                    self.poster_final |= !first;
                    let key = format!("{}{POSTER}", self.prefix);
                    if self.hls.put(&key, jpeg).await {
                        self.media.update(|m| m.poster = true);
                    }
                }
            }
            Output::Encoded(e) => self.encoded(pipeline, e).await,
        }
    }

    async fn encoded(&mut self, pipeline: &Pipeline, e: Encoded) {
        let Some(track) = self.tracks.get_mut(e.track) else {
            return;
        };
        if pipeline.is_live()
            && let Some(now) = pipeline.running_time_ns()
        {
            let labels = StageLabels {
                stage: "packaged",
                track: track_kind(&track.name),
            };
            let stage = self.hls.metrics.stage_latency.get_or_create(&labels);
            stage.observe(crate::stages::lag_seconds(now, e.pts_ns));
        }
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
            let key = format!("{}{}/{}", self.prefix, track.name, self.init);
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
        let Some(origin) = pipeline.origin_ns(e.pts_ns) else {
            return;
        };
        let frame_ns = u64::from(duration) * 1_000_000_000 / timescale;
        let Some(since) = since_origin(e.dts_ns.min(e.pts_ns), origin, frame_ns) else {
            return;
        };
        // A video track starts at a keyframe: what comes before it is never listed.
        if !segmenter.takes(e.keyframe) {
            return;
        }
        let dts_ns = since + self.offset_ns;
        if !self.clock_set && !self.prefix.is_empty() {
            self.clock_set = true;
            let anchor = pipeline.zero() + std::time::Duration::from_nanos(origin);
            self.media.set_clock(Some(MediaClock {
                anchor,
                media_ns: self.offset_ns,
            }));
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_sub(anchor.elapsed());
            let clock = RunClock {
                first_msn: self.first_msn,
                wall_ms: wall.as_millis() as i64,
                segment_ms: self.hls.config.segment.as_millis() as u64,
            };
            self.media.update(|m| m.clocks.push(clock));
        }
        if e.track == 0 && self.text_cursor_ns.is_none() {
            self.text_cursor_ns = Some(dts_ns);
        }
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
        self.apply(Some(pipeline), e.track, cuts).await;
    }

    /// Stores what the segmenter cut, then lists it (a listed part is always fetchable).
    async fn apply(&mut self, pipeline: Option<&Pipeline>, index: usize, cuts: Vec<Cut>) {
        for cut in cuts {
            let prefix = self.prefix.clone();
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
                    let key = format!("{prefix}{}/{}", track.name, part_name(msn, part));
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
                    let kind = track_kind(&track.name);
                    let metrics = &self.hls.metrics;
                    let latency = metrics
                        .part_latency
                        .get_or_create(&TrackLabels { track: kind });
                    let listed = StageLabels {
                        stage: "listed",
                        track: kind,
                    };
                    let listed = metrics.stage_latency.get_or_create(&listed);
                    let now = pipeline
                        .filter(|p| p.is_live())
                        .and_then(Pipeline::running_time_ns);
                    for _ in 0..samples {
                        let arrived = track.arrivals.pop_front();
                        if let (Some(now), Some(arrived)) = (now, arrived) {
                            let lag = crate::stages::lag_seconds(now, arrived);
                            latency.observe(lag);
                            listed.observe(lag);
                        }
                    }
                }
                Cut::Segment { msn, duration } => {
                    let mut whole = BytesMut::new();
                    for p in track.parts.drain(..) {
                        whole.extend_from_slice(&p);
                    }
                    let key = format!("{prefix}{}/{}", track.name, segment_name(msn));
                    if !self.hls.put(&key, whole.freeze()).await {
                        continue;
                    }
                    let name = track.name.clone();
                    let stale = self.media.update(|m| {
                        let p = m.playlists.get_mut(&name)?;
                        p.finish_segment(msn, duration);
                        let old = msn.checked_sub(PART_RETENTION)?;
                        p.segments
                            .iter()
                            .rev()
                            .find(|s| s.msn == old)
                            .map(|s| (old, s.parts.len()))
                    });
                    if let Some((old, parts)) = stale {
                        for i in 0..parts as u32 {
                            let key = format!("{prefix}{name}/{}", part_name(old, i));
                            if let Err(e) = self.hls.store.delete(&key).await {
                                tracing::warn!(%key, error = %e, "deleting an old part");
                            }
                        }
                    }
                    self.hls.metrics.segments.inc();
                    if index == 0 {
                        let start = self.text_cursor_ns.unwrap_or(self.offset_ns);
                        self.text_cursor_ns = Some(start + (duration * 1e9) as u64);
                        // Published with the media segment, not a segment later: a low-latency
                        // player is already inside this segment when the next one begins, and
                        // hls.js loads no subtitle segment behind its position. A caption that
                        // comes after its segment goes into the next with its true times.
                        self.text_due.push_back((msn, start, duration));
                        while !self.text_due.is_empty() {
                            self.publish_text().await;
                        }
                        let end_ns = self.end_ns;
                        self.media
                            .update(|m| m.timeline_ns = m.timeline_ns.max(end_ns));
                        self.segments += 1;
                        if self.segments.is_multiple_of(MANIFEST_EVERY) {
                            save_manifest(self.hls, self.media, &self.prefix).await;
                        }
                    }
                }
            }
        }
    }

    /// Gives the oldest due segment its subtitles in every language: stored, then listed.
    async fn publish_text(&mut self) {
        let Some((msn, start, duration)) = self.text_due.pop_front() else {
            return;
        };
        let files: Vec<(String, String)> = self.media.update(|m| {
            m.subtitles
                .iter_mut()
                .map(|t| (t.language.clone(), t.cut(start, duration)))
                .collect()
        });
        for (language, vtt) in files {
            let key = format!(
                "{}{}/{}",
                self.prefix,
                rendition_name(&language),
                text_segment_name(msn)
            );
            if self.hls.put(&key, Bytes::from(vtt)).await {
                self.media.update(|m| {
                    if let Some(t) = m.subtitles.iter_mut().find(|t| t.language == language) {
                        t.publish(msn, duration);
                    }
                });
            }
        }
    }

    /// Closes the open segments and saves the manifest (the pipeline is stopped by then).
    pub async fn finish(mut self) {
        self.media.set_clock(None);
        for i in 0..self.tracks.len() {
            let cuts = self.tracks[i]
                .segmenter
                .as_mut()
                .map(Segmenter::flush)
                .unwrap_or_default();
            self.apply(None, i, cuts).await;
        }
        while !self.text_due.is_empty() {
            self.publish_text().await;
        }
        let end_ns = self.end_ns;
        self.media.update(|m| {
            m.timeline_ns = m.timeline_ns.max(end_ns);
            m.playlists.values_mut().for_each(MediaPlaylist::pause);
        });
        save_manifest(self.hls, self.media, &self.prefix).await;
    }
}

/// Saves the recording's manifest under `prefix`.
pub(crate) async fn save_manifest(hls: &Hls, media: &StreamMedia, prefix: &str) {
    if !hls.origins().hold(&media.stream).await {
        tracing::warn!(stream = %media.stream, "another node holds this recording: its manifest is not written here");
        return;
    }
    let json = media.update(|m| {
        m.saved_ms = vitrine_core::time::Timestamp::now().millis();
        serde_json::to_vec(m)
    });
    match json {
        Ok(json) => {
            hls.put(&format!("{prefix}{MANIFEST}"), Bytes::from(json))
                .await;
        }
        Err(e) => tracing::error!(error = %e, "serialising the HLS manifest"),
    }
}

/// The `track` label of a track's folder name.
fn track_kind(name: &str) -> &'static str {
    if name == AUDIO { "audio" } else { "video" }
}

/// Nanoseconds from the run's origin to a sample starting at `start` (running time), `None`
/// for a sample from before the run. The encoders' frame-rate converters put frames on their
/// own grid, so the run's first frame may come out up to a frame (`frame_ns`) before the
/// origin: it is the origin then (dropping it dropped the run's first keyframe, and with it
/// the first segment's worth of video).
fn since_origin(start: u64, origin: u64, frame_ns: u64) -> Option<u64> {
    match start.checked_sub(origin) {
        Some(since) => Some(since),
        None if origin - start < frame_ns => Some(0),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::since_origin;

    #[test]
    fn a_first_frame_just_before_the_origin_is_kept() {
        const FRAME: u64 = 33_333_333;
        assert_eq!(since_origin(0, 131_131, FRAME), Some(0));
        assert_eq!(
            since_origin(2_000_000_000, 131_131, FRAME),
            Some(1_999_868_869)
        );
        assert_eq!(since_origin(0, FRAME, FRAME), None, "a whole frame before");
        assert_eq!(since_origin(0, 500_000_000, FRAME), None);
    }
}
