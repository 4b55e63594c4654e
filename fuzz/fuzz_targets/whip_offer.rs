//! WHIP/WHEP offers as an anonymous client POSTs them: the offer inspection that runs before
//! any WebRTC state exists, and the candidate filter a public deployment applies to the SDP.
//! Neither may panic, and a summary only ever names codecs of the section kind it lists.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_sfu::candidates::CandidatePolicy;
use vitrine_sfu::codec::MediaKind;
use vitrine_sfu::offer::inspect_offer;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(summary) = inspect_offer(sdp) {
        assert!(!summary.audio.is_empty() || !summary.video.is_empty());
        assert!(summary.audio.iter().all(|c| c.kind() == MediaKind::Audio));
        assert!(summary.video.iter().all(|c| c.kind() == MediaKind::Video));
    }
    let filtered = CandidatePolicy::new(true).filter_sdp(sdp);
    // The filter only removes lines.
    assert!(filtered.len() <= sdp.len());
    assert_eq!(CandidatePolicy::new(false).filter_sdp(sdp), sdp);
});
