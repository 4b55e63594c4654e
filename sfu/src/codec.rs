//! The codecs Vitrine forwards, and the one fact about their payloads the router needs: does this
//! packet start a keyframe. Pure functions over bytes; no allocation.

use serde::Serialize;

/// Audio or video: each leg keeps one output stream per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// A codec Vitrine accepts from publishers and sends to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Codec {
    Vp8,
    /// H.264, constrained baseline, packetization-mode 1 only.
    H264,
    Opus,
}

impl Codec {
    /// Maps an RTP mime type (`video/VP8`, `audio/opus`, ...) to a supported codec.
    pub fn from_mime(mime: &str) -> Option<Self> {
        let (_, name) = mime.split_once('/')?;
        Self::from_encoding_name(name)
    }

    /// Maps an `a=rtpmap` encoding name to a supported codec.
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("vp8") {
            Some(Self::Vp8)
        } else if name.eq_ignore_ascii_case("h264") {
            Some(Self::H264)
        } else if name.eq_ignore_ascii_case("opus") {
            Some(Self::Opus)
        } else {
            None
        }
    }

    pub fn kind(self) -> MediaKind {
        match self {
            Self::Vp8 | Self::H264 => MediaKind::Video,
            Self::Opus => MediaKind::Audio,
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Vp8 | Self::H264 => 90_000,
            Self::Opus => 48_000,
        }
    }

    /// Whether the `a=fmtp` parameters describe a variant Vitrine forwards. For H.264 that is
    /// packetization-mode 1 with a baseline-compatible profile (`42xxxx`), which every browser
    /// decodes; the other codecs have no variant that matters here.
    pub fn accepts_fmtp(self, fmtp: &str) -> bool {
        match self {
            Self::H264 => {
                let mut mode1 = false;
                let mut baseline = true;
                for param in fmtp.split(';') {
                    let (key, value) = param.trim().split_once('=').unwrap_or((param.trim(), ""));
                    if key.eq_ignore_ascii_case("packetization-mode") {
                        mode1 = value.trim() == "1";
                    } else if key.eq_ignore_ascii_case("profile-level-id") {
                        baseline = value.trim().to_ascii_lowercase().starts_with("42");
                    }
                }
                mode1 && baseline
            }
            Self::Vp8 | Self::Opus => true,
        }
    }

    /// Whether this RTP payload begins a keyframe (a point where a decoder can start).
    pub fn is_keyframe(self, payload: &[u8]) -> bool {
        match self {
            Self::Vp8 => vp8_is_keyframe(payload),
            Self::H264 => h264_is_keyframe(payload),
            Self::Opus => true,
        }
    }
}

/// RFC 7741 payload descriptor, then the VP8 frame tag's inverse key-frame bit.
fn vp8_is_keyframe(p: &[u8]) -> bool {
    vp8_frame_start(p).is_some_and(|i| p.get(i).is_some_and(|tag| tag & 0x01 == 0))
}

/// Where the VP8 frame begins in an RTP payload that starts partition 0 of a frame (RFC 7741
/// payload descriptor skipped); `None` for any other packet or a truncated descriptor.
pub fn vp8_frame_start(p: &[u8]) -> Option<usize> {
    let &first = p.first()?;
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_index = first & 0x07;
    if !start_of_partition || partition_index != 0 {
        return None;
    }
    let mut i = 1;
    if extended {
        let &x = p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            let &pid = p.get(i)?;
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    (i < p.len()).then_some(i)
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// RFC 6184: an IDR slice or an SPS, alone, aggregated (STAP-A) or as the first fragment (FU-A).
fn h264_is_keyframe(p: &[u8]) -> bool {
    let Some(&header) = p.first() else {
        return false;
    };
    match header & 0x1f {
        NAL_FU_A => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR),
        _ => h264_nal_units(p).any(|(nal, _)| matches!(nal[0] & 0x1f, NAL_IDR | NAL_SPS)),
    }
}

/// The NAL units an RFC 6184 payload carries whole: the payload itself for a single NAL unit,
/// each aggregated unit of a STAP-A (flagged `false` when the packet ends inside it, then cut
/// at the end), nothing for a fragment. Every item is at least one byte.
pub fn h264_nal_units(p: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let stap = p.first().is_some_and(|h| h & 0x1f == NAL_STAP_A);
    let single = p
        .first()
        .is_some_and(|h| !matches!(h & 0x1f, NAL_STAP_A | NAL_FU_A));
    let mut i = 1;
    let aggregated = std::iter::from_fn(move || {
        if !stap || i + 2 >= p.len() {
            return None;
        }
        let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
        let start = i + 2;
        let end = start.saturating_add(size);
        i = end;
        Some((&p[start..end.min(p.len())], end <= p.len()))
    });
    single
        .then_some((p, true))
        .into_iter()
        .chain(aggregated.filter(|(nal, _)| !nal.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_and_fmtp() {
        assert_eq!(Codec::from_mime("video/VP8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_mime("audio/OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_mime("video/AV1"), None);
        assert!(Codec::H264.accepts_fmtp(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        ));
        assert!(!Codec::H264.accepts_fmtp("packetization-mode=0;profile-level-id=42e01f"));
        assert!(!Codec::H264.accepts_fmtp("packetization-mode=1;profile-level-id=640c1f"));
    }

    #[test]
    fn vp8_keyframes() {
        // S=1, PID=0, no extension; frame tag P bit = 0 -> keyframe.
        assert!(Codec::Vp8.is_keyframe(&[0x10, 0x00, 0x9d]));
        // Same with P bit = 1 -> interframe.
        assert!(!Codec::Vp8.is_keyframe(&[0x10, 0x01]));
        // Extended descriptor with 2-byte picture id.
        assert!(Codec::Vp8.is_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        // Not a partition start.
        assert!(!Codec::Vp8.is_keyframe(&[0x00, 0x00]));
        assert!(!Codec::Vp8.is_keyframe(&[]));
        assert!(!Codec::Vp8.is_keyframe(&[0x90]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(Codec::H264.is_keyframe(&[0x65, 0x88]));
        assert!(!Codec::H264.is_keyframe(&[0x41, 0x9a]));
        // STAP-A carrying SPS (7) then PPS (8).
        assert!(Codec::H264.is_keyframe(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        // FU-A start of an IDR and a continuation.
        assert!(Codec::H264.is_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!Codec::H264.is_keyframe(&[0x7c, 0x05, 0x00]));
        // Empty aggregation units are skipped, not read.
        assert!(!Codec::H264.is_keyframe(&[24, 0, 0, 0, 0]));
        // Truncated STAP-A never reads out of bounds.
        assert!(!Codec::H264.is_keyframe(&[0x78, 0xff]));
    }
}
