//! Properties of the code that reads network input or rewrites every packet: no input makes the
//! parsers panic, and the per-leg rewriter keeps sequence numbers continuous through any number
//! of publisher replacements.

use proptest::prelude::*;
use rtc::rtp::header::Header;
use std::time::{Duration, Instant};
use vitrine_sfu::codec::Codec;
use vitrine_sfu::offer::inspect_offer;
use vitrine_sfu::rewrite::{LegRewriter, Verdict};
use vitrine_sfu::sdpfrag::parse_sdpfrag;

proptest! {
    #[test]
    fn keyframe_detection_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        for codec in [Codec::Vp8, Codec::H264, Codec::Opus] {
            let _ = codec.is_keyframe(&payload);
        }
    }

    #[test]
    fn offer_inspection_never_panics(text in "(v=0\r\n)?([a-z]=[ -~]{0,40}\r\n){0,30}") {
        let _ = inspect_offer(&text);
    }

    #[test]
    fn sdpfrag_parsing_never_panics(text in "([a-z]=[ -~]{0,60}\r?\n){0,40}") {
        let _ = parse_sdpfrag(&text);
    }

    #[test]
    fn sequence_stays_continuous_across_publishers(
        sources in proptest::collection::vec((any::<u16>(), any::<u32>(), 1usize..50), 1..6)
    ) {
        let mut leg = LegRewriter::new(42, 90_000, true);
        leg.set_payload_map([(96, 100)]);
        let mut now = Instant::now();
        let mut last: Option<u16> = None;
        for (i, (seq0, ts0, count)) in sources.into_iter().enumerate() {
            // A new SSRC per publisher, as a replacement always brings; random bases.
            let ssrc = 1000 + i as u32;
            for n in 0..count {
                let mut h = Header {
                    ssrc,
                    sequence_number: seq0.wrapping_add(n as u16),
                    timestamp: ts0.wrapping_add(n as u32 * 3000),
                    payload_type: 96,
                    ..Default::default()
                };
                now += Duration::from_millis(33);
                if leg.rewrite(&mut h, n == 0, now) == Verdict::Forward {
                    prop_assert_eq!(h.ssrc, 42);
                    prop_assert_eq!(h.payload_type, 100);
                    if let Some(prev) = last {
                        prop_assert_eq!(h.sequence_number, prev.wrapping_add(1));
                    }
                    last = Some(h.sequence_number);
                }
            }
        }
    }
}
