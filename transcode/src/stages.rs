//! Where a live run's latency goes: pad probes at the end of each stage (`depayloaded`: out of
//! the RTP jitter buffer and depayloader, a frame at a time rather than a packet at a time,
//! `decoded`, `encoded`) observe how far each buffer's running time lags
//! the pipeline clock's, and the packager adds `packaged` (an access unit reached it) and
//! `listed` (its part entered the playlist). A buffer's running time is when its first packet
//! arrived, so each stage's figure is the time from arrival to the end of that stage.
//! Exported as `vitrine_hls_stage_latency_seconds{stage, track}`.

use crate::metrics::{HlsMetrics, StageLabels};
use gstreamer as gst;
use gstreamer::prelude::*;
use prometheus_client::metrics::histogram::Histogram;

/// The elements a live run names for its stages: (element, stage, track).
pub const PROBED: [(&str, &str, &str); 4] = [
    ("vdepay", "depayloaded", "video"),
    ("vdecode", "decoded", "video"),
    ("adepay", "depayloaded", "audio"),
    ("adecode", "decoded", "audio"),
];

/// Name prefix of the per-rendition encoders (`venc0`, `venc1`, ...) and the audio encoder.
pub const VIDEO_ENCODER: &str = "venc";
pub const AUDIO_ENCODER: &str = "aenc";

/// Seconds from `running_ns` (a buffer's running time) to `now_ns` (the clock's).
pub fn lag_seconds(now_ns: u64, running_ns: u64) -> f64 {
    now_ns.saturating_sub(running_ns) as f64 / 1e9
}

/// Adds the stage probes to the elements of `pipeline` that [`PROBED`] and the encoders name.
pub fn watch(pipeline: &gst::Pipeline, metrics: &HlsMetrics) {
    let mut probes: Vec<(gst::Element, &'static str, &'static str)> = PROBED
        .iter()
        .filter_map(|(name, stage, track)| Some((pipeline.by_name(name)?, *stage, *track)))
        .collect();
    for i in 0.. {
        let Some(encoder) = pipeline.by_name(&format!("{VIDEO_ENCODER}{i}")) else {
            break;
        };
        probes.push((encoder, "encoded", "video"));
    }
    if let Some(encoder) = pipeline.by_name(AUDIO_ENCODER) {
        probes.push((encoder, "encoded", "audio"));
    }
    for (element, stage, track) in probes {
        let histogram = metrics
            .stage_latency
            .get_or_create(&StageLabels { stage, track })
            .clone();
        probe(&element, histogram);
    }
}

fn probe(element: &gst::Element, histogram: Histogram) {
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let pts = info.buffer().and_then(|b| b.pts());
        // Encoders shift their output segment: only running time compares with the clock.
        let running = pts.and_then(|pts| {
            pad.sticky_event::<gst::event::Segment>(0)?
                .segment()
                .downcast_ref::<gst::ClockTime>()?
                .to_running_time(pts)
        });
        let now = pad.parent_element().and_then(|e| e.current_running_time());
        if let (Some(now), Some(running)) = (now, running) {
            histogram.observe(lag_seconds(now.nseconds(), running.nseconds()));
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_from_the_future_lags_by_nothing() {
        assert_eq!(lag_seconds(2_500_000_000, 500_000_000), 2.0);
        assert_eq!(lag_seconds(1, 2), 0.0);
    }
}
