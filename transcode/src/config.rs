//! The HLS configuration: the ladder of renditions, segment and part lengths, the encoder, and
//! how long a stream that stopped waits for its publisher before its recording is finalised.

use serde::Deserialize;
use std::time::Duration;

/// One rung of the ladder as configured: the output is never taller than the source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// Output height in pixels; the width follows the source's aspect ratio.
    pub height: u32,
    /// Target video bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Output frame rate.
    #[serde(default = "default_fps")]
    pub fps: u32,
}

fn default_fps() -> u32 {
    30
}

/// Which H.264 encoder element the ladder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// NVENC, then VA-API, then x264: the first one this machine's GStreamer has.
    #[default]
    Auto,
    X264,
    /// `nvh264enc` (NVIDIA consumer/workstation GPUs; datacenter A100/H100 have no NVENC).
    Nvh264,
    /// `vaapih264enc` (Intel/AMD GPUs through VA-API).
    Vaapih264,
}

/// Everything the transcoder and the HLS packager are told.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsConfig {
    /// Whether live streams are transcoded to HLS at all.
    pub enabled: bool,
    pub renditions: Vec<RenditionSpec>,
    /// Segment length; also the GOP length, so every rendition's segments start on aligned
    /// keyframes.
    pub segment: Duration,
    /// LL-HLS partial segment length (default 0.4 s: players hold back three parts).
    pub part: Duration,
    /// Complete segments listed in a live playlist (the whole recording stays on storage).
    pub window_segments: usize,
    pub encoder: EncoderChoice,
    /// x264 `speed-preset` (ultrafast .. veryslow).
    pub x264_preset: String,
    pub audio_bitrate_kbps: u32,
    /// How long a stream whose publisher left waits for it to come back (continuing the same
    /// playlists after an `EXT-X-DISCONTINUITY`) before the recording becomes a replay.
    pub finalize_after: Duration,
    /// Where media goes: `None` for the local disk under the data dir, or an S3-compatible
    /// bucket `s3://bucket[/prefix]` (see [`crate::object_media::ObjectMedia::s3`]).
    pub storage: Option<String>,
    /// CDNs players reach the origin through, in the order they should prefer them: with any,
    /// master playlists are steered (see [`crate::steering`]).
    pub pathways: Vec<crate::steering::Pathway>,
    /// Languages of the WebVTT subtitle renditions live streams get (the live captions' and
    /// their translations'); set by the binary from the subtitles settings, empty without
    /// captions.
    pub subtitle_languages: Vec<String>,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            renditions: vec![
                RenditionSpec {
                    height: 1080,
                    bitrate_kbps: 5000,
                    fps: 30,
                },
                RenditionSpec {
                    height: 720,
                    bitrate_kbps: 2800,
                    fps: 30,
                },
                RenditionSpec {
                    height: 480,
                    bitrate_kbps: 1400,
                    fps: 30,
                },
                RenditionSpec {
                    height: 360,
                    bitrate_kbps: 800,
                    fps: 30,
                },
            ],
            segment: Duration::from_secs(2),
            part: Duration::from_millis(400),
            window_segments: 6,
            encoder: EncoderChoice::Auto,
            x264_preset: "veryfast".into(),
            audio_bitrate_kbps: 128,
            finalize_after: Duration::from_secs(30),
            storage: None,
            pathways: Vec::new(),
            subtitle_languages: Vec::new(),
        }
    }
}

/// A configuration the packager cannot honour.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("hls: at least one rendition is needed")]
    NoRenditions,
    #[error(
        "hls: rendition {0}p: height must be even, 64 to 4320, bitrate 50 to 100000 kbit/s, fps 1 to 120"
    )]
    BadRendition(u32),
    #[error("hls: two renditions have height {0}p")]
    DuplicateHeight(u32),
    #[error("hls: segment must be 1 to 10 s and a whole number of parts of 0.1 to 2 s")]
    BadTiming,
    #[error("hls: window_segments must be 3 to 100")]
    BadWindow,
    #[error("hls: storage must be s3://bucket[/prefix]")]
    BadStorage,
    #[error("hls: pathways: {0}")]
    BadPathways(String),
}

impl HlsConfig {
    /// Checks the limits a player and the segmenter rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.renditions.is_empty() {
            return Err(ConfigError::NoRenditions);
        }
        let mut heights = std::collections::HashSet::new();
        for r in &self.renditions {
            if r.height % 2 != 0
                || !(64..=4320).contains(&r.height)
                || !(50..=100_000).contains(&r.bitrate_kbps)
                || !(1..=120).contains(&r.fps)
            {
                return Err(ConfigError::BadRendition(r.height));
            }
            if !heights.insert(r.height) {
                return Err(ConfigError::DuplicateHeight(r.height));
            }
        }
        let (seg, part) = (self.segment.as_millis(), self.part.as_millis());
        if !(1000..=10_000).contains(&seg) || !(100..=2000).contains(&part) || seg % part != 0 {
            return Err(ConfigError::BadTiming);
        }
        if !(3..=100).contains(&self.window_segments) {
            return Err(ConfigError::BadWindow);
        }
        if let Some(url) = &self.storage
            && !url
                .strip_prefix("s3://")
                .is_some_and(|rest| !rest.starts_with('/') && !rest.is_empty())
        {
            return Err(ConfigError::BadStorage);
        }
        crate::steering::check(&self.pathways).map_err(ConfigError::BadPathways)?;
        Ok(())
    }

    /// Parts per segment.
    pub fn parts_per_segment(&self) -> u32 {
        (self.segment.as_millis() / self.part.as_millis()) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = HlsConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.parts_per_segment(), 5);
    }

    #[test]
    fn bad_settings_are_named() {
        let c = HlsConfig {
            part: Duration::from_millis(300),
            ..HlsConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::BadTiming));
        let mut c = HlsConfig::default();
        c.renditions.push(RenditionSpec {
            height: 720,
            bitrate_kbps: 900,
            fps: 30,
        });
        assert_eq!(c.validate(), Err(ConfigError::DuplicateHeight(720)));
        c.renditions = vec![RenditionSpec {
            height: 721,
            bitrate_kbps: 900,
            fps: 30,
        }];
        assert_eq!(c.validate(), Err(ConfigError::BadRendition(721)));
        c.renditions.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoRenditions));
    }
}
