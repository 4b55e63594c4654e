//! Wires live captions into the server: loads the Whisper model once, builds the Transcriber
//! pool and the captions role, and hands every caption to the stream's chat room (`caption`
//! events, which reach every node of a cluster through the chat's Redis log) and, finals only,
//! to its HLS subtitle renditions when this node packages the stream.

use crate::config::SubtitlesConfig;
use anyhow::Context;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::Arc;
use vitrine_chat::Chat;
use vitrine_chat::protocol::{CaptionKind, RoomEvent};
use vitrine_core::StreamId;
use vitrine_subtitles::captioner::{CaptionerConfig, CueKind};
use vitrine_subtitles::live::{Caption, CaptionSink, LiveCaptions, LiveConfig, Translation};
use vitrine_subtitles::metrics::SubtitleMetrics;
use vitrine_subtitles::pool::Pool;
use vitrine_subtitles::replay::ReplaySubtitles;
use vitrine_subtitles::transcriber::Transcriber;
use vitrine_subtitles::translate::{LibreTranslate, Translator};
use vitrine_transcode::Hls;

/// Captions into the stream's chat room.
struct ChatCaptions(Chat);

#[async_trait::async_trait]
impl CaptionSink for ChatCaptions {
    async fn caption(&self, stream: &StreamId, c: &Caption) {
        let event = RoomEvent::Caption {
            utterance: c.utterance,
            kind: match c.kind {
                CueKind::Partial => CaptionKind::Partial,
                CueKind::Final => CaptionKind::Final,
            },
            lang: c.language.clone(),
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            text: c.text.clone(),
        };
        if let Err(e) = self.0.publish(stream, None, &event).await {
            tracing::warn!(%stream, error = %e, "publishing a caption to chat");
        }
    }
}

/// Final captions into the stream's WebVTT subtitle renditions.
struct HlsCaptions(Arc<Hls>);

#[async_trait::async_trait]
impl CaptionSink for HlsCaptions {
    async fn caption(&self, stream: &StreamId, c: &Caption) {
        if c.kind == CueKind::Final {
            self.0
                .caption(stream, &c.language, c.started, c.ended, &c.text);
        }
    }
}

/// The languages captions come in: the spoken one, then the translations.
pub fn languages(config: &SubtitlesConfig) -> Vec<String> {
    std::iter::once(config.language.clone())
        .chain(config.translate.iter().cloned())
        .collect()
}

/// Loads the configured Whisper model (off the async runtime: it reads a file of tens to
/// hundreds of megabytes).
pub async fn load_model(config: &SubtitlesConfig, data_dir: &Path) -> anyhow::Result<Transcriber> {
    let model = match &config.model {
        Some(m) => m.clone(),
        None => {
            let dir = data_dir.to_owned();
            tokio::task::spawn_blocking(move || crate::models::default_model(&dir)).await??
        }
    };
    tokio::task::spawn_blocking(move || Transcriber::open(&model))
        .await?
        .context("loading the Whisper model")
}

/// The Whisper pool when subtitles are on, a role of this node uses it and the model loads;
/// without it the server runs uncaptioned (said once in the log).
pub async fn load_pool(
    config: &crate::config::Config,
    registry: &mut Registry,
) -> Option<Arc<Pool>> {
    // Only live captions (media, subtitles) and replay jobs (subtitles) use the model.
    let uses_it = config.roles.media || config.roles.subtitles;
    if !config.subtitles.enabled || !uses_it {
        return None;
    }
    match load_model(&config.subtitles, &config.data_dir).await {
        Ok(t) => Some(pool(&config.subtitles, t, registry)),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "subtitles are off (turn them off explicitly with --no-subtitles)");
            None
        }
    }
}

/// The Transcriber pool around a loaded model: live captions and replay jobs share it.
pub fn pool(
    config: &SubtitlesConfig,
    transcriber: Transcriber,
    registry: &mut Registry,
) -> Arc<Pool> {
    let metrics = Arc::new(SubtitleMetrics::default());
    metrics.register(registry);
    Arc::new(Pool::new(
        Arc::new(transcriber),
        config.workers,
        config.threads,
        metrics,
    ))
}

/// The configured text translator.
fn translator(config: &SubtitlesConfig) -> anyhow::Result<Option<Arc<dyn Translator>>> {
    Ok(match &config.libretranslate_url {
        Some(url) => Some(Arc::new(LibreTranslate::new(
            url,
            config.libretranslate_api_key.clone(),
        )?)),
        None => None,
    })
}

/// Live captions where this node runs them: for its own publishers when it has the media
/// role, and for the streams of other nodes its cluster hands it when it has the subtitles
/// role (see [`crate::roles::ClusterWork`]). `None` without a model or either role.
pub fn start(
    config: &crate::config::Config,
    pool: Option<&Arc<Pool>>,
    chat: &Chat,
    hls: Option<&Arc<Hls>>,
    sfu: &vitrine_sfu::Sfu,
    work: &crate::roles::ClusterWork,
) -> anyhow::Result<Option<Arc<LiveCaptions>>> {
    let roles = config.roles;
    let Some(pool) = pool.filter(|_| roles.media || roles.subtitles) else {
        return Ok(None);
    };
    let live = live(&config.subtitles, Arc::clone(pool), chat, hls)?;
    if roles.media {
        live.spawn(sfu.went_live.subscribe());
    }
    if roles.subtitles {
        live.spawn(work.captions.subscribe());
    }
    Ok(Some(live))
}

/// The live captions role (not started).
pub fn live(
    config: &SubtitlesConfig,
    pool: Arc<Pool>,
    chat: &Chat,
    hls: Option<&Arc<Hls>>,
) -> anyhow::Result<Arc<LiveCaptions>> {
    let mut sinks: Vec<Arc<dyn CaptionSink>> = vec![Arc::new(ChatCaptions(chat.clone()))];
    if let Some(hls) = hls {
        sinks.push(Arc::new(HlsCaptions(Arc::clone(hls))));
    }
    let translations = match translator(config)? {
        Some(translator) => config
            .translate
            .iter()
            .map(|language| Translation {
                language: language.clone(),
                translator: translator.clone(),
            })
            .collect(),
        None => Vec::new(),
    };
    let live = LiveConfig {
        captioner: CaptionerConfig {
            step: config.step,
            ..CaptionerConfig::default()
        },
        language: Some(config.language.clone()),
    };
    Ok(LiveCaptions::new(pool, live, sinks, translations))
}

/// The replay subtitles job runner: English from another language through Whisper's own
/// translation when the model is multilingual, every other language through the translator.
pub fn replays(
    config: &SubtitlesConfig,
    pool: Arc<Pool>,
    hls: Arc<Hls>,
) -> anyhow::Result<Arc<ReplaySubtitles>> {
    let translator = translator(config)?;
    let whisper_english = config.language != "en" && pool.model().multilingual();
    let translations = config
        .translate
        .iter()
        .filter_map(|language| {
            if language == "en" && whisper_english {
                Some((language.clone(), None))
            } else {
                translator.clone().map(|t| (language.clone(), Some(t)))
            }
        })
        .collect();
    Ok(Arc::new(ReplaySubtitles::new(
        hls,
        pool,
        Some(config.language.clone()),
        translations,
    )))
}
