//! Per-leg RTP rewriting: turns whatever the current publisher sends into one continuous RTP
//! stream for one subscriber, so that a publisher replaced mid-stream (a seller reloading the tab)
//! looks to the viewer like the same stream carrying on.
//!
//! Sans-IO: takes a header and `now`, mutates the header, returns a verdict. Never allocates.

use std::time::Instant;

/// Marks a source payload type with no negotiated counterpart on this leg.
const UNMAPPED: u8 = 0xff;

/// What to do with one packet on one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it; the header has been rewritten.
    Forward,
    /// Drop it: the leg waits for a keyframe of a new source. Ask the publisher for one.
    NeedKeyframe,
    /// Drop it: still waiting for the keyframe already asked for.
    AwaitingKeyframe,
    /// Drop it: the source payload type has no codec negotiated on this leg.
    Unmapped,
}

/// Rewriting state of one output stream (one kind) of one subscriber leg.
#[derive(Debug)]
pub struct LegRewriter {
    out_ssrc: u32,
    clock_rate: u32,
    /// Video legs start each source on a keyframe; audio starts anywhere.
    wait_for_keyframe: bool,
    /// Source payload type -> this leg's payload type for the same codec.
    payload_map: [u8; 128],
    /// The source currently mapped, if any.
    source_ssrc: Option<u32>,
    /// True between a source change and the keyframe that lets the leg switch to it.
    awaiting_keyframe: bool,
    /// Added (wrapping) to source sequence numbers and timestamps of the current source.
    seq_offset: u16,
    ts_offset: u32,
    /// The newest packet written: where the next source must continue from.
    last_out: Option<LastOut>,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u16,
    ts: u32,
    at: Instant,
}

impl LegRewriter {
    pub fn new(out_ssrc: u32, clock_rate: u32, wait_for_keyframe: bool) -> Self {
        Self {
            out_ssrc,
            clock_rate,
            wait_for_keyframe,
            payload_map: [UNMAPPED; 128],
            source_ssrc: None,
            awaiting_keyframe: false,
            seq_offset: 0,
            ts_offset: 0,
            last_out: None,
        }
    }

    /// Replaces the payload-type table (a new publisher may use other payload types).
    pub fn set_payload_map(&mut self, pairs: impl IntoIterator<Item = (u8, u8)>) {
        self.payload_map = [UNMAPPED; 128];
        for (source, leg) in pairs {
            if let Some(slot) = self.payload_map.get_mut(usize::from(source)) {
                *slot = leg;
            }
        }
    }

    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Rewrites `header` in place for this leg, or says why the packet must not be sent.
    pub fn rewrite(
        &mut self,
        header: &mut rtc::rtp::header::Header,
        keyframe: bool,
        now: Instant,
    ) -> Verdict {
        let leg_pt = self
            .payload_map
            .get(usize::from(header.payload_type))
            .copied()
            .unwrap_or(UNMAPPED);
        if leg_pt == UNMAPPED {
            return Verdict::Unmapped;
        }
        if self.source_ssrc != Some(header.ssrc) {
            self.source_ssrc = Some(header.ssrc);
            self.awaiting_keyframe = self.wait_for_keyframe;
            if self.awaiting_keyframe && !keyframe {
                return Verdict::NeedKeyframe;
            }
            self.start_source(header, now);
        } else if self.awaiting_keyframe {
            if !keyframe {
                return Verdict::AwaitingKeyframe;
            }
            self.start_source(header, now);
        }

        let seq = header.sequence_number.wrapping_add(self.seq_offset);
        let ts = header.timestamp.wrapping_add(self.ts_offset);
        header.sequence_number = seq;
        header.timestamp = ts;
        header.ssrc = self.out_ssrc;
        header.payload_type = leg_pt;
        let newer = self.last_out.is_none_or(|last| is_newer(seq, last.seq));
        if newer {
            self.last_out = Some(LastOut { seq, ts, at: now });
        }
        Verdict::Forward
    }

    /// Maps the current source so that its first packet follows the last packet written.
    fn start_source(&mut self, header: &rtc::rtp::header::Header, now: Instant) {
        self.awaiting_keyframe = false;
        let (seq, ts) = match self.last_out {
            None => (header.sequence_number, header.timestamp),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                let ticks = (elapsed.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000)
                    .max(1) as u32;
                (last.seq.wrapping_add(1), last.ts.wrapping_add(ticks))
            }
        };
        self.seq_offset = seq.wrapping_sub(header.sequence_number);
        self.ts_offset = ts.wrapping_sub(header.timestamp);
    }
}

/// RFC 1982 serial-number comparison for 16-bit sequence numbers.
fn is_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;
    use std::time::Duration;

    fn header(ssrc: u32, seq: u16, ts: u32, pt: u8) -> Header {
        Header {
            ssrc,
            sequence_number: seq,
            timestamp: ts,
            payload_type: pt,
            ..Default::default()
        }
    }

    fn video_leg() -> LegRewriter {
        let mut leg = LegRewriter::new(777, 90_000, true);
        leg.set_payload_map([(96, 100), (102, 101)]);
        leg
    }

    #[test]
    fn rewrites_ssrc_and_payload_type() {
        let mut leg = video_leg();
        let t0 = Instant::now();
        let mut h = header(1, 10, 1000, 96);
        assert_eq!(leg.rewrite(&mut h, true, t0), Verdict::Forward);
        assert_eq!((h.ssrc, h.payload_type, h.sequence_number), (777, 100, 10));
    }

    #[test]
    fn video_waits_for_a_keyframe_then_starts() {
        let mut leg = video_leg();
        let t0 = Instant::now();
        assert_eq!(
            leg.rewrite(&mut header(1, 10, 0, 96), false, t0),
            Verdict::NeedKeyframe
        );
        assert_eq!(
            leg.rewrite(&mut header(1, 11, 0, 96), false, t0),
            Verdict::AwaitingKeyframe
        );
        let mut h = header(1, 12, 3000, 96);
        assert_eq!(leg.rewrite(&mut h, true, t0), Verdict::Forward);
    }

    #[test]
    fn publisher_replacement_continues_sequence_and_time() {
        let mut leg = video_leg();
        let t0 = Instant::now();
        for (i, seq) in (65_530u16..=65_535).enumerate() {
            let mut h = header(1, seq, 90_000 + i as u32 * 3000, 96);
            assert_eq!(leg.rewrite(&mut h, i == 0, t0), Verdict::Forward);
        }
        // A new publisher with another SSRC, random sequence/timestamp base, other PT.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            leg.rewrite(&mut header(2, 4000, 5, 102), false, t1),
            Verdict::NeedKeyframe
        );
        let mut h = header(2, 4001, 3005, 102);
        assert_eq!(leg.rewrite(&mut h, true, t1), Verdict::Forward);
        assert_eq!(h.sequence_number, 0, "continues after 65535 with a wrap");
        assert_eq!(
            h.timestamp,
            90_000 + 5 * 3000 + 45_000,
            "advances by 500 ms"
        );
        assert_eq!((h.ssrc, h.payload_type), (777, 101));
        let mut next = header(2, 4002, 6005, 102);
        leg.rewrite(&mut next, false, t1);
        assert_eq!(next.sequence_number, 1);
        assert_eq!(next.timestamp, h.timestamp + 3000);
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let mut leg = LegRewriter::new(5, 48_000, false);
        leg.set_payload_map([(111, 111)]);
        let t0 = Instant::now();
        let mut a = header(9, 100, 0, 111);
        let mut c = header(9, 102, 1920, 111);
        let mut b = header(9, 101, 960, 111);
        leg.rewrite(&mut a, false, t0);
        leg.rewrite(&mut c, false, t0);
        leg.rewrite(&mut b, false, t0);
        assert_eq!(
            (a.sequence_number, b.sequence_number, c.sequence_number),
            (100, 101, 102)
        );
    }

    #[test]
    fn unnegotiated_payload_types_are_dropped() {
        let mut leg = video_leg();
        assert_eq!(
            leg.rewrite(&mut header(1, 1, 1, 127), true, Instant::now()),
            Verdict::Unmapped
        );
        assert_eq!(
            leg.rewrite(&mut header(1, 1, 1, 200), true, Instant::now()),
            Verdict::Unmapped
        );
    }
}
