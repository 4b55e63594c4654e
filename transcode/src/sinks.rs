//! The ends of a run's pipeline: each `appsink` hands its encoded access units (with their
//! codec parameters when they change, and times in running time) or the poster's JPEGs to the
//! run's packager through a bounded queue.

use crate::pipeline::{Encoded, Output, TrackCaps};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer_app::AppSinkCallbacks;
use tokio::sync::mpsc;

fn caps_of(sample: &gst::Sample) -> Option<TrackCaps> {
    let s = sample.caps()?.structure(0)?;
    let codec_data = s.get::<gst::Buffer>("codec_data").ok()?;
    let codec_data = Bytes::copy_from_slice(&codec_data.map_readable().ok()?);
    if s.name().starts_with("video/") {
        Some(TrackCaps::Video {
            width: u16::try_from(s.get::<i32>("width").ok()?).ok()?,
            height: u16::try_from(s.get::<i32>("height").ok()?).ok()?,
            codec_data,
        })
    } else {
        Some(TrackCaps::Audio {
            rate: u32::try_from(s.get::<i32>("rate").ok()?).ok()?,
            channels: u16::try_from(s.get::<i32>("channels").ok()?).ok()?,
            codec_data,
        })
    }
}

pub fn encoded_callbacks(track: usize, out: mpsc::Sender<Output>) -> AppSinkCallbacks {
    let mut last_caps: Option<TrackCaps> = None;
    AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
            let Some(pts) = buffer.pts() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let caps = caps_of(&sample).filter(|c| last_caps.as_ref() != Some(c));
            if caps.is_some() {
                last_caps.clone_from(&caps);
            }
            if last_caps.is_none() {
                return Ok(gst::FlowSuccess::Ok); // nothing can be packaged without codec data
            }
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            // Encoders shift their output segment (x264enc by 1000 h, to keep DTS positive):
            // only running time compares across outputs.
            let running = |t: gst::ClockTime| {
                sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                    .and_then(|s| s.to_running_time(t))
            };
            let Some(pts_rt) = running(pts) else {
                return Ok(gst::FlowSuccess::Ok); // outside the segment: never shown
            };
            let dts_rt = buffer.dts().and_then(running).unwrap_or(pts_rt);
            let encoded = Encoded {
                track,
                pts_ns: pts_rt.nseconds(),
                dts_ns: dts_rt.nseconds(),
                duration_ns: buffer.duration().map(|d| d.nseconds()),
                keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                data: Bytes::copy_from_slice(&map),
                caps,
            };
            // Not a tokio thread: blocking here is the back-pressure the queue promises.
            out.blocking_send(Output::Encoded(encoded))
                .map_err(|_| gst::FlowError::Flushing)?;
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

pub fn poster_callbacks(out: mpsc::Sender<Output>) -> AppSinkCallbacks {
    AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let poster = Output::Poster {
                pts_ns: buffer.pts().map_or(0, |t| t.nseconds()),
                jpeg: Bytes::copy_from_slice(&map),
            };
            // A poster is never worth waiting for: drop it when the queue is full.
            let _ = out.try_send(poster);
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}
