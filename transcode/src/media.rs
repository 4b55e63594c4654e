//! One stream's HLS media as players see it: the renditions and their playlists, the master
//! playlist, the poster, and the change counter that blocking playlist reloads wait on. The
//! [`Manifest`] is also the recording's index, saved beside the segments so a replay outlives
//! the process.

use crate::ladder::Rendition;
use crate::playlist::MediaPlaylist;
use crate::text_track::{TextTrack, language_name, rendition_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use vitrine_core::StreamId;

/// The master playlist's group of subtitle renditions.
pub const SUBTITLES_GROUP: &str = "subs";
/// Name of the audio rendition's directory.
pub const AUDIO: &str = "audio";
/// Object name of the recording's manifest.
pub const MANIFEST: &str = "manifest.json";
/// Object name of the poster.
pub const POSTER: &str = "poster.jpg";

/// A video rendition and, once its encoder produced its first frame, its codec string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub rendition: Rendition,
    pub codecs: Option<String>,
}

/// Everything known about a stream's HLS output; persisted as the recording's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub variants: Vec<Variant>,
    /// The audio rendition's codec string once known; `has_audio` says whether one is expected.
    pub audio_codecs: Option<String>,
    pub has_audio: bool,
    pub audio_bitrate_kbps: u32,
    /// Media playlists by rendition name (`720p`, ..., `audio`).
    pub playlists: BTreeMap<String, MediaPlaylist>,
    /// Encoder runs so far (each names its init segments `init{run}.mp4`).
    pub runs: u32,
    /// End of the timeline so far, nanoseconds: the next run continues after it.
    pub timeline_ns: u64,
    pub poster: bool,
    /// The recording is a replay (every playlist has `EXT-X-ENDLIST`).
    pub ended: bool,
    /// Subtitle renditions, one per language.
    #[serde(default)]
    pub subtitles: Vec<TextTrack>,
    /// Where each encoder run's segments are in wall-clock time.
    #[serde(default)]
    pub clocks: Vec<RunClock>,
    /// When the manifest was last saved (Unix milliseconds; 0 for a recording from before it
    /// was kept).
    #[serde(default)]
    pub saved_ms: i64,
}

/// A producer saves the manifest every few segments: at most this many of its segments (and
/// the open one) are unlisted when it stops unannounced.
pub const UNSAVED_SEGMENTS: u64 = 4;
/// The most sequence numbers a lost producer's unsaved segments are assumed to span.
const MAX_LOST: u64 = 1_000_000;

/// The wall-clock time of an encoder run's first segment; later ones follow on the segment
/// grid (segments start at its lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunClock {
    pub first_msn: u64,
    /// Unix milliseconds of the first segment's first sample.
    pub wall_ms: i64,
    pub segment_ms: u64,
}

impl Manifest {
    /// The master playlist, once every rendition's codecs are known.
    pub fn master(&self) -> Option<String> {
        if self.variants.iter().any(|v| v.codecs.is_none())
            || (self.has_audio && self.audio_codecs.is_none())
            || (self.variants.is_empty() && !self.has_audio)
        {
            return None;
        }
        let audio_kbps = if self.has_audio {
            self.audio_bitrate_kbps
        } else {
            0
        };
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        for t in &self.subtitles {
            let _ = writeln!(
                out,
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"{SUBTITLES_GROUP}\",NAME=\"{}\",LANGUAGE=\"{}\",\
                 DEFAULT={},AUTOSELECT=YES,FORCED=NO,URI=\"{}/index.m3u8\"",
                language_name(&t.language),
                t.language,
                // Captions are the viewer's choice; players also pick them by their settings.
                "NO",
                rendition_name(&t.language)
            );
        }
        let subtitles = if self.subtitles.is_empty() {
            String::new()
        } else {
            format!(",SUBTITLES=\"{SUBTITLES_GROUP}\"")
        };
        let audio = self.audio_codecs.as_deref().filter(|_| self.has_audio);
        if let Some(codecs) = audio {
            if self.variants.is_empty() {
                let bandwidth = u64::from(audio_kbps) * 1100;
                let _ = write!(
                    out,
                    "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{codecs}\"{subtitles}\n\
                     {AUDIO}/index.m3u8\n"
                );
                return Some(out);
            }
            let _ = writeln!(
                out,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Original\",DEFAULT=YES,\
                 AUTOSELECT=YES,CHANNELS=\"2\",URI=\"{AUDIO}/index.m3u8\""
            );
        }
        for v in &self.variants {
            let r = &v.rendition;
            let kbps = u64::from(r.bitrate_kbps + audio_kbps);
            let codecs = match audio {
                Some(a) => format!("{},{a}", v.codecs.as_deref().unwrap_or_default()),
                None => v.codecs.clone().unwrap_or_default(),
            };
            let _ = write!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},\
                 FRAME-RATE={:.3},CODECS=\"{codecs}\"{}{subtitles}\n{}/index.m3u8\n",
                kbps * 1100,
                kbps * 1000,
                r.width,
                r.height,
                f64::from(r.fps),
                if audio.is_some() {
                    ",AUDIO=\"aac\""
                } else {
                    ""
                },
                r.name,
            );
        }
        Some(out)
    }

    /// Unix milliseconds of segment `msn`'s first sample, when its run's clock is known.
    pub fn program_time(&self, msn: u64) -> Option<i64> {
        let run = self.clocks.iter().rev().find(|c| c.first_msn <= msn)?;
        Some(run.wall_ms + ((msn - run.first_msn) * run.segment_ms) as i64)
    }

    /// The recording was last saved by a producer that is gone (a crash, a dead node): the
    /// segments it made after that save are not listed, but their objects may exist, cached
    /// by CDNs under their names for a year. The next segments are numbered past every number
    /// it can have used since: one per segment duration since the save (it made them in real
    /// time), at least [`UNSAVED_SEGMENTS`]. Every rendition skips to the same number, and live
    /// playlists start after the gap.
    pub fn resume_after_loss(&mut self, now_ms: i64) {
        let Some(segment_ms) = self
            .playlists
            .values()
            .map(|p| (p.segment_target * 1000.0).max(1.0) as i64)
            .max()
        else {
            return;
        };
        let by_time = if self.saved_ms > 0 {
            ((now_ms - self.saved_ms).max(0) + segment_ms - 1) / segment_ms
        } else {
            0
        } as u64;
        let lost = by_time.max(UNSAVED_SEGMENTS).min(MAX_LOST) + 1;
        let next = self
            .playlists
            .values()
            .map(MediaPlaylist::next_msn)
            .max()
            .unwrap_or(0);
        for p in self.playlists.values_mut() {
            p.pause();
            p.skip_to(next + lost);
        }
    }

    /// Where the recording's segments are, as a replay plays them back to back: for each
    /// segment with a known program date time, (its first sample in Unix ms, its start in the
    /// replay in ms, its length in ms), in order. Read from the first video rendition (or the
    /// audio of an audio-only stream): every rendition's segment `n` covers the same time.
    pub fn replay_positions(&self) -> Vec<(i64, u64, u64)> {
        let reference = self
            .variants
            .first()
            .and_then(|v| self.playlists.get(&v.rendition.name))
            .or_else(|| self.playlists.get(AUDIO));
        let Some(playlist) = reference else {
            return Vec::new();
        };
        let mut at = 0.0;
        let mut out = Vec::with_capacity(playlist.segments.len());
        for s in &playlist.segments {
            if let Some(wall) = self.program_time(s.msn) {
                out.push((wall, (at * 1000.0) as u64, (s.duration * 1000.0) as u64));
            }
            at += s.duration;
        }
        out
    }

    /// Whether a player can start: the master playlist is known and every rendition lists a
    /// complete segment (an empty live playlist makes players give up).
    pub fn playable(&self) -> bool {
        self.master().is_some()
            && !self.playlists.is_empty()
            && self.playlists.values().all(|p| !p.segments.is_empty())
    }
}

/// Where wall-clock time `wall_ms` is in a replay whose segments are at `positions` (see
/// [`Manifest::replay_positions`]), in ms from its start: inside a segment, its offset there;
/// while nothing was recorded (before the first segment, or between two runs while the
/// publisher was away), the start of the next segment; after the last, its end. `None` when
/// nothing is recorded.
pub fn replay_ms(positions: &[(i64, u64, u64)], wall_ms: i64) -> Option<u64> {
    let after = positions.partition_point(|&(wall, _, _)| wall <= wall_ms);
    if after == 0 {
        return positions.first().map(|&(_, at, _)| at);
    }
    let (wall, at, length) = positions[after - 1];
    let into = (wall_ms - wall) as u64;
    if into < length {
        return Some(at + into);
    }
    Some(
        positions
            .get(after)
            .map_or(at + length, |&(_, next, _)| next),
    )
}

/// A stream's media, shared by its transcoding session (writer) and HTTP handlers (readers).
#[derive(Debug)]
pub struct StreamMedia {
    pub stream: StreamId,
    state: Mutex<Manifest>,
    version: watch::Sender<u64>,
    /// Where the running encoder run's media timeline is in real time (none between runs).
    clock: Mutex<Option<MediaClock>>,
}

/// A point of the media timeline in real time: media time `media_ns` is the instant `anchor`
/// (when the frame that started the run reached the server).
#[derive(Debug, Clone, Copy)]
pub struct MediaClock {
    pub anchor: std::time::Instant,
    pub media_ns: u64,
}

impl StreamMedia {
    pub fn new(stream: StreamId, manifest: Manifest) -> Self {
        Self {
            stream,
            state: Mutex::new(manifest),
            version: watch::Sender::new(0),
            clock: Mutex::new(None),
        }
    }

    /// Sets (or, with `None`, clears) the running encoder run's clock.
    pub fn set_clock(&self, clock: Option<MediaClock>) {
        *self.clock.lock().expect("clock lock") = clock;
    }

    /// The media time of something received at `at`, while an encoder run is going.
    pub fn media_ns(&self, at: std::time::Instant) -> Option<u64> {
        let clock = (*self.clock.lock().expect("clock lock"))?;
        Some(if at >= clock.anchor {
            clock.media_ns + (at - clock.anchor).as_nanos() as u64
        } else {
            clock
                .media_ns
                .saturating_sub((clock.anchor - at).as_nanos() as u64)
        })
    }

    pub fn read<R>(&self, f: impl FnOnce(&Manifest) -> R) -> R {
        f(&self.state.lock().expect("media lock"))
    }

    /// Changes the manifest and wakes every waiting playlist request.
    pub fn update<R>(&self, f: impl FnOnce(&mut Manifest) -> R) -> R {
        let r = f(&mut self.state.lock().expect("media lock"));
        self.version.send_modify(|v| *v += 1);
        r
    }

    /// Waits until `ready` holds (checked at every change) or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, ready: impl Fn(&Manifest) -> bool) -> bool {
        let mut changes = self.version.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if self.read(&ready) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        });
        waited.await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str, w: u32, h: u32, kbps: u32) -> Variant {
        Variant {
            rendition: Rendition {
                name: name.into(),
                width: w,
                height: h,
                bitrate_kbps: kbps,
                fps: 30,
            },
            codecs: Some("avc1.64001f".into()),
        }
    }

    #[test]
    fn wall_clock_times_map_onto_the_replay() {
        // Two segments of 2 s from 10 000, then the publisher was away 20 s, then one more.
        let positions = [
            (10_000, 0, 2000),
            (12_000, 2000, 2000),
            (34_000, 4000, 2000),
        ];
        assert_eq!(replay_ms(&positions, 9_000), Some(0), "before: the start");
        assert_eq!(replay_ms(&positions, 10_000), Some(0));
        assert_eq!(replay_ms(&positions, 13_500), Some(3500));
        assert_eq!(
            replay_ms(&positions, 20_000),
            Some(4000),
            "in the gap: the next run"
        );
        assert_eq!(replay_ms(&positions, 35_000), Some(5000));
        assert_eq!(replay_ms(&positions, 99_000), Some(6000), "after: the end");
        assert_eq!(replay_ms(&[], 1), None);
    }

    /// A recording continued after its producer was lost skips, in every rendition alike, the
    /// numbers the producer can have used since its last save.
    #[test]
    fn a_lost_producers_numbers_are_skipped() {
        let mut m = Manifest::default();
        for name in ["240p", AUDIO] {
            let mut p = MediaPlaylist::new(2.0, 0.5, 6);
            p.begin_run("init1.mp4".into());
            for msn in 0..3 {
                p.add_part(
                    msn,
                    crate::playlist::PartEntry {
                        duration: 2.0,
                        independent: true,
                    },
                );
                p.finish_segment(msn, 2.0);
            }
            m.playlists.insert(name.into(), p);
        }
        m.playlists.get_mut(AUDIO).unwrap().add_part(
            3,
            crate::playlist::PartEntry {
                duration: 0.5,
                independent: true,
            },
        );
        m.saved_ms = 1_000_000;
        // Saved 13 s ago: up to 7 segments of 2 s since, past the open segment 3.
        let mut later = m.clone();
        later.resume_after_loss(1_013_000);
        for p in later.playlists.values() {
            assert_eq!(p.next_msn(), 4 + 7 + 1);
            assert!(p.open.is_none() && p.hint.is_none());
        }
        // Saved a moment ago: still past the segments a save may have missed.
        let mut soon = m.clone();
        soon.resume_after_loss(1_000_100);
        assert_eq!(soon.playlists[AUDIO].next_msn(), 4 + UNSAVED_SEGMENTS + 1);
        assert_eq!(soon.playlists["240p"].next_msn(), 4 + UNSAVED_SEGMENTS + 1);
        // A manifest without a save time (older) and a clock gone backwards: the least skip.
        m.saved_ms = 0;
        m.resume_after_loss(5);
        assert_eq!(m.playlists[AUDIO].next_msn(), 4 + UNSAVED_SEGMENTS + 1);
    }

    #[test]
    fn master_lists_variants_with_audio_group() {
        let mut m = Manifest {
            variants: vec![
                variant("720p", 1280, 720, 2800),
                variant("360p", 640, 360, 800),
            ],
            has_audio: true,
            audio_bitrate_kbps: 128,
            ..Manifest::default()
        };
        assert_eq!(m.master(), None, "audio codecs not known yet");
        m.audio_codecs = Some("mp4a.40.2".into());
        let text = m.master().unwrap();
        assert!(text.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\""));
        assert!(
            text.contains(
                "#EXT-X-STREAM-INF:BANDWIDTH=3220800,AVERAGE-BANDWIDTH=2928000,RESOLUTION=1280x720,\
             FRAME-RATE=30.000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"aac\"\n720p/index.m3u8\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("#EXT-X-STREAM-INF").count(), 2);
    }

    #[test]
    fn audio_only_and_video_only() {
        let audio_only = Manifest {
            has_audio: true,
            audio_codecs: Some("mp4a.40.2".into()),
            audio_bitrate_kbps: 128,
            ..Manifest::default()
        };
        assert!(
            audio_only
                .master()
                .unwrap()
                .ends_with("CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n")
        );
        let video_only = Manifest {
            variants: vec![variant("360p", 640, 360, 800)],
            ..Manifest::default()
        };
        let text = video_only.master().unwrap();
        assert!(
            !text.contains("AUDIO") && text.contains("CODECS=\"avc1.64001f\"\n"),
            "{text}"
        );
        assert_eq!(Manifest::default().master(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_on_change_or_time_out() {
        let media = std::sync::Arc::new(StreamMedia::new(
            StreamId::parse("s").unwrap(),
            Manifest::default(),
        ));
        let waiter = {
            let media = media.clone();
            tokio::spawn(async move {
                media
                    .wait_for(Duration::from_secs(5), |m| m.runs == 1)
                    .await
            })
        };
        tokio::task::yield_now().await;
        media.update(|m| m.runs = 1);
        assert!(waiter.await.unwrap());
        assert!(
            !media
                .wait_for(Duration::from_secs(1), |m| m.runs == 2)
                .await
        );
    }
}
