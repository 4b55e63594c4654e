//! Media playlists of one rendition (RFC 8216bis): the live LL-HLS view (sliding window, parts
//! of the last segments, preload hint, blocking-reload server control) and the VOD view of the
//! whole recording. Pure state and rendering; the HTTP layer decides when to answer.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// A partial segment as listed (`EXT-X-PART`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartEntry {
    pub duration: f64,
    pub independent: bool,
}

/// A segment, complete or still receiving parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub msn: u64,
    pub duration: f64,
    pub parts: Vec<PartEntry>,
    /// Follows a publisher change or a pipeline restart: `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// The initialisation segment its fragments need (`EXT-X-MAP`).
    pub init: String,
}

/// The wall-clock time of a segment's first sample (Unix milliseconds), by sequence number.
pub type ProgramTime<'a> = &'a dyn Fn(u64) -> Option<i64>;

/// `#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:05:25.151Z` for `ms`, when known.
pub fn write_program_time(out: &mut String, ms: Option<i64>) {
    if let Some(ms) = ms {
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(ms));
    }
}

/// Unix milliseconds as an RFC 3339 UTC date-time with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    vitrine_core::time::Timestamp(ms).to_string()
}

/// File name of a complete segment.
pub fn segment_name(msn: u64) -> String {
    format!("s{msn}.m4s")
}

/// File name of a partial segment.
pub fn part_name(msn: u64, index: u32) -> String {
    format!("p{msn}.{index}.m4s")
}

/// Everything one rendition's playlists say. Serialisable: it is the recording's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaPlaylist {
    /// Configured segment length, seconds.
    pub segment_target: f64,
    pub part_target: f64,
    pub window: usize,
    /// Complete segments of the whole recording, oldest first.
    pub segments: Vec<SegmentEntry>,
    /// The segment receiving parts.
    pub open: Option<SegmentEntry>,
    /// The next segment starts a discontinuity with this init segment.
    next_discontinuity: bool,
    init: String,
    /// The recording is finished: `EXT-X-ENDLIST`.
    pub ended: bool,
    /// Where the next part will go, once a pipeline runs (the preload hint).
    pub hint: Option<(u64, u32)>,
    /// No later segment is numbered below it (numbers a lost producer may have used).
    #[serde(default)]
    floor: u64,
}

impl MediaPlaylist {
    pub fn new(segment_target: f64, part_target: f64, window: usize) -> Self {
        Self {
            segment_target,
            part_target,
            window: window.max(1),
            segments: Vec::new(),
            open: None,
            next_discontinuity: false,
            init: String::new(),
            ended: false,
            hint: None,
            floor: 0,
        }
    }

    /// The sequence number the next segment must use (continuing after a restart).
    pub fn next_msn(&self) -> u64 {
        self.open
            .as_ref()
            .or(self.segments.last())
            .map_or(0, |s| s.msn + 1)
            .max(self.floor)
    }

    /// Numbers later segments from `msn` on at least. The numbers skipped are never listed:
    /// the live playlist starts after the gap (a player numbers segments by their position).
    pub fn skip_to(&mut self, msn: u64) {
        self.floor = self.floor.max(msn);
    }

    /// Index of the first segment the live playlist shows: the window, and nothing before a
    /// gap in the numbers.
    fn live_first(&self) -> usize {
        let first = self.segments.len().saturating_sub(self.window);
        let chain = |a: &SegmentEntry, b: &SegmentEntry| a.msn + 1 == b.msn;
        if let (Some(last), Some(open)) = (self.segments.last(), &self.open)
            && !chain(last, open)
        {
            return self.segments.len();
        }
        (first + 1..self.segments.len())
            .rev()
            .find(|&i| !chain(&self.segments[i - 1], &self.segments[i]))
            .unwrap_or(first)
    }

    /// The newest listed part: its segment's sequence number and its index.
    pub fn last_part(&self) -> Option<(u64, u32)> {
        let with_parts =
            |s: &SegmentEntry| (!s.parts.is_empty()).then(|| (s.msn, s.parts.len() as u32 - 1));
        self.open
            .as_ref()
            .and_then(with_parts)
            .or_else(|| self.segments.last().and_then(with_parts))
    }

    /// `EXT-X-RENDITION-REPORT` for this rendition at `uri`, seen from a sibling's live
    /// playlist, so a player switching to it asks for its next part at once (RFC 8216bis
    /// 4.4.5.4); `None` once ended or before its first part.
    pub fn report(&self, uri: &str) -> Option<String> {
        let (msn, part) = self.last_part().filter(|_| !self.ended)?;
        Some(format!(
            "#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN={msn},LAST-PART={part}\n"
        ))
    }

    /// A new encoder run begins: its segments use `init`, after a discontinuity unless it is
    /// the first run of the recording. Reopens an ended recording.
    pub fn begin_run(&mut self, init: String) {
        self.next_discontinuity = !self.segments.is_empty() || self.open.is_some();
        self.open = None;
        self.init = init;
        self.ended = false;
    }

    pub fn add_part(&mut self, msn: u64, part: PartEntry) {
        let discontinuity = self.next_discontinuity;
        let init = self.init.clone();
        let open = self.open.get_or_insert_with(|| SegmentEntry {
            msn,
            duration: 0.0,
            parts: Vec::new(),
            discontinuity,
            init,
        });
        self.next_discontinuity = false;
        open.parts.push(part);
        // A full segment ends at the next keyframe, which is due with the next part.
        let per_segment = (self.segment_target / self.part_target).round().max(1.0) as usize;
        self.hint = Some(if open.parts.len() >= per_segment {
            (msn + 1, 0)
        } else {
            (msn, open.parts.len() as u32)
        });
    }

    pub fn finish_segment(&mut self, msn: u64, duration: f64) {
        if let Some(mut open) = self.open.take() {
            open.msn = msn;
            open.duration = duration;
            self.segments.push(open);
        }
        self.hint = Some((msn + 1, 0));
    }

    /// The encoder run stopped; no part is expected until the next run.
    pub fn pause(&mut self) {
        self.open = None;
        self.hint = None;
    }

    /// The recording is complete (`EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        self.pause();
        self.ended = true;
    }

    /// Whether a blocking reload for `msn` (and `part`) can be answered: that segment is
    /// complete, or that part of it is listed, or the stream moved past it.
    pub fn has(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended || self.segments.last().is_some_and(|s| s.msn >= msn) {
            return true;
        }
        match (part, &self.open) {
            (Some(p), Some(open)) => {
                open.msn > msn || (open.msn == msn && open.parts.len() as u32 > p)
            }
            (_, Some(open)) => open.msn > msn,
            (_, None) => false,
        }
    }

    /// Whether `part` of segment `msn` is listed (complete segments keep their parts).
    pub fn has_part(&self, msn: u64, index: u32) -> bool {
        let listed = |s: &SegmentEntry| s.msn == msn && (s.parts.len() as u32) > index;
        self.open.as_ref().is_some_and(listed) || self.segments.iter().rev().take(4).any(listed)
    }

    /// Whether a part request can no longer be satisfied (its segment ended without it).
    pub fn part_gone(&self, msn: u64, index: u32) -> bool {
        !self.has_part(msn, index)
            && (self.ended
                || self.segments.last().is_some_and(|s| s.msn >= msn)
                || self.hint.is_none())
    }

    fn target_duration(&self) -> u64 {
        let longest = self
            .segments
            .iter()
            .map(|s| s.duration)
            .fold(self.segment_target, f64::max);
        longest.round().max(1.0) as u64
    }

    /// The playlist a player polls: VOD once ended, LL-HLS live otherwise.
    pub fn render(&self) -> String {
        self.render_with(&|_| None)
    }

    /// [`Self::render`] with `EXT-X-PROGRAM-DATE-TIME` on every segment `program_time` knows
    /// (Unix milliseconds of its first sample): players line renditions up by it (subtitles
    /// with the media, in particular) and show wall-clock time.
    pub fn render_with(&self, program_time: ProgramTime) -> String {
        self.render_delta(program_time, false)
    }

    /// [`Self::render_with`], as a delta update when `skip` (a player asked `_HLS_skip=YES`):
    /// the live window's segments older than `CAN-SKIP-UNTIL` replaced by `EXT-X-SKIP` (RFC
    /// 8216bis 6.2.5.1), which the player fills from its earlier copy. A full playlist when
    /// the window offers no skip.
    pub fn render_delta(&self, program_time: ProgramTime, skip: bool) -> String {
        if self.ended {
            self.render_vod(program_time)
        } else {
            self.render_live(program_time, skip)
        }
    }

    /// `CAN-SKIP-UNTIL`: six target durations (the least RFC 8216bis 4.4.3.8 allows), offered
    /// only when the window is longer, so that a delta update has something to leave out.
    pub fn can_skip_until(&self) -> Option<f64> {
        let until = 6.0 * self.target_duration() as f64;
        (self.window as f64 * self.segment_target > until).then_some(until)
    }

    /// How many of `shown` (oldest first) a delta update leaves out: those starting at least
    /// `until` seconds before the playlist's end.
    fn skippable(&self, shown: &[SegmentEntry], until: f64) -> usize {
        let open: f64 = self
            .open
            .as_ref()
            .map_or(0.0, |o| o.parts.iter().map(|p| p.duration).sum());
        let mut from_end = open;
        let mut keep = 0;
        for s in shown.iter().rev() {
            from_end += s.duration;
            if from_end >= until {
                break;
            }
            keep += 1;
        }
        shown.len() - keep
    }

    /// The first segment the live playlist lists (subtitle playlists start at the same one,
    /// so players line them up).
    pub fn window_first_msn(&self) -> Option<u64> {
        let first = self.live_first();
        self.segments
            .get(first)
            .or(self.open.as_ref())
            .map(|s| s.msn)
    }

    fn render_live(&self, program_time: ProgramTime, skip: bool) -> String {
        let target = self.target_duration();
        let first = self.live_first();
        let shown = &self.segments[first..];
        let can_skip = self.can_skip_until();
        let skipped = match can_skip {
            Some(until) if skip => self.skippable(shown, until),
            _ => 0,
        };
        let mut out = String::with_capacity(256 + 120 * shown.len());
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},HOLD-BACK={:.3}{}\n\
             #EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.part_target,
            3.0 * self.part_target,
            3.0 * target as f64,
            can_skip.map_or(String::new(), |c| format!(",CAN-SKIP-UNTIL={c:.3}")),
            shown
                .first()
                .or(self.open.as_ref())
                .map_or(self.next_msn(), |s| s.msn),
            self.segments[..first]
                .iter()
                .filter(|s| s.discontinuity)
                .count(),
        );
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        // Parts stay listed for the last segments only (about three target durations).
        let with_parts = shown.len().saturating_sub(2);
        let mut map = "";
        let listed = shown.iter().chain(self.open.as_ref()).enumerate();
        for (i, s) in listed.skip(skipped) {
            // Tagged even first in the window, so the discontinuity sequence stays consistent.
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if s.init != map {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", s.init);
                map = &s.init;
            }
            write_program_time(&mut out, program_time(s.msn));
            if i >= with_parts {
                for (index, p) in s.parts.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={:.5},URI=\"{}\"{}",
                        p.duration,
                        part_name(s.msn, index as u32),
                        if p.independent {
                            ",INDEPENDENT=YES"
                        } else {
                            ""
                        }
                    );
                }
            }
            if self.open.as_ref().is_none_or(|o| !std::ptr::eq(o, s)) {
                let _ = write!(out, "#EXTINF:{:.5},\n{}\n", s.duration, segment_name(s.msn));
            }
        }
        if let Some((msn, part)) = self.hint {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                part_name(msn, part)
            );
        }
        out
    }

    fn render_vod(&self, program_time: ProgramTime) -> String {
        let mut out = String::with_capacity(128 + 40 * self.segments.len());
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.target_duration(),
            self.segments.first().map_or(0, |s| s.msn),
        );
        let mut map = "";
        for s in &self.segments {
            if s.discontinuity && !map.is_empty() {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if s.init != map {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", s.init);
                map = &s.init;
            }
            write_program_time(&mut out, program_time(s.msn));
            let _ = write!(out, "#EXTINF:{:.5},\n{}\n", s.duration, segment_name(s.msn));
        }
        out.push_str("#EXT-X-ENDLIST\n");
        out
    }
}

#[cfg(test)]
#[path = "playlist_tests.rs"]
mod tests;
