//! Cuts one track's samples into LL-HLS parts and segments. Segments begin on the timeline's
//! grid (multiples of the segment length from the stream's time zero) at a keyframe, so every
//! rendition of a ladder cuts at the same instants; parts never exceed the part target. Sans-IO:
//! samples in, encoded fragments and cut points out.

use crate::fmp4::{Sample, Track};
use bytes::Bytes;
use std::time::Duration;

/// Something the segmenter finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Cut {
    /// A partial segment: one `moof`+`mdat` fragment. A segment is its parts concatenated.
    Part {
        msn: u64,
        index: u32,
        /// Seconds.
        duration: f64,
        /// Starts with a keyframe.
        independent: bool,
        /// Samples in the part (for latency accounting).
        samples: usize,
        bytes: Bytes,
    },
    /// Segment `msn` is complete (its parts were all emitted before).
    Segment { msn: u64, duration: f64 },
}

/// The segmenter of one track (one rendition, or the audio).
#[derive(Debug)]
pub struct Segmenter {
    track: Track,
    video: bool,
    segment_ticks: u64,
    part_ticks: u64,
    /// Grid line at which the open segment may end; `None` when no segment is open.
    boundary: Option<u64>,
    msn: u64,
    part: u32,
    sequence: u32,
    pending: Vec<Sample>,
    pending_ticks: u64,
    segment_ticks_so_far: u64,
}

impl Segmenter {
    /// A segmenter whose first segment will be `first_msn`.
    pub fn new(track: Track, segment: Duration, part: Duration, first_msn: u64) -> Self {
        let ticks =
            |d: Duration| (d.as_nanos() * u128::from(track.timescale) / 1_000_000_000) as u64;
        Self {
            video: matches!(track.kind, crate::fmp4::TrackKind::Video { .. }),
            segment_ticks: ticks(segment).max(1),
            part_ticks: ticks(part).max(1),
            track,
            boundary: None,
            msn: first_msn,
            part: 0,
            sequence: 1,
            pending: Vec::new(),
            pending_ticks: 0,
            segment_ticks_so_far: 0,
        }
    }

    pub fn track(&self) -> &Track {
        &self.track
    }

    /// The segment the next part belongs to, and that part's index (the preload hint).
    pub fn next_part(&self) -> (u64, u32) {
        (self.msn, self.part)
    }

    /// How far before a grid line a video keyframe still starts the segment: the encoders
    /// place the keyframe forced for a line on their own frame grid, which may be a frame or
    /// two early (cutting only at or past the line would wait a whole GOP for the next one,
    /// holding every part of the segment back that long). Keyframes come only on the grid.
    fn early_ticks(&self) -> u64 {
        if self.video { self.part_ticks / 2 } else { 0 }
    }

    fn grid_after(&self, dts: u64) -> u64 {
        (dts / self.segment_ticks + 1) * self.segment_ticks
    }

    /// Whether [`Self::push`] would keep a sample: a video track waits for its first keyframe.
    pub fn takes(&self, keyframe: bool) -> bool {
        self.boundary.is_some() || keyframe || !self.video
    }

    /// Takes one sample (in decode order) and returns what it completed.
    pub fn push(&mut self, sample: Sample) -> Vec<Cut> {
        let mut cuts = Vec::new();
        match self.boundary {
            None => {
                if !self.takes(sample.keyframe) {
                    return cuts; // a decoder can only start at a keyframe
                }
                self.boundary = Some(self.grid_after(sample.dts));
            }
            Some(boundary)
                if sample.dts + self.early_ticks() >= boundary
                    && (sample.keyframe || !self.video) =>
            {
                self.close_segment(&mut cuts);
                self.boundary = Some(self.grid_after(sample.dts + self.early_ticks()));
            }
            Some(_) => {}
        }
        // Parts stay within the target; 1 % slack absorbs tick rounding.
        let slack = self.part_ticks / 100;
        if !self.pending.is_empty()
            && self.pending_ticks + u64::from(sample.duration) > self.part_ticks + slack
        {
            self.close_part(&mut cuts);
        }
        self.pending_ticks += u64::from(sample.duration);
        self.pending.push(sample);
        cuts
    }

    /// Ends the open segment (the publisher left or the pipeline stops).
    pub fn flush(&mut self) -> Vec<Cut> {
        let mut cuts = Vec::new();
        if self.boundary.take().is_some() {
            self.close_segment(&mut cuts);
        }
        cuts
    }

    fn close_part(&mut self, cuts: &mut Vec<Cut>) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = self.track.fragment(self.sequence, &self.pending);
        let independent = self.pending[0].keyframe;
        cuts.push(Cut::Part {
            msn: self.msn,
            index: self.part,
            duration: self.seconds(self.pending_ticks),
            independent,
            samples: self.pending.len(),
            bytes,
        });
        self.segment_ticks_so_far += self.pending_ticks;
        self.sequence = self.sequence.wrapping_add(1);
        self.part += 1;
        self.pending.clear();
        self.pending_ticks = 0;
    }

    fn close_segment(&mut self, cuts: &mut Vec<Cut>) {
        self.close_part(cuts);
        if self.part > 0 {
            cuts.push(Cut::Segment {
                msn: self.msn,
                duration: self.seconds(self.segment_ticks_so_far),
            });
            self.msn += 1;
        }
        self.part = 0;
        self.segment_ticks_so_far = 0;
    }

    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / f64::from(self.track.timescale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::TrackKind;
    use crate::fmp4::tests::video;

    fn frame(n: u64, key: bool) -> Sample {
        Sample {
            dts: n * 3000,
            duration: 3000,
            keyframe: key,
            data: Bytes::from(vec![n as u8; 10]),
        }
    }

    fn run(seg: &mut Segmenter, frames: impl IntoIterator<Item = Sample>) -> Vec<Cut> {
        let mut cuts: Vec<Cut> = frames.into_iter().flat_map(|f| seg.push(f)).collect();
        cuts.extend(seg.flush());
        cuts
    }

    /// The durations of the segments `cuts` completed.
    fn durations(cuts: &[Cut]) -> Vec<f64> {
        cuts.iter()
            .filter_map(|c| match c {
                Cut::Segment { duration, .. } => Some(*duration),
                _ => None,
            })
            .collect()
    }

    /// Video in 2 s segments of 0.5 s parts, the first numbered `first_msn`.
    fn two_second_video(first_msn: u64) -> Segmenter {
        Segmenter::new(
            video(),
            Duration::from_secs(2),
            Duration::from_millis(500),
            first_msn,
        )
    }

    fn audio() -> Track {
        Track {
            timescale: 48_000,
            kind: TrackKind::Audio {
                sample_rate: 48_000,
                channels: 2,
                asc: Bytes::from_static(&[0x11, 0x90]),
            },
        }
    }

    #[test]
    fn two_second_segments_of_four_parts_on_keyframes() {
        let mut seg = two_second_video(10);
        // 6 s at 30 fps, a keyframe every 60 frames.
        let cuts = run(&mut seg, (0..180).map(|n| frame(n, n % 60 == 0)));
        let segments: Vec<(u64, f64)> = cuts
            .iter()
            .filter_map(|c| match c {
                Cut::Segment { msn, duration } => Some((*msn, *duration)),
                _ => None,
            })
            .collect();
        assert_eq!(segments, vec![(10, 2.0), (11, 2.0), (12, 2.0)]);
        let parts: Vec<(u64, u32, bool)> = cuts
            .iter()
            .filter_map(|c| match c {
                Cut::Part {
                    msn,
                    index,
                    independent,
                    duration,
                    ..
                } => {
                    assert!(*duration <= 0.5 + 1e-9);
                    Some((*msn, *index, *independent))
                }
                _ => None,
            })
            .collect();
        assert_eq!(parts.len(), 12);
        assert_eq!(parts[0], (10, 0, true));
        assert_eq!(parts[1], (10, 1, false));
        assert_eq!(parts[4], (11, 0, true));
    }

    #[test]
    fn a_video_track_takes_nothing_before_its_first_keyframe() {
        let mut seg = two_second_video(0);
        assert!(!seg.takes(false));
        assert!(seg.takes(true));
        assert!(seg.push(frame(0, true)).is_empty());
        assert!(seg.takes(false), "once started, every frame");
    }

    #[test]
    fn waits_for_a_keyframe_and_for_a_late_one() {
        let mut seg = two_second_video(0);
        // Starts mid-GOP at frame 5; the keyframe meant for 2 s comes at 2.1 s.
        let cuts = run(
            &mut seg,
            (5..150).map(|n| frame(n, n == 10 || n == 63 || n == 120)),
        );
        let segments = durations(&cuts);
        // 10..63 (53 frames), 63..120 (57), 120..150 (30).
        assert_eq!(segments, vec![53.0 / 30.0, 57.0 / 30.0, 1.0]);
    }

    #[test]
    fn a_keyframe_a_little_before_the_line_starts_the_segment() {
        let mut seg = two_second_video(0);
        // Keyframes two frames before each 2 s line (frames 58, 118): each starts a segment
        // there, rather than the GOP after it.
        let cuts = run(
            &mut seg,
            (0..150).map(|n| frame(n, n == 0 || n == 58 || n == 118)),
        );
        let segments = durations(&cuts);
        assert_eq!(segments, vec![58.0 / 30.0, 2.0, 32.0 / 30.0]);
        // Audio has no keyframes to wait for: it cuts at the line itself.
        let mut audio = Segmenter::new(
            audio(),
            Duration::from_secs(2),
            Duration::from_millis(500),
            0,
        );
        assert!(
            audio
                .push(Sample {
                    dts: 0,
                    duration: 1024,
                    keyframe: true,
                    data: Bytes::new()
                })
                .is_empty()
        );
        let early = audio.push(Sample {
            dts: 95_000,
            duration: 1024,
            keyframe: true,
            data: Bytes::new(),
        });
        assert!(!early.iter().any(|c| matches!(c, Cut::Segment { .. })));
    }

    #[test]
    fn parts_concatenate_into_their_segment() {
        let mut seg = two_second_video(0);
        let cuts = run(&mut seg, (0..60).map(|n| frame(n, n == 0)));
        let mut sequences = Vec::new();
        for c in &cuts {
            if let Cut::Part { bytes, .. } = c {
                let boxes = crate::fmp4::boxes(bytes);
                assert_eq!(boxes.len(), 2);
                let mfhd = bytes.windows(4).position(|w| w == b"mfhd").unwrap();
                sequences.push(u32::from_be_bytes(
                    bytes[mfhd + 8..mfhd + 12].try_into().unwrap(),
                ));
            }
        }
        assert_eq!(
            sequences,
            vec![1, 2, 3, 4],
            "fragment numbers increase across parts"
        );
    }

    #[test]
    fn audio_cuts_on_the_grid_without_keyframes() {
        let mut seg = Segmenter::new(
            audio(),
            Duration::from_secs(2),
            Duration::from_millis(500),
            0,
        );
        let frames = (0..200u64).map(|n| Sample {
            dts: n * 1024,
            duration: 1024,
            keyframe: true,
            data: Bytes::from_static(&[0; 4]),
        });
        let cuts = run(&mut seg, frames);
        let first = cuts.iter().find_map(|c| match c {
            Cut::Segment { duration, .. } => Some(*duration),
            _ => None,
        });
        // 94 frames of 1024 reach 2.005 s: the first frame at or past the 2 s line opens the next.
        assert_eq!(first, Some(94.0 * 1024.0 / 48_000.0));
    }
}
