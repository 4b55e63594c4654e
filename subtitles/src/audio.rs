//! Any media file's audio as Whisper wants it: 16 kHz mono f32, decoded by GStreamer
//! (`decodebin`, so every container and codec the installed demuxers and decoders read,
//! libav's among them).

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use std::path::Path;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot read {0}: {1}")]
    Unreadable(String, String),
    #[error("{0} has no audio")]
    NoAudio(String),
}

/// Decodes the first audio stream of `path`; `progress` hears the fraction read so far.
pub fn decode(path: &Path, mut progress: impl FnMut(f64)) -> Result<Vec<f32>, AudioError> {
    let shown = path.display().to_string();
    let fail = |e: String| AudioError::Unreadable(shown.clone(), e);
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    gst::init().map_err(|e| fail(e.to_string()))?;
    let pipeline = gst::parse::launch(&format!(
        "filesrc name=file ! decodebin ! audioconvert ! audioresample \
         ! audio/x-raw,format=F32LE,rate={SAMPLE_RATE},channels=1 ! appsink name=out sync=false"
    ))
    .map_err(|e| fail(e.to_string()))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| fail("not a pipeline".into()))?;
    if let Some(file) = pipeline.by_name("file") {
        file.set_property("location", path.to_string_lossy().as_ref());
    }
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<AppSink>().ok())
        .ok_or_else(|| fail("no sink".into()))?;
    let stop = |p: &gst::Pipeline| {
        let _ = p.set_state(gst::State::Null);
    };
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(e.to_string()))?;
    let mut samples = Vec::new();
    loop {
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            Some(sample) => {
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    samples.extend(
                        map.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
                let position = pipeline.query_position::<gst::ClockTime>();
                let duration = pipeline.query_duration::<gst::ClockTime>();
                if let (Some(p), Some(d)) = (position, duration)
                    && d.nseconds() > 0
                {
                    progress((p.nseconds() as f64 / d.nseconds() as f64).min(1.0));
                }
            }
            None if sink.is_eos() => break,
            None => {
                // No sample for a while: either still prerolling, or the pipeline failed.
                let bus = pipeline.bus().ok_or_else(|| fail("no bus".into()))?;
                while let Some(msg) = bus.pop() {
                    if let gst::MessageView::Error(e) = msg.view() {
                        stop(&pipeline);
                        let text = e.error().to_string();
                        let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
                        // decodebin found streams but none it could link was audio.
                        if debug.contains("not-linked") && samples.is_empty() {
                            return Err(AudioError::NoAudio(shown));
                        }
                        return Err(fail(text));
                    }
                }
            }
        }
    }
    stop(&pipeline);
    progress(1.0);
    Ok(samples)
}
