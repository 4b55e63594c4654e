//! Trickle ICE fragments (`application/trickle-ice-sdpfrag`) as a client PATCHes them: the
//! fragment parser and the candidate policy that then judges each candidate. No panic, and the
//! parser's own bounds hold on every input it accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_sfu::candidates::CandidatePolicy;
use vitrine_sfu::sdpfrag::{MAX_CANDIDATES, MAX_SDPFRAG_BYTES, parse_sdpfrag};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frag) = parse_sdpfrag(body) else {
        return;
    };
    assert!(body.len() <= MAX_SDPFRAG_BYTES);
    assert!(frag.candidates.len() <= MAX_CANDIDATES);
    let public = CandidatePolicy::new(true);
    for c in &frag.candidates {
        assert!(c.candidate.starts_with("candidate"));
        let _ = public.allows(&c.candidate);
        assert!(CandidatePolicy::new(false).allows(&c.candidate));
    }
});
