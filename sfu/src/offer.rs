//! Inspection of an SDP offer before any WebRTC state is created for it, so that a malformed
//! offer or one without a codec Vitrine forwards gets a 400 that says why, not an opaque failure
//! deep inside negotiation.

use crate::codec::{Codec, MediaKind};
use std::collections::HashMap;
use std::io::Cursor;

/// Largest SDP accepted (a browser offer is 3-8 KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("sdp is larger than {MAX_SDP_BYTES} bytes")]
    TooLarge,
    #[error("malformed sdp: {0}")]
    Malformed(String),
    #[error("the offer has no audio or video section")]
    NoMedia,
    #[error("no usable codec in the {kind} section: offered {offered}; accepted: {accepted}")]
    NoUsableCodec {
        kind: &'static str,
        offered: String,
        accepted: &'static str,
    },
}

/// What an acceptable offer contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    pub audio: Vec<Codec>,
    pub video: Vec<Codec>,
}

/// Checks that `sdp` parses and that each active audio/video section offers a codec we forward.
pub fn inspect_offer(sdp: &str) -> Result<OfferSummary, OfferError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(OfferError::TooLarge);
    }
    let parsed =
        rtc::sdp::description::session::SessionDescription::unmarshal(&mut Cursor::new(sdp))
            .map_err(|e| OfferError::Malformed(e.to_string()))?;
    let mut summary = OfferSummary::default();
    let mut sections = 0;
    for media in &parsed.media_descriptions {
        let kind = match media.media_name.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            _ => continue,
        };
        if media.media_name.port.value == 0 {
            continue; // a rejected or stopped section
        }
        sections += 1;
        let mut names: HashMap<&str, &str> = HashMap::new();
        let mut fmtps: HashMap<&str, &str> = HashMap::new();
        for attr in &media.attributes {
            let Some(value) = attr.value.as_deref() else {
                continue;
            };
            let Some((pt, rest)) = value.split_once(' ') else {
                continue;
            };
            match attr.key.as_str() {
                "rtpmap" => {
                    names.insert(pt, rest.split('/').next().unwrap_or(""));
                }
                "fmtp" => {
                    fmtps.insert(pt, rest);
                }
                _ => {}
            }
        }
        let usable: Vec<Codec> = media
            .media_name
            .formats
            .iter()
            .filter_map(|pt| {
                let codec = Codec::from_encoding_name(names.get(pt.as_str())?)?;
                (codec.kind() == kind
                    && codec.accepts_fmtp(fmtps.get(pt.as_str()).copied().unwrap_or("")))
                .then_some(codec)
            })
            .collect();
        if usable.is_empty() {
            let mut offered: Vec<&str> = names.values().copied().collect();
            offered.sort_unstable();
            offered.dedup();
            let (kind, accepted) = match kind {
                MediaKind::Audio => ("audio", "opus"),
                MediaKind::Video => (
                    "video",
                    "VP8, H264 (constrained baseline, packetization-mode=1)",
                ),
            };
            return Err(OfferError::NoUsableCodec {
                kind,
                offered: if offered.is_empty() {
                    "nothing".to_owned()
                } else {
                    offered.join(", ")
                },
                accepted,
            });
        }
        let list = match kind {
            MediaKind::Audio => &mut summary.audio,
            MediaKind::Video => &mut summary.video,
        };
        for c in usable {
            if !list.contains(&c) {
                list.push(c);
            }
        }
    }
    if sections == 0 {
        return Err(OfferError::NoMedia);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n";

    fn offer(sections: &str) -> String {
        format!("{HEAD}{sections}")
    }

    const AUDIO: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";
    const VP8: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n";
    const H264_HIGH: &str = "m=video 9 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:100 H264/90000\r\na=fmtp:100 packetization-mode=1;profile-level-id=640c1f\r\n";
    const H264_CB: &str = "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

    #[test]
    fn accepts_browser_codecs() {
        let s = inspect_offer(&offer(&format!("{AUDIO}{VP8}"))).unwrap();
        assert_eq!(s.audio, vec![Codec::Opus]);
        assert_eq!(s.video, vec![Codec::Vp8]);
        let s = inspect_offer(&offer(&format!("{AUDIO}{H264_CB}"))).unwrap();
        assert_eq!(s.video, vec![Codec::H264]);
    }

    #[test]
    fn refuses_unusable_codecs_with_a_reason() {
        let err = inspect_offer(&offer(&format!("{AUDIO}{H264_HIGH}"))).unwrap_err();
        match err {
            OfferError::NoUsableCodec { kind, offered, .. } => {
                assert_eq!(kind, "video");
                assert_eq!(offered, "H264");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_garbage_and_empty_offers() {
        assert!(matches!(
            inspect_offer("hello"),
            Err(OfferError::Malformed(_))
        ));
        assert_eq!(inspect_offer(&offer("")), Err(OfferError::NoMedia));
        assert_eq!(
            inspect_offer(&"v".repeat(MAX_SDP_BYTES + 1)),
            Err(OfferError::TooLarge)
        );
    }
}
