//! Keyframe-request coalescing: many viewers joining at once must not make the publisher send a
//! keyframe storm (each one costs 5-10x a normal frame), yet each of them must get a keyframe
//! within a second. At most one request per [`MIN_INTERVAL`]; a request that falls inside the
//! interval is deferred to its end, not lost. Sans-IO.

use std::time::{Duration, Instant};

/// Shortest gap between two keyframe requests sent to a publisher.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct KeyframeRequests {
    last_sent: Option<Instant>,
    /// A request arrived inside the interval and waits for its end.
    pending: bool,
}

impl KeyframeRequests {
    /// A subscriber asked for a keyframe. Returns true when the request must go out now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(at) if now.saturating_duration_since(at) < MIN_INTERVAL => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a deferred request is due, if one waits.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(at)) => Some(at + MIN_INTERVAL),
            _ => None,
        }
    }

    /// Fires a deferred request whose time has come. Returns true when it must go out now.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(due) if now >= due => {
                self.pending = false;
                self.last_sent = Some(now);
                true
            }
            _ => false,
        }
    }

    /// The publisher sent a keyframe on its own: whoever waited has it, nothing more to ask.
    pub fn keyframe_seen(&mut self) {
        self.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_coalesce_into_one_now_and_one_later() {
        let mut k = KeyframeRequests::default();
        let t0 = Instant::now();
        assert!(k.request(t0));
        for ms in [10, 50, 200, 499] {
            assert!(!k.request(t0 + Duration::from_millis(ms)));
        }
        assert_eq!(k.deadline(), Some(t0 + MIN_INTERVAL));
        assert!(!k.poll(t0 + Duration::from_millis(499)));
        assert!(k.poll(t0 + MIN_INTERVAL));
        assert!(!k.poll(t0 + MIN_INTERVAL), "fires once");
        assert_eq!(k.deadline(), None);
    }

    #[test]
    fn a_keyframe_cancels_the_deferred_request() {
        let mut k = KeyframeRequests::default();
        let t0 = Instant::now();
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(100)));
        k.keyframe_seen();
        assert_eq!(k.deadline(), None);
        assert!(k.request(t0 + Duration::from_millis(600)));
    }
}
