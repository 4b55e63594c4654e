//! Live captions for every live stream: the SFU announces a publisher, a session joins its
//! router as a tap (not a viewer), decodes its Opus audio, and drives a [`Captioner`] with
//! decodes on the shared [`Pool`]. Cues go to the [`CaptionSink`]s the binary wires in (the
//! chat room, the HLS subtitle renditions), finals also translated into each configured
//! language.
//!
//! This module is the IO edge: the policy is [`crate::captioner`], the model [`Pool`].

use crate::agreement::{Word, words_of};
use crate::captioner::{Captioner, CaptionerConfig, CueKind, LiveCue, RATE};
use crate::live_audio::{CHUNK_QUEUE, Chunk, OpusDecoder};
use crate::pool::{Pool, Slot, Timing};
use crate::transcriber::{Request, Segment, TranscribeError};
use crate::translate::Translator;
use futures::StreamExt;
use rtc::shared::marshal::Marshal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vitrine_core::StreamId;
use vitrine_sfu::codec::{Codec, MediaKind};
use vitrine_sfu::router::{Router, SourceInfo};

/// How long the codecs of a new publisher may take to be announced.
const CODEC_WAIT: Duration = Duration::from_secs(2);
/// Finals of one stream waiting for translation before more are let through untranslated.
const TRANSLATION_QUEUE: usize = 16;

/// What the live role does.
#[derive(Debug, Clone, Default)]
pub struct LiveConfig {
    pub captioner: CaptionerConfig,
    /// The sellers' spoken language; `None` lets a multilingual model detect it.
    pub language: Option<String>,
}

/// A caption of a live stream as sinks receive it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Caption {
    /// Partials and the finals that settle them share it.
    pub utterance: u64,
    pub kind: CueKind,
    /// BCP 47 primary language subtag (`en`, `es`).
    pub language: String,
    /// Milliseconds since the stream's captions started.
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// When the first and last words were received (maps the cue onto any media timeline).
    #[serde(skip)]
    pub started: Instant,
    #[serde(skip)]
    pub ended: Instant,
}

/// Where captions go. Called from the stream's session in order; must not block for long.
#[async_trait::async_trait]
pub trait CaptionSink: Send + Sync + 'static {
    async fn caption(&self, stream: &StreamId, caption: &Caption);
}

/// A target language and the backend that translates into it.
#[derive(Clone)]
pub struct Translation {
    pub language: String,
    pub translator: Arc<dyn Translator>,
}

/// The live captions role of one process.
pub struct LiveCaptions {
    pool: Arc<Pool>,
    config: LiveConfig,
    sinks: Vec<Arc<dyn CaptionSink>>,
    translations: Vec<Translation>,
    shutdown: CancellationToken,
    sessions: Mutex<HashMap<StreamId, tokio::task::JoinHandle<()>>>,
}

impl LiveCaptions {
    pub fn new(
        pool: Arc<Pool>,
        config: LiveConfig,
        sinks: Vec<Arc<dyn CaptionSink>>,
        translations: Vec<Translation>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            config,
            sinks,
            translations,
            shutdown: CancellationToken::new(),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The language captions are in before translation.
    pub fn source_language(&self) -> &str {
        self.config.language.as_deref().unwrap_or("en")
    }

    /// The languages captions come in: the spoken one, then the translations.
    pub fn languages(&self) -> Vec<String> {
        std::iter::once(self.source_language().to_owned())
            .chain(self.translations.iter().map(|t| t.language.clone()))
            .collect()
    }

    /// Captions every stream `went_live` announces, until [`Self::shutdown`].
    pub fn spawn(
        self: &Arc<Self>,
        went_live: broadcast::Receiver<Arc<Router>>,
    ) -> tokio::task::JoinHandle<()> {
        let live = Arc::clone(self);
        let stop = self.shutdown.clone();
        tokio::spawn(vitrine_sfu::each_publisher(
            went_live,
            stop,
            "captions",
            move |router| {
                live.on_live(router);
                std::future::ready(())
            },
        ))
    }

    fn on_live(self: &Arc<Self>, router: Arc<Router>) {
        let stream = router.stream().clone();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, task| !task.is_finished());
        if sessions.contains_key(&stream) {
            return; // the running session follows the new publisher itself
        }
        let live = Arc::clone(self);
        let span = tracing::info_span!("captions", %stream);
        let task = tokio::spawn(async move { live.run_stream(router).await }.instrument(span));
        sessions.insert(stream, task);
    }

    /// Whether a session captions `stream` here now.
    pub fn is_captioning(&self, stream: &StreamId) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(stream).is_some_and(|task| !task.is_finished())
    }

    /// Stops every session.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks: Vec<_> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.drain().map(|(_, t)| t).collect()
        };
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Captions one stream while its publisher is live (and follows a replacing publisher).
    async fn run_stream(self: Arc<Self>, router: Arc<Router>) {
        let mut source = router.source();
        let mut slot = match self.pool.slot() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "no decoding state for captions");
                return;
            }
        };
        let metrics = Arc::clone(self.pool.metrics());
        metrics.live_streams.inc();
        let zero = Instant::now();
        let mut utterances = 0;
        let translate = self.translating(router.stream().clone());
        while let Some(pt) = wait_for_opus(&mut source, &self.shutdown).await {
            let generation = source.borrow().generation;
            tracing::info!("live captions started");
            let run = Run {
                router: &router,
                generation,
                pt,
                zero,
                first_utterance: utterances,
                translate: translate.as_ref(),
            };
            match self
                .run_once(run, &mut source, &mut slot, &mut utterances)
                .await
            {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "live captions stopped");
                    break;
                }
            }
        }
        metrics.live_streams.dec();
    }

    /// One publisher's captions; `Ok(true)` when another publisher took over.
    async fn run_once(
        &self,
        run: Run<'_>,
        source: &mut watch::Receiver<SourceInfo>,
        slot: &mut Option<Slot>,
        utterances: &mut u64,
    ) -> Result<bool, String> {
        let mut leg = run.router.join_tap();
        let (tx, mut chunks) = mpsc::channel::<Chunk>(CHUNK_QUEUE);
        let decoder = OpusDecoder::start(run.pt, run.zero, tx).map_err(|e| e.to_string())?;
        let mut messages = decoder.bus().ok_or("audio decoder without a bus")?.stream();
        let mut captioner = Captioner::new(self.config.captioner.clone());
        // Instant of sample position 0, set by the first chunk.
        let mut origin: Option<Instant> = None;
        let metrics = Arc::clone(self.pool.metrics());
        // Dropped audio already counted in the metric, whole seconds.
        let mut dropped = 0u64;
        let request = Request {
            language: self.config.language.clone(),
            fit_audio_context: true,
            no_fallback: true,
            ..Default::default()
        };
        // The decode under way: it owns the stream's slot until it returns it.
        let mut decoding: Option<tokio::task::JoinHandle<Decoded>> = None;
        let ended = loop {
            if decoding.is_none()
                && let Some(job) = captioner.next_job()
                && let Some(mut s) = slot.take()
            {
                let pool = Arc::clone(&self.pool);
                let request = request.clone();
                decoding = Some(tokio::spawn(async move {
                    let result = pool.decode(&mut s, job.audio, request, job.prompt).await;
                    Decoded {
                        slot: s,
                        id: job.id,
                        start: job.start,
                        result,
                    }
                }));
            }
            tokio::select! {
                packet = leg.recv() => {
                    let Some(f) = packet else { break Ok(false) };
                    if f.kind == MediaKind::Audio && f.packet.header.payload_type == run.pt
                        && let Ok(wire) = f.packet.marshal()
                    {
                        decoder.push(wire.freeze(), Instant::now());
                    }
                }
                chunk = chunks.recv() => {
                    let Some(chunk) = chunk else { break Err("audio decoder stopped".to_owned()) };
                    let base = *origin.get_or_insert(chunk.at);
                    // A chunk after a gap (chunks dropped) goes where its time says.
                    let due = (chunk.at.saturating_duration_since(base).as_secs_f64()
                        * RATE as f64) as u64;
                    if due > captioner.heard() + RATE / 10 {
                        let gap = (due - captioner.heard()).min(RATE * 30) as usize;
                        captioner.push(&vec![0.0; gap]);
                    }
                    captioner.push(&chunk.samples);
                    // Whole seconds reported so far; the remainder waits for the next drop.
                    let seconds = captioner.dropped() / RATE;
                    if seconds > dropped {
                        metrics.dropped_audio_seconds.inc_by(seconds - dropped);
                        dropped = seconds;
                    }
                }
                joined = async { decoding.as_mut().expect("guarded").await }, if decoding.is_some() => {
                    decoding = None;
                    let Ok(done) = joined else { break Err("caption decode panicked".to_owned()) };
                    *slot = Some(done.slot);
                    let cues = match done.result {
                        Ok((segments, timing)) => {
                            tracing::debug!(
                                id = done.id,
                                waited = ?timing.waited,
                                ran = ?timing.ran,
                                heard = ?segments.iter().map(|s| (s.cue.text.as_str(), s.no_speech)).collect::<Vec<_>>(),
                                "caption decode"
                            );
                            if captioner.step() > self.config.captioner.step {
                                metrics.degraded_steps.inc();
                            }
                            captioner.done(done.id, words(&segments, done.start), took(timing))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "caption decode failed");
                            captioner.failed(done.id);
                            Vec::new()
                        }
                    };
                    if let Some(base) = origin {
                        for cue in cues {
                            self.hand_out(&run, cue, base, utterances).await;
                        }
                    }
                }
                message = messages.next() => {
                    if let Some(gstreamer::MessageView::Error(e)) = message.as_ref().map(|m| m.view()) {
                        break Err(format!("audio decoder: {}", e.error()));
                    }
                }
                changed = source.changed() => {
                    if changed.is_err() {
                        break Ok(false);
                    }
                    let info = source.borrow().clone();
                    if !info.live {
                        break Ok(false);
                    }
                    if info.generation != run.generation {
                        break Ok(true);
                    }
                }
                _ = self.shutdown.cancelled() => break Ok(false),
            }
        };
        // A decode still running keeps the slot: wait for it (one step at most).
        if let Some(task) = decoding
            && let Ok(done) = task.await
        {
            *slot = Some(done.slot);
        }
        if slot.is_none() {
            *slot = self.pool.slot().ok();
        }
        ended
    }

    /// Sends a cue (and, when final, its translations) to every sink.
    async fn hand_out(&self, run: &Run<'_>, cue: LiveCue, base: Instant, utterances: &mut u64) {
        let stream = run.router.stream();
        let zero = run.zero;
        let metrics = self.pool.metrics();
        let at = |pos: u64| base + Duration::from_secs_f64(pos as f64 / RATE as f64);
        let started = at(cue.start);
        let ended = at(cue.end);
        let utterance = run.first_utterance + cue.utterance;
        *utterances = (*utterances).max(utterance + 1);
        let ms = |i: Instant| i.saturating_duration_since(zero).as_millis() as u64;
        let caption = Caption {
            utterance,
            kind: cue.kind,
            language: self.source_language().to_owned(),
            start_ms: ms(started),
            end_ms: ms(ended),
            text: cue.text,
            started,
            ended,
        };
        match cue.kind {
            CueKind::Partial => {
                metrics.partial_cues.inc();
            }
            CueKind::Final => {
                metrics.final_cues.inc();
                metrics.final_latency.observe(ended.elapsed().as_secs_f64());
            }
        };
        for sink in &self.sinks {
            sink.caption(stream, &caption).await;
        }
        if let (CueKind::Final, Some(translate)) = (caption.kind, run.translate) {
            if translate.try_send(caption).is_err() {
                metrics.translations_dropped.inc();
                tracing::warn!("caption translations behind: a final goes untranslated");
            }
        }
    }

    /// The stream's translation task, when translations are configured: it translates finals
    /// in order into each language and hands them to the sinks, apart from the captioning
    /// loop, so a slow translator delays the translations, not the next caption. It ends once
    /// the returned sender is dropped and what was queued is done. Overflow policy: a final
    /// that finds [`TRANSLATION_QUEUE`] finals waiting is not translated (counted).
    fn translating(&self, stream: StreamId) -> Option<mpsc::Sender<Caption>> {
        if self.translations.is_empty() {
            return None;
        }
        let (tx, mut finals) = mpsc::channel::<Caption>(TRANSLATION_QUEUE);
        let (sinks, translations) = (self.sinks.clone(), self.translations.clone());
        tokio::spawn(async move {
            while let Some(caption) = finals.recv().await {
                for t in &translations {
                    match t
                        .translator
                        .translate(&caption.text, &caption.language, &t.language)
                        .await
                    {
                        Ok(text) if !text.trim().is_empty() => {
                            let translated = Caption {
                                language: t.language.clone(),
                                text,
                                ..caption.clone()
                            };
                            for sink in &sinks {
                                sink.caption(&stream, &translated).await;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(language = %t.language, error = %e, "caption translation failed")
                        }
                    }
                }
            }
        });
        Some(tx)
    }
}

/// One publisher's run of a stream's captions.
struct Run<'a> {
    router: &'a Arc<Router>,
    generation: u64,
    pt: u8,
    /// When the stream's captions started: caption times count from it.
    zero: Instant,
    /// Utterance numbers continue across publishers.
    first_utterance: u64,
    /// Finals to translate, when translations are configured.
    translate: Option<&'a mpsc::Sender<Caption>>,
}

/// A finished decode, with the stream's slot it borrowed.
struct Decoded {
    slot: Slot,
    id: u64,
    start: u64,
    result: Result<(Vec<Segment>, Timing), TranscribeError>,
}

/// What a decode took as the live policy sees it.
fn took(t: Timing) -> Duration {
    t.waited + t.ran
}

/// The words of decoded segments, at stream positions (segments are relative to `start`).
fn words(segments: &[Segment], start: u64) -> Vec<Word> {
    let pos = |d: Duration| start + (d.as_secs_f64() * RATE as f64) as u64;
    segments
        .iter()
        .flat_map(|s| words_of(&s.cue.text, pos(s.cue.start), pos(s.cue.end)))
        .collect()
}

/// The Opus payload type of the source once it is live (video may come without audio: such
/// a stream has nothing to caption and is waited on); `None` on shutdown or when the router
/// is gone.
async fn wait_for_opus(
    source: &mut watch::Receiver<SourceInfo>,
    shutdown: &CancellationToken,
) -> Option<u8> {
    let give_up = tokio::time::Instant::now() + CODEC_WAIT;
    loop {
        let info = source.borrow_and_update().clone();
        if info.live
            && let Some(c) = info.codecs.iter().find(|c| c.codec == Codec::Opus)
        {
            return Some(c.payload_type);
        }
        tokio::select! {
            changed = source.changed() => if changed.is_err() { return None },
            _ = tokio::time::sleep_until(give_up), if !info.live => return None,
            _ = shutdown.cancelled() => return None,
        }
    }
}
