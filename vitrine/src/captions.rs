//! Wires live captions into the server: loads the Whisper model once, builds the Transcriber
//! pool and the captions role, and hands every caption to the stream's chat room (`caption`
//! events, which reach every node of a cluster through the chat's Redis log) and, finals only,
//! to its HLS subtitle renditions when this node packages the stream. A node that packages a
//! stream captioned elsewhere places that node's finals from the chat log ([`follow_remote`]).

use crate::config::SubtitlesConfig;
use anyhow::Context;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use vitrine_chat::Chat;
use vitrine_chat::protocol::{CaptionKind, RoomEvent};
use vitrine_core::{LoggedEvent, StreamId};
use vitrine_sfu::router::Router;
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

/// Milliseconds since the Unix epoch now.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time (Unix milliseconds) of `at`, given that `now` is `now_ms`.
fn wall_ms(at: Instant, now: Instant, now_ms: u64) -> u64 {
    now_ms.saturating_sub(now.saturating_duration_since(at).as_millis() as u64)
}

/// The instant of wall-clock time `unix_ms`, given that `now` is `now_ms` (`None` before this
/// process's clock can tell).
fn instant_of(unix_ms: u64, now: Instant, now_ms: u64) -> Option<Instant> {
    if unix_ms <= now_ms {
        now.checked_sub(Duration::from_millis(now_ms - unix_ms))
    } else {
        now.checked_add(Duration::from_millis(unix_ms - now_ms))
    }
}

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
            wall_start_ms: Some(wall_ms(c.started, Instant::now(), unix_now_ms())),
            wall_end_ms: Some(wall_ms(c.ended, Instant::now(), unix_now_ms())),
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

/// How long a followed stream may stay off the air before its follower stops (as long as the
/// HLS role waits before finalising a recording, by default).
const REMOTE_GRACE: Duration = Duration::from_secs(30);

/// Finals captioned on another node (a subtitles node, or the stream's own media node) into
/// this node's HLS subtitle renditions: for every stream announced on `packaged` that this
/// node does not caption itself (`local`), the stream's chat room is followed and each final
/// placed on the media timeline by the wall-clock time its audio reached the captioning node.
/// A follower stops once its stream has been off the air [`REMOTE_GRACE`].
pub fn follow_remote(
    chat: &Chat,
    hls: &Arc<Hls>,
    local: Option<Arc<LiveCaptions>>,
    packaged: broadcast::Receiver<Arc<Router>>,
    stop: CancellationToken,
) {
    let followers: Arc<Mutex<HashMap<StreamId, tokio::task::JoinHandle<()>>>> = Arc::default();
    let (chat, hls) = (chat.clone(), Arc::clone(hls));
    let each = stop.clone();
    tokio::spawn(vitrine_sfu::each_publisher(
        packaged,
        each,
        "remote captions",
        move |router| {
            let mut all = followers.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|_, task| !task.is_finished());
            let stream = router.stream().clone();
            if !all.contains_key(&stream) {
                let follower = Follower {
                    chat: chat.clone(),
                    hls: Arc::clone(&hls),
                    local: local.clone(),
                    stream: stream.clone(),
                };
                let task = tokio::spawn(follower.run(router.source(), stop.clone()));
                all.insert(stream, task);
            }
            std::future::ready(())
        },
    ));
}

/// Places one stream's remote finals.
struct Follower {
    chat: Chat,
    hls: Arc<Hls>,
    local: Option<Arc<LiveCaptions>>,
    stream: StreamId,
}

impl Follower {
    async fn run(
        self,
        source: tokio::sync::watch::Receiver<vitrine_sfu::router::SourceInfo>,
        stop: CancellationToken,
    ) {
        let mut events = match self.chat.follow(&self.stream).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "remote captions unavailable");
                return;
            }
        };
        let off_air = off_air(source);
        tokio::pin!(off_air);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut off_air => return,
                event = events.recv() => match event {
                    Ok(event) => self.place(&event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(stream = %self.stream, missed = n, "remote captions missed");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// A final of another node, into the renditions; anything else is not this follower's.
    fn place(&self, event: &LoggedEvent) {
        if event.audience.is_some() {
            return;
        }
        let Ok(RoomEvent::Caption {
            kind: CaptionKind::Final,
            lang,
            text,
            wall_start_ms: Some(start),
            wall_end_ms: Some(end),
            ..
        }) = serde_json::from_str(&event.payload)
        else {
            return;
        };
        if self
            .local
            .as_ref()
            .is_some_and(|l| l.is_captioning(&self.stream))
        {
            return; // this node's own captions reach HLS directly
        }
        let (now, now_ms) = (Instant::now(), unix_now_ms());
        if let (Some(started), Some(ended)) =
            (instant_of(start, now, now_ms), instant_of(end, now, now_ms))
        {
            self.hls.caption(&self.stream, &lang, started, ended, &text);
        }
    }
}

/// Resolves once the source has been off the air [`REMOTE_GRACE`] in a row, or its router is
/// gone.
async fn off_air(mut source: tokio::sync::watch::Receiver<vitrine_sfu::router::SourceInfo>) {
    loop {
        if source.wait_for(|s| !s.live).await.is_err() {
            return;
        }
        match tokio::time::timeout(REMOTE_GRACE, source.wait_for(|s| s.live)).await {
            Ok(Ok(_)) => continue,
            _ => return,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_times_map_onto_this_process_clock_and_back() {
        let now = Instant::now() + Duration::from_secs(100);
        let now_ms = 1_800_000_000_000;
        let spoken = now - Duration::from_millis(1_250);
        assert_eq!(wall_ms(spoken, now, now_ms), now_ms - 1_250);
        assert_eq!(instant_of(now_ms - 1_250, now, now_ms), Some(spoken));
        // Another node's clock a little ahead: the cue lands a little in the future.
        assert_eq!(
            instant_of(now_ms + 40, now, now_ms),
            Some(now + Duration::from_millis(40))
        );
        // An instant after `now` has no age.
        assert_eq!(wall_ms(now + Duration::from_secs(1), now, now_ms), now_ms);
    }
}
