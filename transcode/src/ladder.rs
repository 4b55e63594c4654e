//! The ladder for one source: which configured renditions a source of a given size gets (never
//! upscaled) and their exact output sizes.

use crate::config::RenditionSpec;

/// One output of the ladder: an H.264 variant stream of the HLS master playlist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rendition {
    /// Directory and display name, e.g. `720p`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub fps: u32,
}

/// The renditions a `width`x`height` source gets: every configured rung no taller than the
/// source, tallest first. A source shorter than every rung still gets one rendition, at its own
/// height with the smallest rung's bitrate and frame rate, so that nothing is ever upscaled.
pub fn plan(width: u32, height: u32, specs: &[RenditionSpec]) -> Vec<Rendition> {
    let (width, height) = (width.max(2), height.max(2));
    let mut rungs: Vec<&RenditionSpec> = specs.iter().filter(|s| s.height <= height).collect();
    rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
    let sized = |h: u32, spec: &RenditionSpec| Rendition {
        name: format!("{h}p"),
        width: even((u64::from(width) * u64::from(h)) as f64 / f64::from(height)),
        height: h,
        bitrate_kbps: spec.bitrate_kbps,
        fps: spec.fps,
    };
    if rungs.is_empty() {
        let smallest = specs.iter().min_by_key(|s| s.height);
        return smallest
            .map(|s| vec![sized(height & !1, s)])
            .unwrap_or_default();
    }
    rungs.into_iter().map(|s| sized(s.height, s)).collect()
}

/// Rounds to the nearest even number of pixels (4:2:0 chroma needs even sizes), at least 2.
fn even(x: f64) -> u32 {
    (((x / 2.0).round() as u32) * 2).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HlsConfig;

    fn heights(r: &[Rendition]) -> Vec<(u32, u32)> {
        r.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn capped_at_the_source() {
        let specs = HlsConfig::default().renditions;
        assert_eq!(
            heights(&plan(1920, 1080, &specs)),
            vec![(1920, 1080), (1280, 720), (854, 480), (640, 360)]
        );
        assert_eq!(
            heights(&plan(1280, 720, &specs)),
            vec![(1280, 720), (854, 480), (640, 360)]
        );
        assert_eq!(
            heights(&plan(640, 480, &specs)),
            vec![(640, 480), (480, 360)]
        );
    }

    #[test]
    fn portrait_and_tiny_sources() {
        let specs = HlsConfig::default().renditions;
        // A phone held upright: heights are the long side here, widths follow.
        assert_eq!(heights(&plan(720, 1280, &specs))[0], (608, 1080));
        let tiny = plan(320, 181, &specs);
        assert_eq!(heights(&tiny), vec![(318, 180)]);
        assert_eq!(tiny[0].bitrate_kbps, 800);
        assert_eq!(tiny[0].name, "180p");
    }
}
