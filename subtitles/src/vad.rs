//! Voice activity by frame energy: where someone speaks. Whisper invents text when fed
//! silence, so only speech is transcribed and no cue can fall inside a pause. Two forms of the
//! same rule: [`speech_regions`] over a whole recording (its noise floor is a percentile of the
//! recording) and [`OnlineVad`] over live audio (its floor follows the room as it goes). Pure:
//! samples in, sample positions out.

use std::ops::Range;

/// How speech is told from silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Analysis frame, milliseconds.
    pub frame_ms: u32,
    /// A frame is speech when this many dB above the recording's noise floor...
    pub above_floor_db: f32,
    /// ...and above this absolute level (dBFS), so digital silence is never speech.
    pub min_level_dbfs: f32,
    /// Pauses shorter than this stay inside one region.
    pub min_silence_ms: u32,
    /// Regions shorter than this (clicks, breaths) are dropped.
    pub min_speech_ms: u32,
    /// Kept around each region so first and last syllables are not cut.
    pub pad_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            frame_ms: 30,
            above_floor_db: 15.0,
            min_level_dbfs: -45.0,
            min_silence_ms: 500,
            min_speech_ms: 200,
            pad_ms: 150,
        }
    }
}

fn dbfs(frame: &[f32]) -> f32 {
    let power = frame.iter().map(|s| s * s).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * power.max(1e-12).log10()
}

/// The speech regions of `samples` (mono at `rate` Hz), in order, as sample ranges.
pub fn speech_regions(samples: &[f32], rate: u32, cfg: &VadConfig) -> Vec<Range<usize>> {
    let frame = (rate as usize * cfg.frame_ms as usize / 1000).max(1);
    let levels: Vec<f32> = samples.chunks(frame).map(dbfs).collect();
    if levels.is_empty() {
        return Vec::new();
    }
    // The noise floor: the 10th percentile of frame levels.
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = sorted[sorted.len() / 10];
    let threshold = (floor + cfg.above_floor_db).max(cfg.min_level_dbfs);
    let frames = |ms: u32| (ms as usize).div_ceil(cfg.frame_ms.max(1) as usize);
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        if *level < threshold {
            continue;
        }
        match runs.last_mut() {
            Some(last) if i - last.end <= frames(cfg.min_silence_ms) => last.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    let pad = frames(cfg.pad_ms);
    runs.into_iter()
        .filter(|r| r.len() >= frames(cfg.min_speech_ms))
        .map(|r| {
            let start = r.start.saturating_sub(pad) * frame;
            let end = ((r.end + pad) * frame).min(samples.len());
            start..end
        })
        .collect()
}

/// The floor rises this fast through sustained sound (dB per second), so a room that gets
/// noisier is learnt while speech (much louder than the floor) stays speech for minutes.
const FLOOR_RISE_DB_PER_S: f32 = 1.0;

/// A change of voice activity in live audio, at a sample position counted from the first
/// sample the detector heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech starts here (the padding before the first loud frame included).
    Start(u64),
    /// Speech ended here (padding after the last loud frame included): a pause at least
    /// `min_silence_ms` long followed.
    End(u64),
}

/// Voice activity of live audio, frame by frame. A pause shorter than `min_silence_ms` stays
/// inside the speech; a burst shorter than `min_speech_ms` (a click, a cough) never starts it.
#[derive(Debug, Clone)]
pub struct OnlineVad {
    cfg: VadConfig,
    frame: usize,
    /// Samples of the frame being filled.
    pending: Vec<f32>,
    /// Frames analysed so far.
    frames: u64,
    /// The room's noise level: the first frame's (at most quiet enough for the absolute
    /// minimum to count), then down at once to any quieter frame and slowly up through
    /// sustained sound.
    floor: Option<f32>,
    speaking: bool,
    /// Consecutive loud frames (before speech starts) or quiet frames (during speech).
    run: u64,
    /// Where the current run of loud frames began (a start candidate).
    run_start: u64,
    last_loud: u64,
}

impl OnlineVad {
    pub fn new(cfg: VadConfig, rate: u32) -> Self {
        let frame = (rate as usize * cfg.frame_ms as usize / 1000).max(1);
        Self {
            cfg,
            frame,
            pending: Vec::with_capacity(frame),
            frames: 0,
            floor: None,
            speaking: false,
            run: 0,
            run_start: 0,
            last_loud: 0,
        }
    }

    /// Whether speech is under way (started and not yet ended).
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    fn frames_of(&self, ms: u32) -> u64 {
        u64::from(ms).div_ceil(u64::from(self.cfg.frame_ms.max(1)))
    }

    /// Feeds the next samples; returns the changes they complete, in order.
    pub fn push(&mut self, samples: &[f32]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.frame - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.frame {
                let level = dbfs(&self.pending);
                self.pending.clear();
                if let Some(e) = self.frame_level(level) {
                    events.push(e);
                }
            }
        }
        events
    }

    fn frame_level(&mut self, level: f32) -> Option<VadEvent> {
        let index = self.frames;
        self.frames += 1;
        let frame_s = self.cfg.frame_ms as f32 / 1000.0;
        let floor = match self.floor {
            Some(f) if level >= f => f + FLOOR_RISE_DB_PER_S * frame_s,
            Some(_) => level,
            // Audio that starts loud is not taken for the floor.
            None => level.min(self.cfg.min_level_dbfs - self.cfg.above_floor_db),
        };
        self.floor = Some(floor);
        let threshold = (floor + self.cfg.above_floor_db).max(self.cfg.min_level_dbfs);
        let loud = level >= threshold;
        let pad = self.frames_of(self.cfg.pad_ms);
        let at = |frame: u64| frame * self.frame as u64;
        if self.speaking {
            if loud {
                self.run = 0;
                self.last_loud = index;
                return None;
            }
            self.run += 1;
            if self.run >= self.frames_of(self.cfg.min_silence_ms) {
                self.speaking = false;
                self.run = 0;
                return Some(VadEvent::End(
                    at(self.last_loud + 1 + pad).min(at(index + 1)),
                ));
            }
            return None;
        }
        if !loud {
            self.run = 0;
            return None;
        }
        if self.run == 0 {
            self.run_start = index;
        }
        self.run += 1;
        if self.run >= self.frames_of(self.cfg.min_speech_ms) {
            self.speaking = true;
            self.run = 0;
            self.last_loud = index;
            return Some(VadEvent::Start(at(self.run_start.saturating_sub(pad))));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(seconds: f32, amplitude: f32) -> Vec<f32> {
        (0..(seconds * 16_000.0) as usize)
            .map(|i| amplitude * (i as f32 * 0.07).sin())
            .collect()
    }

    #[test]
    fn finds_speech_between_silences() {
        let mut audio = vec![0.0; 16_000]; // 1 s of silence
        audio.extend(tone(1.5, 0.3));
        audio.extend(vec![0.0; 32_000]); // 2 s
        audio.extend(tone(0.8, 0.3));
        audio.extend(vec![0.0; 8_000]);
        let regions = speech_regions(&audio, 16_000, &VadConfig::default());
        assert_eq!(regions.len(), 2, "{regions:?}");
        let secs = |s: usize| s as f32 / 16_000.0;
        assert!(
            (secs(regions[0].start) - 1.0).abs() < 0.2 && (secs(regions[0].end) - 2.5).abs() < 0.2
        );
        assert!(
            (secs(regions[1].start) - 4.5).abs() < 0.2 && (secs(regions[1].end) - 5.3).abs() < 0.2
        );
    }

    #[test]
    fn short_pauses_and_clicks() {
        let mut audio = tone(1.0, 0.3);
        audio.extend(vec![0.0; 3_200]); // a 0.2 s pause stays inside
        audio.extend(tone(1.0, 0.3));
        audio.extend(vec![0.0; 16_000]);
        audio.extend(tone(0.05, 0.5)); // a click
        audio.extend(vec![0.0; 16_000]);
        assert_eq!(
            speech_regions(&audio, 16_000, &VadConfig::default()).len(),
            1
        );
        assert!(speech_regions(&vec![0.0; 48_000], 16_000, &VadConfig::default()).is_empty());
        assert!(speech_regions(&[], 16_000, &VadConfig::default()).is_empty());
    }

    #[test]
    fn live_detection_matches_the_recording_rule() {
        let mut audio = vec![0.0; 16_000];
        audio.extend(tone(1.5, 0.3));
        audio.extend(vec![0.0; 3_200]); // a 0.2 s pause stays inside
        audio.extend(tone(0.5, 0.3));
        audio.extend(vec![0.0; 32_000]);
        audio.extend(tone(0.05, 0.5)); // a click never starts speech
        audio.extend(vec![0.0; 16_000]);
        audio.extend(tone(0.8, 0.01)); // quiet but far above digital silence
        audio.extend(vec![0.0; 16_000]);
        let mut vad = OnlineVad::new(VadConfig::default(), 16_000);
        // Fed in uneven pieces, as network packets come.
        let events: Vec<VadEvent> = audio.chunks(317).flat_map(|c| vad.push(c)).collect();
        let secs = |s: u64| s as f32 / 16_000.0;
        assert_eq!(events.len(), 4, "{events:?}");
        let VadEvent::Start(a) = events[0] else {
            panic!()
        };
        let VadEvent::End(b) = events[1] else {
            panic!()
        };
        assert!(
            (secs(a) - 1.0).abs() < 0.2 && (secs(b) - 3.2).abs() < 0.2,
            "{a} {b}"
        );
        let VadEvent::Start(c) = events[2] else {
            panic!()
        };
        let VadEvent::End(d) = events[3] else {
            panic!()
        };
        assert!(
            (secs(c) - 6.25).abs() < 0.2 && (secs(d) - 7.05).abs() < 0.2,
            "{c} {d}"
        );
        assert!(!vad.speaking());
    }

    #[test]
    fn the_floor_follows_a_noisy_room() {
        // Steady noise at about -40 dBFS (above the absolute minimum) is learnt as the floor
        // within seconds and is not speech from then on; a voice 20 dB louder is.
        let noise: Vec<f32> = (0..320_000u64)
            .map(|i| 0.014 * ((i * 7919 % 1000) as f32 / 500.0 - 1.0))
            .collect();
        let mut vad = OnlineVad::new(VadConfig::default(), 16_000);
        vad.push(&noise[..160_000]);
        assert!(!vad.speaking());
        assert_eq!(vad.push(&noise[160_000..]), vec![]);
        let mut loud = noise[..16_000].to_vec();
        loud.iter_mut()
            .zip(tone(1.0, 0.3))
            .for_each(|(n, t)| *n += t);
        assert!(matches!(vad.push(&loud).first(), Some(VadEvent::Start(_))));
    }
}
