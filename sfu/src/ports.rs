//! The split of the ICE port range between publishers and viewers: viewers (anonymous) bind
//! only the bottom of the range; the top is kept for publishers, who may also use the bottom.
//! Pure arithmetic; it never binds a socket.

/// Who a peer connection is for, which decides the ports it may bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortUse {
    /// A seller's WHIP session: its reserved ports first, then the viewers'.
    Publisher,
    /// A WHEP viewer (and any client built from this factory): never the reserved ports.
    Viewer,
}

/// A port range split between viewers (the bottom) and publishers (the top `reserved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPlan {
    pub lo: u16,
    pub hi: u16,
    pub reserved: u16,
}

impl PortPlan {
    /// The plan of `range` with `publisher_ports` reserved (or the default share). Viewers
    /// always keep at least one port; a one-port range reserves nothing.
    pub fn new((lo, hi): (u16, u16), publisher_ports: Option<u16>) -> Self {
        let size = hi.saturating_sub(lo).saturating_add(1);
        let wanted = publisher_ports.unwrap_or((size / 10).max(1));
        Self {
            lo,
            hi,
            reserved: wanted.min(size.saturating_sub(1)),
        }
    }

    pub fn viewer_ports(&self) -> std::ops::RangeInclusive<u16> {
        self.lo..=self.hi - self.reserved
    }

    /// `None` when nothing is reserved.
    pub fn publisher_ports(&self) -> Option<std::ops::RangeInclusive<u16>> {
        (self.reserved > 0).then(|| self.hi - (self.reserved - 1)..=self.hi)
    }

    /// The ports to try, in order, for `who`; each pool starts at its own rotating `offset`
    /// so consecutive sessions do not all probe the same busy ports first.
    pub fn order(&self, who: PortUse, viewer_offset: usize, publisher_offset: usize) -> Vec<u16> {
        fn rotated(r: std::ops::RangeInclusive<u16>, offset: usize) -> Vec<u16> {
            let mut ports: Vec<u16> = r.collect();
            if !ports.is_empty() {
                let at = offset % ports.len();
                ports.rotate_left(at);
            }
            ports
        }
        let mut ports = Vec::new();
        if who == PortUse::Publisher
            && let Some(reserved) = self.publisher_ports()
        {
            ports.extend(rotated(reserved, publisher_offset));
        }
        ports.extend(rotated(self.viewer_ports(), viewer_offset));
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_never_get_the_publishers_ports() {
        let plan = PortPlan::new((50_000, 50_199), None);
        assert_eq!(plan.reserved, 20, "a tenth of the range by default");
        assert_eq!(plan.viewer_ports(), 50_000..=50_179);
        let viewer = plan.order(PortUse::Viewer, 7, 3);
        assert_eq!(viewer.len(), 180);
        assert_eq!(viewer[0], 50_007);
        assert!(viewer.iter().all(|p| *p < 50_180));
        let publisher = plan.order(PortUse::Publisher, 7, 3);
        assert_eq!(publisher.len(), 200, "publishers fall back on viewer ports");
        assert_eq!(publisher[0], 50_183);
        assert!(publisher[..20].iter().all(|p| *p >= 50_180));

        assert_eq!(
            PortPlan::new((9, 9), None).reserved,
            0,
            "one port: nothing to split"
        );
        assert_eq!(
            PortPlan::new((1, 10), Some(50)).reserved,
            9,
            "viewers keep one port"
        );
        assert_eq!(
            PortPlan::new((1, 10), Some(0))
                .order(PortUse::Viewer, 0, 0)
                .len(),
            10
        );
        let top = PortPlan::new((65_000, 65_535), Some(0));
        assert_eq!(top.publisher_ports(), None);
        assert_eq!(top.order(PortUse::Publisher, 0, 0).len(), 536);
        assert_eq!(
            PortPlan::new((65_000, 65_535), Some(1)).publisher_ports(),
            Some(65_535..=65_535)
        );
    }
}
