//! A live stream's Opus RTP as 16 kHz mono audio for the captioner: GStreamer's jitter buffer,
//! depayloader and libopus decoder (with loss concealment), resampled, with gaps filled so
//! sample counts keep time. Each chunk carries the instant its first sample was received.

use crate::audio::SAMPLE_RATE;
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Decoded chunks (about 20 ms each) waiting for the captioner; when full, new chunks are
/// dropped (the captioner resynchronises on the next one's time).
pub const CHUNK_QUEUE: usize = 512;
/// RTP bytes the `appsrc` holds while the decoder is busy; beyond it the oldest are dropped.
const APPSRC_MAX_BYTES: u64 = 256 * 1024;
/// Jitter buffer latency: captions are seconds behind anyway; this absorbs reordering.
const JITTER_MS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum LiveAudioError {
    #[error("cannot start the audio decoder: {0}")]
    Build(String),
}

/// Decoded audio of a live stream.
#[derive(Debug)]
pub struct Chunk {
    /// When its first sample reached the server.
    pub at: Instant,
    pub samples: Vec<f32>,
}

/// A running Opus decoder. Dropping it stops the pipeline.
pub struct OpusDecoder {
    pipeline: gst::Pipeline,
    src: AppSrc,
    zero: Instant,
}

impl OpusDecoder {
    /// Decodes RTP of payload type `pt`; chunks go to `out`. Packets are stamped with the
    /// time they were received, counted from `zero`.
    pub fn start(pt: u8, zero: Instant, out: mpsc::Sender<Chunk>) -> Result<Self, LiveAudioError> {
        let fail = |e: String| LiveAudioError::Build(e);
        gst::init().map_err(|e| fail(e.to_string()))?;
        let description = format!(
            "appsrc name=src is-live=true format=time max-bytes={APPSRC_MAX_BYTES} \
             leaky-type=downstream caps=\"application/x-rtp,media=(string)audio,\
             clock-rate=(int)48000,encoding-name=(string)OPUS,payload=(int){pt}\" \
             ! rtpjitterbuffer latency={JITTER_MS} ! rtpopusdepay ! opusdec plc=true \
             ! audioconvert ! audioresample \
             ! audio/x-raw,format=F32LE,rate={SAMPLE_RATE},channels=1 ! audiorate skip-to-first=true \
             ! appsink name=out sync=false"
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| fail(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<AppSrc>().ok())
            .ok_or_else(|| fail("no source".into()))?;
        let sink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<AppSink>().ok())
            .ok_or_else(|| fail("no sink".into()))?;
        sink.set_callbacks(
            gstreamer_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let at = zero
                        + buffer
                            .pts()
                            .map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let samples = map
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    match out.try_send(Chunk { at, samples }) {
                        Err(mpsc::error::TrySendError::Closed(_)) => Err(gst::FlowError::Flushing),
                        // Full: dropped (the overflow policy above).
                        _ => Ok(gst::FlowSuccess::Ok),
                    }
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            pipeline,
            src,
            zero,
        })
    }

    /// Feeds one RTP packet (wire format) received at `received`.
    pub fn push(&self, rtp: Bytes, received: Instant) {
        vitrine_transcode::pipeline::push_rtp(&self.src, self.zero, rtp, received);
    }

    pub fn bus(&self) -> Option<gst::Bus> {
        self.pipeline.bus()
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
