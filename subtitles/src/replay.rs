//! Subtitles of a replay: once a recording is final, its audio is transcribed where someone
//! speaks (voice activity, so no cue falls in a pause), region by region on the shared
//! [`Pool`] (live streams keep their turns), and written as one WebVTT file per language next
//! to the recording, on its media timeline. The replay's master playlist then lists them.

use crate::agreement::words_of;
use crate::audio;
use crate::pool::Pool;
use crate::transcriber::{Request, TranscribeError};
use crate::translate::Translator;
use crate::vad::{VadConfig, speech_regions};
use std::sync::Arc;
use vitrine_core::StreamId;
use vitrine_transcode::Hls;
use vitrine_transcode::text_track::{TextCue, webvtt};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the recording: {0}")]
    Store(#[from] vitrine_transcode::StoreError),
    #[error("decoding the recording's audio: {0}")]
    Audio(String),
    #[error(transparent)]
    Transcribe(#[from] TranscribeError),
}

/// What a replay job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Languages written, the spoken one first.
    pub languages: Vec<String>,
    pub cues: usize,
}

/// Transcribes replays and writes their subtitles.
pub struct ReplaySubtitles {
    hls: Arc<Hls>,
    pool: Arc<Pool>,
    /// What sellers speak; `None` detects it (multilingual models).
    language: Option<String>,
    /// Target languages, each with its text translator (`None`: Whisper's own translation,
    /// for English from a multilingual model).
    translations: Vec<(String, Option<Arc<dyn Translator>>)>,
}

impl ReplaySubtitles {
    pub fn new(
        hls: Arc<Hls>,
        pool: Arc<Pool>,
        language: Option<String>,
        translations: Vec<(String, Option<Arc<dyn Translator>>)>,
    ) -> Self {
        Self {
            hls,
            pool,
            language,
            translations,
        }
    }

    /// Transcribes the recording of `stream` and writes its subtitles.
    pub async fn run(&self, stream: &StreamId) -> Result<Written, ReplayError> {
        let source = self.language.clone().unwrap_or_else(|| "en".into());
        let runs = self.hls.recording_audio(stream).await?;
        let mut regions: Vec<(u64, Vec<f32>)> = Vec::new();
        for run in runs {
            let samples = tokio::task::spawn_blocking(move || decode(&run.mp4))
                .await
                .map_err(|e| ReplayError::Audio(e.to_string()))??;
            let ns_per_sample = 1_000_000_000 / u64::from(audio::SAMPLE_RATE);
            for r in speech_regions(&samples, audio::SAMPLE_RATE, &VadConfig::default()) {
                regions.push((
                    run.start_ns + r.start as u64 * ns_per_sample,
                    samples[r].to_vec(),
                ));
            }
        }
        // Speech regions are seconds long: the encoder is fitted to each.
        let request = Request {
            language: self.language.clone(),
            fit_audio_context: true,
            ..Default::default()
        };
        let cues = self.transcribe(&regions, &request).await?;
        self.hls
            .write_subtitles(stream, &source, webvtt(&cues))
            .await?;
        let mut written = Written {
            languages: vec![source.clone()],
            cues: cues.len(),
        };
        for (language, translator) in &self.translations {
            let translated = match translator {
                Some(t) => {
                    let mut out = Vec::with_capacity(cues.len());
                    for c in &cues {
                        match t.translate(&c.text, &source, language).await {
                            Ok(text) => out.push(TextCue { text, ..c.clone() }),
                            Err(e) => {
                                tracing::warn!(%stream, %language, error = %e, "translating a replay cue");
                            }
                        }
                    }
                    out
                }
                None => {
                    let english = Request {
                        translate_to_english: true,
                        ..request.clone()
                    };
                    self.transcribe(&regions, &english).await?
                }
            };
            self.hls
                .write_subtitles(stream, language, webvtt(&translated))
                .await?;
            written.languages.push(language.clone());
        }
        Ok(written)
    }

    /// Each speech region decoded on the pool, cues placed on the media timeline.
    async fn transcribe(
        &self,
        regions: &[(u64, Vec<f32>)],
        request: &Request,
    ) -> Result<Vec<TextCue>, ReplayError> {
        let mut slot = self.pool.slot()?;
        let mut cues = Vec::new();
        let mut prompt = String::new();
        for (start_ns, audio) in regions {
            let region_end = start_ns
                + audio.len() as u64 * 1_000_000_000 / u64::from(crate::audio::SAMPLE_RATE);
            let (segments, _) = self
                .pool
                .decode(&mut slot, audio.clone(), request.clone(), prompt.clone())
                .await?;
            for s in segments {
                let at = |d: std::time::Duration| (start_ns + d.as_nanos() as u64).min(region_end);
                let (start, end) = (at(s.cue.start), at(s.cue.end));
                // One cue per segment; a very long one is split at words, about 7 s each.
                let words = words_of(&s.cue.text, start, end);
                let mut piece: Vec<String> = Vec::new();
                let mut from = start;
                for (i, w) in words.iter().enumerate() {
                    piece.push(w.text.clone());
                    let last = i + 1 == words.len();
                    if last || w.end - from >= MAX_CUE_NS {
                        cues.push(TextCue {
                            start_ns: from,
                            end_ns: if last { end } else { w.end },
                            text: piece.join(" "),
                        });
                        piece.clear();
                        from = w.end;
                    }
                }
                prompt = s.cue.text;
            }
        }
        Ok(cues)
    }
}

/// Cues longer than this are split (a reader needs them short).
const MAX_CUE_NS: u64 = 7_000_000_000;

/// An fMP4 file's audio as 16 kHz mono, through a temporary file GStreamer reads.
fn decode(mp4: &[u8]) -> Result<Vec<f32>, ReplayError> {
    let fail = |e: String| ReplayError::Audio(e);
    let mut file = tempfile::Builder::new()
        .suffix(".mp4")
        .tempfile()
        .map_err(|e| fail(e.to_string()))?;
    std::io::Write::write_all(&mut file, mp4).map_err(|e| fail(e.to_string()))?;
    audio::decode(file.path(), |_| {}).map_err(|e| fail(e.to_string()))
}
