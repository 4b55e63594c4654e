//! WebVTT subtitle renditions of a stream, one per language: captions arrive (a little after
//! the speech) with times on the stream's media timeline, wait until the segment of video
//! they belong to is complete, and are published as that segment's WebVTT file
//! (`X-TIMESTAMP-MAP` ties its times to the media's). The replay can swap the live pieces for
//! one file of the whole recording. Pure state and text; the packager stores and lists.

use crate::playlist::{ProgramTime, write_program_time};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Rendition directories of subtitles are `subtitles-{language}`.
pub const PREFIX: &str = "subtitles-";
/// The whole recording's captions in one file, once a replay job wrote it.
pub const WHOLE: &str = "all.vtt";
/// Captions waiting for their segment, per language; beyond it the oldest are dropped.
const MAX_PENDING: usize = 512;

/// The directory of a language's subtitles.
pub fn rendition_name(language: &str) -> String {
    format!("{PREFIX}{language}")
}

/// File name of a subtitle segment.
pub fn segment_name(msn: u64) -> String {
    format!("t{msn}.vtt")
}

/// A caption on the media timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextCue {
    pub start_ns: u64,
    pub end_ns: u64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSegment {
    pub msn: u64,
    pub duration: f64,
    pub discontinuity: bool,
}

/// One language's subtitle rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTrack {
    /// ISO 639-1 code (`en`).
    pub language: String,
    pub segments: Vec<TextSegment>,
    /// Captions not yet published in a segment, or running past the last one's end.
    #[serde(default)]
    pub pending: Vec<TextCue>,
    #[serde(default)]
    next_discontinuity: bool,
    /// Length in seconds of [`WHOLE`], once written: the replay lists it instead of the
    /// live segments.
    #[serde(default)]
    pub whole: Option<f64>,
}

impl TextTrack {
    pub fn new(language: &str) -> Self {
        Self {
            language: language.to_owned(),
            segments: Vec::new(),
            pending: Vec::new(),
            next_discontinuity: false,
            whole: None,
        }
    }

    /// A new encoder run begins: the next segment follows a discontinuity.
    pub fn begin_run(&mut self) {
        self.next_discontinuity = !self.segments.is_empty();
    }

    pub fn add_cue(&mut self, cue: TextCue) {
        if cue.text.trim().is_empty() || cue.end_ns < cue.start_ns {
            return;
        }
        if self.pending.len() == MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending.push(cue);
    }

    /// The WebVTT of segment `msn` (media time `start_ns` for `duration` seconds): every
    /// pending caption starting before its end, late ones included. Captions running past its
    /// end stay pending for the next segment too (players drop the repeat).
    pub fn cut(&mut self, start_ns: u64, duration: f64) -> String {
        let end_ns = start_ns + (duration * 1e9) as u64;
        let (mut now, later): (Vec<TextCue>, Vec<TextCue>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|c| c.start_ns < end_ns);
        self.pending = later;
        self.pending
            .extend(now.iter().filter(|c| c.end_ns > end_ns).cloned());
        self.pending.sort_by_key(|c| c.start_ns);
        now.sort_by_key(|c| c.start_ns);
        webvtt(&now)
    }

    /// Lists segment `msn` (its file is stored).
    pub fn publish(&mut self, msn: u64, duration: f64) {
        self.segments.push(TextSegment {
            msn,
            duration,
            discontinuity: std::mem::take(&mut self.next_discontinuity),
        });
    }

    /// The playlist: while live, the segments from `first_msn` (where the media playlists'
    /// window starts, so players line the two up) or else the
    /// last `window`; once `ended`, the whole file if there is one, else every segment.
    /// Segments get `EXT-X-PROGRAM-DATE-TIME` from `program_time`, as the media playlists do.
    pub fn render(
        &self,
        ended: bool,
        window: usize,
        first_msn: Option<u64>,
        program_time: ProgramTime,
    ) -> String {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n");
        if ended && let Some(length) = self.whole {
            let _ = write!(
                out,
                "#EXT-X-TARGETDURATION:{}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n\
                 #EXTINF:{length:.3},\n{WHOLE}\n#EXT-X-ENDLIST\n",
                length.ceil().max(1.0) as u64
            );
            return out;
        }
        let first = match (ended, first_msn) {
            (true, _) => 0,
            (false, Some(msn)) => self
                .segments
                .iter()
                .position(|s| s.msn >= msn)
                .unwrap_or(self.segments.len()),
            (false, None) => self.segments.len().saturating_sub(window.max(1)),
        };
        let shown = &self.segments[first..];
        let target = shown.iter().map(|s| s.duration).fold(1.0, f64::max).round() as u64;
        let _ = write!(
            out,
            "#EXT-X-TARGETDURATION:{target}\n{}#EXT-X-MEDIA-SEQUENCE:{}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            if ended {
                "#EXT-X-PLAYLIST-TYPE:VOD\n"
            } else {
                ""
            },
            shown.first().map_or(0, |s| s.msn),
            self.segments[..first]
                .iter()
                .filter(|s| s.discontinuity)
                .count()
        );
        for s in shown {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            write_program_time(&mut out, program_time(s.msn));
            let _ = write!(out, "#EXTINF:{:.5},\n{}\n", s.duration, segment_name(s.msn));
        }
        if ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// `HH:MM:SS.mmm` of nanoseconds.
fn vtt_time(ns: u64) -> String {
    let ms = ns / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Caption text as a WebVTT cue payload: `&` and `<` escaped, and the blank lines and `-->`
/// that would end the cue early removed. Empty when nothing is left.
pub fn cue_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace("-->", "->")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The header of every WebVTT file: local time zero is media time zero (the fMP4 timeline's
/// origin).
pub const WEBVTT_HEADER: &str = "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n";

/// A WebVTT file of `cues`, times on the media timeline (see [`WEBVTT_HEADER`]).
pub fn webvtt(cues: &[TextCue]) -> String {
    let mut out = String::from(WEBVTT_HEADER);
    for c in cues {
        let text = cue_text(&c.text);
        if text.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "\n{} --> {}\n{}\n",
            vtt_time(c.start_ns),
            vtt_time(c.end_ns.max(c.start_ns)),
            text
        );
    }
    out
}

/// A language's name in itself, for player menus (the code when unknown).
pub fn language_name(code: &str) -> &str {
    match code {
        "en" => "English",
        "es" => "Español",
        "de" => "Deutsch",
        "fr" => "Français",
        "it" => "Italiano",
        "pt" => "Português",
        "nl" => "Nederlands",
        "pl" => "Polski",
        "ja" => "日本語",
        "zh" => "中文",
        "ko" => "한국어",
        "ru" => "Русский",
        "ar" => "العربية",
        "hi" => "हिन्दी",
        "tr" => "Türkçe",
        _ => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start_s: f64, end_s: f64, text: &str) -> TextCue {
        TextCue {
            start_ns: (start_s * 1e9) as u64,
            end_ns: (end_s * 1e9) as u64,
            text: text.into(),
        }
    }

    #[test]
    fn captions_go_into_the_segment_they_start_in() {
        let mut t = TextTrack::new("en");
        t.add_cue(cue(0.5, 1.5, "Welcome"));
        t.add_cue(cue(1.8, 2.6, "to the <sale> & more"));
        t.add_cue(cue(4.5, 5.0, "later"));
        t.add_cue(cue(3.0, 3.0, "  "));
        let first = t.cut(0, 2.0);
        t.publish(0, 2.0);
        assert_eq!(
            first,
            "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n\
             \n00:00:00.500 --> 00:00:01.500\nWelcome\n\
             \n00:00:01.800 --> 00:00:02.600\nto the &lt;sale> &amp; more\n"
        );
        // The caption running past 2 s is repeated in the next segment; a late one (its time
        // already published) goes into the next segment too.
        t.add_cue(cue(1.0, 1.7, "late"));
        let second = t.cut(2_000_000_000, 2.0);
        t.publish(1, 2.0);
        assert!(second.contains("to the") && second.contains("late") && !second.contains("later"));
        assert!(t.cut(4_000_000_000, 2.0).contains("later"));
        t.publish(2, 2.0);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn playlists_live_and_replay() {
        let mut t = TextTrack::new("es");
        for msn in 0..5 {
            t.publish(msn, 2.0);
        }
        t.begin_run();
        t.publish(5, 1.5);
        let live = t.render(false, 3, None, &|_| None);
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{live}");
        // Lined up with the media playlists' window.
        let aligned = t.render(false, 3, Some(2), &|_| None);
        assert!(
            aligned.contains(
                "#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXTINF:2.00000,\nt2.vtt"
            ),
            "{aligned}"
        );
        assert!(live.contains("#EXT-X-DISCONTINUITY\n#EXTINF:1.50000,\nt5.vtt\n"));
        assert!(!live.contains("ENDLIST") && !live.contains("EXT-X-MAP"));
        let vod = t.render(true, 3, Some(4), &|msn| Some(msn as i64 * 2000));
        assert!(vod.contains("t0.vtt") && vod.ends_with("#EXT-X-ENDLIST\n"));
        assert!(
            vod.contains(
                "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:02.000Z\n#EXTINF:2.00000,\nt1.vtt"
            ),
            "{vod}"
        );
        t.whole = Some(11.5);
        assert_eq!(
            t.render(true, 3, None, &|_| None),
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:12\n#EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:11.500,\nall.vtt\n#EXT-X-ENDLIST\n"
        );
        assert_eq!(language_name("de"), "Deutsch");
        assert_eq!(language_name("xx"), "xx");
    }
}
