//! The GStreamer side of one encoder run: RTP from the SFU's tap into `appsrc`, jitter buffer,
//! depayload, decode, then one scaler and H.264 encoder per rendition and one AAC encoder,
//! each ending in an `appsink` whose access units go to the packager. A poster branch encodes a
//! JPEG once a second. Segment boundaries are forced as keyframes in every rendition at the
//! same running time, so segments align across the ladder.

use crate::config::EncoderChoice;
use crate::ladder::Rendition;
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vitrine_sfu::codec::{Codec, MediaKind};

/// Jitter buffer latency: reorders late packets and asks for retransmission-free recovery.
const JITTER_MS: u32 = 150;
/// Queue before the packager, in access units. Overflow policy: the streaming thread blocks
/// (back-pressure to the encoders); the `appsrc` in front drops its oldest RTP when full.
pub const OUTPUT_QUEUE: usize = 256;
/// RTP bytes an `appsrc` holds while the pipeline is busy; beyond it the oldest are dropped.
const APPSRC_MAX_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("GStreamer is not usable: {0}")]
    Init(String),
    #[error("building the pipeline: {0}")]
    Build(String),
    #[error("starting the pipeline: {0}")]
    Start(String),
}

/// Codec parameters of an encoder's output, from its caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackCaps {
    Video {
        width: u16,
        height: u16,
        codec_data: Bytes,
    },
    Audio {
        rate: u32,
        channels: u16,
        codec_data: Bytes,
    },
}

/// One encoded access unit.
#[derive(Debug)]
pub struct Encoded {
    /// Index of the output: renditions first, audio last.
    pub track: usize,
    pub pts_ns: u64,
    pub dts_ns: u64,
    pub duration_ns: Option<u64>,
    pub keyframe: bool,
    pub data: Bytes,
    /// Present on the first access unit and whenever the caps change.
    pub caps: Option<TrackCaps>,
}

/// What the pipeline hands to its run.
#[derive(Debug)]
pub enum Output {
    Encoded(Encoded),
    /// A JPEG of the top rendition's picture, with its running time.
    Poster {
        pts_ns: u64,
        jpeg: Bytes,
    },
}

/// Where a run's media comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// RTP from the SFU's tap: the video codec and payload type, the Opus payload type.
    Rtp {
        video: Option<(Codec, u8)>,
        audio: Option<u8>,
    },
    /// A media file any installed GStreamer demuxer and decoder reads, as fast as it decodes.
    File {
        path: std::path::PathBuf,
        video: bool,
        audio: bool,
    },
}

impl Source {
    pub fn has_video(&self) -> bool {
        match self {
            Self::Rtp { video, .. } => video.is_some(),
            Self::File { video, .. } => *video,
        }
    }

    pub fn has_audio(&self) -> bool {
        match self {
            Self::Rtp { audio, .. } => audio.is_some(),
            Self::File { audio, .. } => *audio,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    pub source: Source,
    pub renditions: Vec<Rendition>,
    pub encoder: EncoderChoice,
    pub x264_preset: String,
    pub segment: Duration,
    pub audio_bitrate_kbps: u32,
}

impl PipelinePlan {
    /// The pipeline's outputs (`out0`, `out1`, ...) in order: one per rendition when there is
    /// video, then the audio. Each is named after its rendition's folder.
    pub fn outputs(&self) -> Vec<String> {
        let video = self.renditions.iter().filter(|_| self.source.has_video());
        let audio = self
            .source
            .has_audio()
            .then(|| crate::media::AUDIO.to_owned());
        video.map(|r| r.name.clone()).chain(audio).collect()
    }
}

/// Initialises GStreamer once; the error names what is missing.
pub fn init() -> Result<(), PipelineError> {
    gst::init().map_err(|e| PipelineError::Init(e.to_string()))?;
    for element in [
        "x264enc",
        "avenc_aac",
        "avdec_h264",
        "opusdec",
        "rtpjitterbuffer",
        "appsrc",
        "jpegenc",
    ] {
        if gst::ElementFactory::find(element).is_none() {
            return Err(PipelineError::Init(format!(
                "element {element} is missing (install the GStreamer base, good, bad, ugly and libav plugins)"
            )));
        }
    }
    Ok(())
}

/// The encoder element `choice` resolves to on this machine.
pub fn encoder_element(choice: EncoderChoice) -> &'static str {
    let has = |name: &str| gst::ElementFactory::find(name).is_some();
    match choice {
        EncoderChoice::X264 => "x264enc",
        EncoderChoice::Nvh264 => "nvh264enc",
        EncoderChoice::Vaapih264 => "vaapih264enc",
        EncoderChoice::Auto if has("nvh264enc") => "nvh264enc",
        EncoderChoice::Auto if has("vaapih264enc") => "vaapih264enc",
        EncoderChoice::Auto => "x264enc",
    }
}

fn encoder_description(plan: &PipelinePlan, index: usize, r: &Rendition) -> String {
    let gop = r.fps * plan.segment.as_millis() as u32 / 1000;
    let name = format!("{}{index}", crate::stages::VIDEO_ENCODER);
    match encoder_element(plan.encoder) {
        "nvh264enc" => format!(
            "nvh264enc name={name} bitrate={} gop-size={gop} bframes=0 zerolatency=true rc-mode=cbr",
            r.bitrate_kbps
        ),
        "vaapih264enc" => format!(
            "vaapih264enc name={name} bitrate={} keyframe-period={gop} max-bframes=0 rate-control=cbr",
            r.bitrate_kbps
        ),
        // x264enc's own properties override its tune: the frame-type lookahead (40 frames by
        // default, 1.3 s of latency) and mb-tree must be turned off explicitly for zero latency,
        // as `-tune zerolatency` does in x264 itself.
        _ => format!(
            "x264enc name={name} bitrate={} speed-preset={} tune=zerolatency key-int-max={gop} bframes=0 \
             rc-lookahead=0 sync-lookahead=0 mb-tree=false sliced-threads=true \
             option-string=\"scenecut=0\"",
            r.bitrate_kbps, plan.x264_preset
        ),
    }
}

/// The `gst-launch` description of the whole run.
pub fn describe(plan: &PipelinePlan) -> String {
    let mut d = String::new();
    if let Source::File { .. } = plan.source {
        // The location is set as a property after parsing: no quoting of paths.
        d += "filesrc name=file ! decodebin name=dec ";
    }
    if plan.source.has_video() {
        d += &video_head(&plan.source);
        d += "! videoconvert ! tee name=vt allow-not-linked=true ";
        for (i, r) in plan.renditions.iter().enumerate() {
            d += &format!(
                "vt. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 \
                 ! videoscale ! videorate skip-to-first=true ! video/x-raw,width={},height={},framerate={}/1,\
                 pixel-aspect-ratio=1/1 ! {} ! h264parse \
                 ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out{i} sync=false ",
                r.width,
                r.height,
                r.fps,
                encoder_description(plan, i, r),
            );
        }
        if let Some(top) = plan.renditions.first() {
            d += &format!(
                "vt. ! queue leaky=downstream max-size-buffers=2 ! videorate ! videoscale \
                 ! video/x-raw,width={},height={},framerate=1/1 ! jpegenc quality=85 \
                 ! appsink name=poster sync=false max-buffers=1 drop=true ",
                top.width, top.height
            );
        }
    }
    if plan.source.has_audio() {
        d += &audio_head(&plan.source);
        d += &format!(
            "! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
             ! avenc_aac name=aenc bitrate={} ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw \
             ! appsink name=out{} sync=false ",
            plan.audio_bitrate_kbps * 1000,
            plan.outputs().len() - 1,
        );
    }
    d
}

/// From the source to decoded video.
fn video_head(source: &Source) -> String {
    match source {
        Source::Rtp { video: Some((codec, pt)), .. } => {
            let (name, depay, decode) = match codec {
                Codec::Vp8 => (
                    "VP8",
                    "rtpvp8depay name=vdepay request-keyframe=true wait-for-keyframe=true",
                    "vp8dec",
                ),
                _ => (
                    "H264",
                    "rtph264depay request-keyframe=true wait-for-keyframe=true ! h264parse name=vdepay",
                    "avdec_h264",
                ),
            };
            format!(
                "appsrc name=vsrc is-live=true format=time max-bytes={APPSRC_MAX_BYTES} \
                 leaky-type=downstream caps=\"application/x-rtp,media=(string)video,clock-rate=(int)90000,\
                 encoding-name=(string){name},payload=(int){pt}\" \
                 ! rtpjitterbuffer latency={JITTER_MS} ! {depay} ! {decode} name=vdecode "
            )
        }
        // Decoded frames wait here while the encoders catch up (bounded: the demuxer waits).
        _ => "dec. ! video/x-raw ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ".into(),
    }
}

/// From the source to decoded audio.
fn audio_head(source: &Source) -> String {
    match source {
        Source::Rtp {
            audio: Some(pt), ..
        } => format!(
            "appsrc name=asrc is-live=true format=time max-bytes={APPSRC_MAX_BYTES} \
             leaky-type=downstream caps=\"application/x-rtp,media=(string)audio,clock-rate=(int)48000,\
             encoding-name=(string)OPUS,payload=(int){pt}\" \
             ! rtpjitterbuffer latency={JITTER_MS} ! rtpopusdepay name=adepay ! opusdec name=adecode plc=true "
        ),
        _ => {
            "dec. ! audio/x-raw ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ".into()
        }
    }
}

/// Feeds one RTP packet (wire format) to `src`, stamped with the running time at which it was
/// received (counted from `zero`, the pipeline's time zero); the buffer wraps `rtp` without
/// copying it. Shared by every pipeline fed from the SFU's tap.
pub fn push_rtp(src: &AppSrc, zero: Instant, rtp: Bytes, received: Instant) {
    let arrival =
        gst::ClockTime::from_nseconds(received.saturating_duration_since(zero).as_nanos() as u64);
    let mut buffer = gst::Buffer::from_slice(rtp);
    if let Some(b) = buffer.get_mut() {
        b.set_pts(arrival);
        b.set_dts(arrival);
    }
    // Err only while shutting down; the pipeline's owner learns of it through the bus.
    let _ = src.push_buffer(buffer);
}

/// A built and playing encoder run. Dropping it stops the pipeline.
pub struct Pipeline {
    pipeline: gst::Pipeline,
    video_src: Option<AppSrc>,
    audio_src: Option<AppSrc>,
    has_video: bool,
    origin: Arc<AtomicU64>,
    zero: Instant,
}

/// Origin not yet known.
const NO_ORIGIN: u64 = u64::MAX;

impl Pipeline {
    /// Builds the run described by `plan`; encoded output goes to `out`. `keyframe_wanted` is
    /// called when the depayloader lost its picture and needs a keyframe from the publisher.
    /// `zero` is the instant the run's running time starts from: RTP packets are stamped with
    /// the running time at which they were received (packets buffered before the pipeline
    /// existed keep their true arrival times, so the jitter buffer maps RTP time to running
    /// time without the offset a burst of stale packets would cause).
    pub fn build(
        plan: &PipelinePlan,
        zero: Instant,
        out: mpsc::Sender<Output>,
        keyframe_wanted: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Self, PipelineError> {
        let description = describe(plan);
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| PipelineError::Build(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| PipelineError::Build("not a pipeline".into()))?;
        let appsrc = |name: &str| {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<AppSrc>().ok())
        };
        let video_src = appsrc("vsrc");
        let audio_src = appsrc("asrc");
        if let Some(src) = &video_src {
            watch_keyframe_requests(src, keyframe_wanted);
        }
        let origin = Arc::new(AtomicU64::new(NO_ORIGIN));
        if let Some(tee) = pipeline.by_name("vt") {
            force_keyframes_on_grid(&tee, plan.segment, Arc::clone(&origin));
        }
        if let (Source::File { path, .. }, Some(file)) = (&plan.source, pipeline.by_name("file")) {
            file.set_property("location", path.to_string_lossy().as_ref());
        }
        let outputs = plan.outputs().len();
        for track in 0..outputs {
            let sink = pipeline
                .by_name(&format!("out{track}"))
                .and_then(|e| e.downcast::<AppSink>().ok())
                .ok_or_else(|| PipelineError::Build(format!("no sink out{track}")))?;
            sink.set_callbacks(crate::sinks::encoded_callbacks(track, out.clone()));
        }
        if let Some(poster) = pipeline
            .by_name("poster")
            .and_then(|e| e.downcast::<AppSink>().ok())
        {
            poster.set_callbacks(crate::sinks::poster_callbacks(out));
        }
        if matches!(plan.source, Source::Rtp { .. }) {
            let clock = gst::SystemClock::obtain();
            let since_zero = gst::ClockTime::from_nseconds(zero.elapsed().as_nanos() as u64);
            let now = clock.time();
            pipeline.use_clock(Some(&clock));
            pipeline.set_start_time(gst::ClockTime::NONE);
            pipeline.set_base_time(now.saturating_sub(since_zero));
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| PipelineError::Start(e.to_string()))?;
        Ok(Self {
            pipeline,
            video_src,
            audio_src,
            has_video: plan.source.has_video(),
            origin,
            zero,
        })
    }

    /// The instant running time zero stands for.
    pub fn zero(&self) -> Instant {
        self.zero
    }

    /// Running time of the run's time zero: the first decoded video frame, or for a run
    /// without video the first audio frame offered here. Segment boundaries are multiples of
    /// the segment length from it.
    pub fn origin_ns(&self, first_audio_ns: u64) -> Option<u64> {
        if !self.has_video {
            let _ = self.origin.compare_exchange(
                NO_ORIGIN,
                first_audio_ns,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        Some(self.origin.load(Ordering::Acquire)).filter(|o| *o != NO_ORIGIN)
    }

    /// Feeds one RTP packet (wire format) of the given kind, received at `received`. The
    /// buffer wraps `rtp` without copying it.
    pub fn push(&self, kind: MediaKind, rtp: Bytes, received: Instant) {
        let src = match kind {
            MediaKind::Video => &self.video_src,
            MediaKind::Audio => &self.audio_src,
        };
        if let Some(src) = src {
            push_rtp(src, self.zero, rtp, received);
        }
    }

    pub fn bus(&self) -> Option<gst::Bus> {
        self.pipeline.bus()
    }

    /// How far a file source has been read, as a fraction of its duration.
    pub fn progress(&self) -> Option<f64> {
        let position = self.pipeline.query_position::<gst::ClockTime>()?;
        let duration = self.pipeline.query_duration::<gst::ClockTime>()?;
        (duration.nseconds() > 0)
            .then(|| (position.nseconds() as f64 / duration.nseconds() as f64).clamp(0.0, 1.0))
    }

    /// Observes each stage's latency into `metrics` (a live run's; see `stages`).
    pub fn watch_stages(&self, metrics: &crate::metrics::HlsMetrics) {
        crate::stages::watch(&self.pipeline, metrics);
    }

    /// Fed live from the SFU (not a file read as fast as it decodes).
    pub fn is_live(&self) -> bool {
        self.video_src.is_some() || self.audio_src.is_some()
    }

    /// The pipeline's running time now: the clock that stamps arriving RTP.
    pub fn running_time_ns(&self) -> Option<u64> {
        self.pipeline.current_running_time().map(|t| t.nseconds())
    }

    /// Makes the run fail as an element error would (an operator's forced restart).
    pub fn fail(&self, why: &str) {
        gst::element_error!(self.pipeline, gst::CoreError::Failed, ("{}", why));
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The depayloader asks upstream for a keyframe when it lost packets: pass that on to the SFU.
fn watch_keyframe_requests(src: &AppSrc, keyframe_wanted: Arc<dyn Fn() + Send + Sync>) {
    let Some(pad) = src.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data
            && gstreamer_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
        {
            keyframe_wanted();
        }
        gst::PadProbeReturn::Ok
    });
}

/// Sets the run's origin at the first decoded frame, then sends a force-key-unit event through
/// the tee at every segment grid line from it, so every rendition's encoder starts a GOP on
/// the same decoded frame.
fn force_keyframes_on_grid(tee: &gst::Element, segment: Duration, origin: Arc<AtomicU64>) {
    let Some(pad) = tee.static_pad("sink") else {
        return;
    };
    let step = segment.as_nanos() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Ok;
        };
        let pts = pts.nseconds();
        let _ = origin.compare_exchange(NO_ORIGIN, pts, Ordering::AcqRel, Ordering::Acquire);
        let zero = origin.load(Ordering::Acquire);
        if pts >= next.load(Ordering::Relaxed) {
            let since = pts.saturating_sub(zero);
            next.store(zero + (since / step + 1) * step, Ordering::Relaxed);
            let event = gstreamer_video::DownstreamForceKeyUnitEvent::builder()
                .running_time(gst::ClockTime::from_nseconds(pts))
                .all_headers(true)
                .count(count.fetch_add(1, Ordering::Relaxed) as u32)
                .build();
            pad.send_event(event);
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PipelinePlan {
        PipelinePlan {
            source: Source::Rtp {
                video: Some((Codec::H264, 102)),
                audio: Some(111),
            },
            renditions: crate::ladder::plan(
                1280,
                720,
                &crate::config::HlsConfig::default().renditions,
            ),
            encoder: EncoderChoice::X264,
            x264_preset: "veryfast".into(),
            segment: Duration::from_secs(2),
            audio_bitrate_kbps: 128,
        }
    }

    #[test]
    fn description_names_every_output() {
        let d = describe(&plan());
        for name in ["out0", "out1", "out2", "out3", "poster", "vsrc", "asrc"] {
            assert!(d.contains(&format!("name={name} ")), "{name}: {d}");
        }
        assert!(d.contains("key-int-max=60") && d.contains("rc-lookahead=0"));
        assert!(d.contains("width=854,height=480,framerate=30/1"));
        let audio_only = PipelinePlan {
            source: Source::Rtp {
                video: None,
                audio: Some(111),
            },
            ..plan()
        };
        let d = describe(&audio_only);
        assert!(d.contains("name=out0 ") && !d.contains("vsrc") && !d.contains("poster"));
        let file = PipelinePlan {
            source: Source::File {
                path: "/tmp/a b.mp4".into(),
                video: true,
                audio: true,
            },
            ..plan()
        };
        let d = describe(&file);
        assert!(d.starts_with("filesrc name=file ! decodebin name=dec dec. ! video/x-raw"));
        assert!(
            d.contains("dec. ! audio/x-raw") && !d.contains("appsrc"),
            "{d}"
        );
    }

    #[test]
    fn the_description_parses_into_a_pipeline() {
        init().expect("GStreamer with the ladder's plugins");
        let (tx, _rx) = mpsc::channel(8);
        let p = Pipeline::build(&plan(), Instant::now(), tx, Arc::new(|| {})).expect("pipeline");
        assert!(p.bus().is_some());
    }
}
