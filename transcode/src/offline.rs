//! The offline ladder (`vitrine transcode`): any media file GStreamer reads, through the very
//! pipeline rungs and packager of live streams, into a folder of static HLS (fMP4, VOD
//! playlists, master, poster) that any web server or CDN can serve. Also the transcode-speed
//! benchmark's subject.

use crate::config::HlsConfig;
use crate::ladder::{self, Rendition};
use crate::media::{Manifest, StreamMedia, Variant};
use crate::metrics::HlsMetrics;
use crate::packager::{Packager, save_manifest};
use crate::pipeline::{Output, Pipeline, PipelineError, PipelinePlan, Source};
use crate::playlist::MediaPlaylist;
use crate::store::LocalDisk;
use crate::{Hls, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use gstreamer as gst;
use gstreamer_pbutils as pbutils;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vitrine_core::StreamId;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{0} has neither audio nor video")]
    NoMedia(String),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("transcoding failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a transcode did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub renditions: Vec<Rendition>,
    pub audio: bool,
    /// Video frames encoded by the top rendition.
    pub frames: u64,
    /// Media duration, seconds.
    pub duration_s: f64,
    /// Wall-clock seconds.
    pub wall_s: f64,
}

/// What the input holds.
struct Probe {
    size: Option<(u32, u32)>,
    audio: bool,
}

fn probe(input: &Path) -> Result<Probe, OfflineError> {
    let unreadable = |reason: String| OfflineError::Unreadable {
        path: input.display().to_string(),
        reason,
    };
    let absolute = std::fs::canonicalize(input).map_err(|e| unreadable(e.to_string()))?;
    let uri = gst::glib::filename_to_uri(&absolute, None).map_err(|e| unreadable(e.to_string()))?;
    let discoverer = pbutils::Discoverer::new(gst::ClockTime::from_seconds(30))
        .map_err(|e| unreadable(e.to_string()))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| unreadable(e.to_string()))?;
    let size = info
        .video_streams()
        .first()
        .map(|v| (v.width(), v.height()))
        .filter(|(w, h)| *w > 0 && *h > 0);
    let audio = !info.audio_streams().is_empty();
    if size.is_none() && !audio {
        return Err(OfflineError::NoMedia(input.display().to_string()));
    }
    Ok(Probe { size, audio })
}

/// Transcodes `input` into static HLS under `out`; `progress` hears the fraction read so far.
pub async fn transcode_file(
    input: &Path,
    out: &Path,
    config: &HlsConfig,
    mut progress: impl FnMut(f64),
) -> Result<Summary, OfflineError> {
    crate::pipeline::init()?;
    let probe = probe(input)?;
    let renditions = probe
        .size
        .map(|(w, h)| ladder::plan(w, h, &config.renditions))
        .unwrap_or_default();
    let hls = Hls::new(
        config.clone(),
        Arc::new(LocalDisk::new(out)),
        Arc::new(HlsMetrics::default()),
    )?;
    let media = StreamMedia::new(
        StreamId::parse("offline").expect("a valid id"),
        Manifest {
            variants: renditions
                .iter()
                .map(|r| Variant {
                    rendition: r.clone(),
                    codecs: None,
                })
                .collect(),
            has_audio: probe.audio,
            audio_bitrate_kbps: config.audio_bitrate_kbps,
            ..Manifest::default()
        },
    );
    let plan = PipelinePlan {
        source: Source::File {
            path: input.to_owned(),
            video: !renditions.is_empty(),
            audio: probe.audio,
        },
        renditions: renditions.clone(),
        encoder: config.encoder,
        x264_preset: config.x264_preset.clone(),
        segment: config.segment,
        audio_bitrate_kbps: config.audio_bitrate_kbps,
    };
    let started = Instant::now();
    let mut packager = Packager::begin(&hls, &media, String::new(), &plan);
    let (tx, mut rx) = tokio::sync::mpsc::channel(crate::pipeline::OUTPUT_QUEUE);
    let pipeline = Pipeline::build(&plan, Instant::now(), tx, Arc::new(|| {}))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| OfflineError::Failed("pipeline without a bus".into()))?;
    let mut messages = bus.stream();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut frames = 0u64;
    let video = !renditions.is_empty();
    let mut handle = |output: &Output| {
        if let Output::Encoded(e) = output
            && video
            && e.track == 0
        {
            frames += 1;
        }
    };
    let failure = loop {
        tokio::select! {
            output = rx.recv() => match output {
                Some(output) => {
                    handle(&output);
                    packager.package(&pipeline, output).await;
                }
                None => break Some("pipeline outputs closed".to_owned()),
            },
            message = messages.next() => match message.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Eos(_)) => break None,
                Some(gst::MessageView::Error(e)) => break Some(format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                )),
                Some(_) => {}
                None => break Some("bus closed".to_owned()),
            },
            _ = tick.tick() => if let Some(p) = pipeline.progress() { progress(p) },
        }
    };
    if let Some(why) = failure {
        return Err(OfflineError::Failed(why));
    }
    // Every access unit was queued before its sink saw the end of stream.
    while let Ok(output) = rx.try_recv() {
        handle(&output);
        packager.package(&pipeline, output).await;
    }
    drop(rx);
    drop(pipeline);
    packager.finish().await;
    progress(1.0);
    // A folder of static files: the master and every rendition's VOD playlist.
    let (master, playlists, duration_s) = media.update(|m| {
        m.playlists.values_mut().for_each(MediaPlaylist::end);
        m.ended = true;
        let duration = m
            .playlists
            .values()
            .map(|p| p.segments.iter().map(|s| s.duration).sum::<f64>())
            .fold(0.0, f64::max);
        let playlists: Vec<(String, String)> = m
            .playlists
            .iter()
            .map(|(n, p)| (n.clone(), p.render()))
            .collect();
        (m.master(), playlists, duration)
    });
    let master = master.ok_or_else(|| OfflineError::Failed("no media was encoded".into()))?;
    let store = LocalDisk::new(out);
    use crate::store::MediaStore;
    store.put("master.m3u8", Bytes::from(master)).await?;
    for (name, text) in playlists {
        store
            .put(&format!("{name}/index.m3u8"), Bytes::from(text))
            .await?;
    }
    save_manifest(&hls, &media, "").await;
    Ok(Summary {
        renditions,
        audio: probe.audio,
        frames,
        duration_s,
        wall_s: started.elapsed().as_secs_f64(),
    })
}
