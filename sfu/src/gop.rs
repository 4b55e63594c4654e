//! The stream's current group of pictures: the video packets since its last keyframe, so that a
//! viewer who joins is sent a picture at once (the keyframe and the frames after it, which
//! the decoder runs through to the present) instead of waiting for a keyframe request to
//! reach the publisher and its answer to come back, or for the next periodic keyframe of a
//! publisher that ignores requests. A group that grew too long or too old to replay is
//! dropped, and a joining viewer then asks for a keyframe as before. Sans-IO.

use crate::codec::MediaKind;
use crate::router::Forwarded;
use std::time::{Duration, Instant};

/// Most packets replayed to a joining viewer: about 1.3 s of a 1.5 Mbit/s picture, well inside
/// a leg's queue ([`crate::router::LEG_QUEUE_CAPACITY`]) beside the live packets that follow.
pub const MAX_GOP_PACKETS: usize = 192;
/// Oldest keyframe replayed: past this, the burst of frames to catch up on costs the viewer
/// more than a keyframe request does.
pub const MAX_GOP_AGE: Duration = Duration::from_millis(1500);

#[derive(Debug, Default)]
pub struct Gop {
    packets: Vec<Forwarded>,
    /// When the group's keyframe arrived, and its RTP timestamp (a keyframe may span packets:
    /// H.264's parameter sets and its IDR slices all count as keyframe packets).
    keyframe: Option<(Instant, u32)>,
    /// The group outgrew [`MAX_GOP_PACKETS`]: nothing to replay until the next keyframe.
    overflowed: bool,
}

impl Gop {
    /// Records a packet the router forwards; `now` is asked only when it starts a group.
    pub fn push(&mut self, item: &Forwarded, now: impl FnOnce() -> Instant) {
        if item.kind != MediaKind::Video {
            return;
        }
        let timestamp = item.packet.header.timestamp;
        let new_keyframe =
            item.keyframe && self.keyframe.is_none_or(|(_, first)| first != timestamp);
        if new_keyframe {
            self.packets.clear();
            self.keyframe = Some((now(), timestamp));
            self.overflowed = false;
        } else if self.keyframe.is_none() || self.overflowed {
            return;
        }
        if self.packets.len() == MAX_GOP_PACKETS {
            self.overflowed = true;
            self.packets = Vec::new();
            return;
        }
        self.packets.push(item.clone());
    }

    /// The packets a viewer joining at `now` starts from: the keyframe and every video packet
    /// since, when the group is fresh and whole; `None` means: ask for a keyframe.
    pub fn replay(&self, now: Instant) -> Option<&[Forwarded]> {
        let (at, _) = self.keyframe?;
        let fresh = now.saturating_duration_since(at) <= MAX_GOP_AGE;
        (fresh && !self.overflowed && !self.packets.is_empty()).then_some(&self.packets[..])
    }

    /// A new publisher: its predecessor's pictures are no start for it.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::rtp;

    fn video(seq: u16, timestamp: u32, keyframe: bool) -> Forwarded {
        Forwarded {
            kind: MediaKind::Video,
            keyframe,
            packet: rtp::Packet {
                header: rtp::header::Header {
                    sequence_number: seq,
                    timestamp,
                    ..Default::default()
                },
                payload: Bytes::from_static(&[0]),
            },
        }
    }

    fn seqs(packets: &[Forwarded]) -> Vec<u16> {
        packets
            .iter()
            .map(|p| p.packet.header.sequence_number)
            .collect()
    }

    #[test]
    fn a_group_starts_at_its_keyframe_and_ends_at_the_next() {
        let t0 = Instant::now();
        let mut gop = Gop::default();
        gop.push(&video(1, 0, false), || t0);
        assert!(gop.replay(t0).is_none(), "no keyframe yet");
        // A keyframe in two packets (H.264: parameter sets, then the IDR), then a delta frame;
        // audio never enters.
        gop.push(&video(2, 3000, true), || t0);
        gop.push(&video(3, 3000, true), || t0);
        gop.push(&video(4, 6000, false), || t0);
        let mut audio = video(9, 6000, true);
        audio.kind = MediaKind::Audio;
        gop.push(&audio, || t0);
        assert_eq!(seqs(gop.replay(t0).unwrap()), [2, 3, 4]);
        gop.push(&video(5, 9000, true), || t0);
        assert_eq!(seqs(gop.replay(t0).unwrap()), [5]);
    }

    #[test]
    fn an_old_or_overlong_group_is_not_replayed() {
        let t0 = Instant::now();
        let mut gop = Gop::default();
        gop.push(&video(0, 0, true), || t0);
        assert!(gop.replay(t0 + MAX_GOP_AGE).is_some());
        assert!(
            gop.replay(t0 + MAX_GOP_AGE + Duration::from_millis(1))
                .is_none()
        );
        for seq in 1..=MAX_GOP_PACKETS as u16 {
            gop.push(&video(seq, u32::from(seq) * 3000, false), || t0);
        }
        assert!(gop.replay(t0).is_none(), "more than a leg's share");
        gop.push(&video(1000, 1, false), || t0);
        assert!(gop.replay(t0).is_none(), "still overlong until a keyframe");
        gop.push(&video(1001, 2, true), || t0);
        assert_eq!(seqs(gop.replay(t0).unwrap()), [1001]);
        gop.clear();
        assert!(gop.replay(t0).is_none());
    }
}
