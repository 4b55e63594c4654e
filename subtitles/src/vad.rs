//! Voice activity by frame energy: where in a recording someone speaks. Whisper invents text
//! when fed silence, so only the speech regions found here are transcribed, and no cue can
//! fall inside a pause. Pure: samples in, sample ranges out.

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
}
