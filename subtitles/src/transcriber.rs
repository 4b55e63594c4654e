//! Whisper inference through whisper-rs: one loaded model, a fresh state per job, run on the
//! calling (blocking) thread. CPU by default; the binary's `cuda` feature builds whisper.cpp
//! with CUDA.

use crate::cue::Cue;
use std::path::Path;
use std::time::Duration;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("cannot load the Whisper model {0}: {1}")]
    Model(String, String),
    #[error("language {0:?} is not a Whisper language code")]
    Language(String),
    #[error("this model is English-only: it cannot {0}")]
    EnglishOnly(&'static str),
    #[error("transcription failed: {0}")]
    Failed(String),
}

/// What to ask of the model.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `None` detects the language (multilingual models only).
    pub language: Option<String>,
    /// Whisper's own task: translate the speech into English.
    pub translate_to_english: bool,
    pub threads: i32,
    /// Encode only as much of Whisper's 30 s audio window as the audio fills (plus a margin,
    /// at least 6 s) instead of the whole window, and stop a decode that produces far more
    /// tokens than the audio can hold: a few seconds of speech decode 4 to 10 times faster
    /// (tiny.en, 2 threads: 0.2-0.5 s instead of 1.8 s for 2-8 s of audio).
    pub fit_audio_context: bool,
    /// A live step: no decoding again at higher temperatures when the first decode looks
    /// wrong (the step is redone a second later anyway, and a fallback can take ten times as
    /// long).
    pub no_fallback: bool,
}

/// Whisper encoder positions per second of audio (1500 for its 30 s window).
const CONTEXT_PER_SECOND: f64 = 50.0;
/// Positions kept beyond the audio when fitting the context.
const CONTEXT_MARGIN: i32 = 64;
/// The least context a live step gets (6 s): with much less, Whisper loops on a phrase.
const MIN_CONTEXT: i32 = 300;
/// Tokens a live step may produce per second of audio (speech is 2-4 words a second), so a
/// decode that loops stops early.
const TOKENS_PER_SECOND: f64 = 8.0;

/// A loaded Whisper model.
pub struct Transcriber {
    ctx: WhisperContext,
}

impl Transcriber {
    pub fn open(model: &Path) -> Result<Self, TranscribeError> {
        let shown = model.display().to_string();
        let path = model
            .to_str()
            .ok_or_else(|| TranscribeError::Model(shown.clone(), "path is not UTF-8".into()))?;
        if !model.is_file() {
            return Err(TranscribeError::Model(shown, "no such file".into()));
        }
        // whisper.cpp's own log lines go through `tracing` (RUST_LOG) instead of stderr.
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| TranscribeError::Model(shown, e.to_string()))?;
        Ok(Self { ctx })
    }

    pub fn multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }

    /// Transcribes only where someone speaks: each speech region the VAD finds is decoded on
    /// its own, so no cue can fall in a pause (where Whisper would invent text). Cue times
    /// are in the whole recording; `progress` hears the fraction of regions done.
    pub fn transcribe_speech(
        &self,
        samples: &[f32],
        request: &Request,
        vad: &crate::vad::VadConfig,
        mut progress: impl FnMut(f64),
    ) -> Result<Vec<Cue>, TranscribeError> {
        let regions = crate::vad::speech_regions(samples, crate::audio::SAMPLE_RATE, vad);
        let rate = u64::from(crate::audio::SAMPLE_RATE);
        let mut cues = Vec::new();
        for (i, region) in regions.iter().enumerate() {
            let offset = Duration::from_millis(region.start as u64 * 1000 / rate);
            let end = Duration::from_millis(region.end as u64 * 1000 / rate);
            for cue in self.transcribe(&samples[region.clone()], request, |_| {})? {
                cues.push(Cue {
                    start: (offset + cue.start).min(end),
                    end: (offset + cue.end).min(end),
                    text: cue.text,
                });
            }
            progress((i + 1) as f64 / regions.len() as f64);
        }
        Ok(cues)
    }

    /// A decoding state of this model (its caches); one per live stream, reused by its steps.
    pub fn state(&self) -> Result<WhisperState, TranscribeError> {
        self.ctx
            .create_state()
            .map_err(|e| TranscribeError::Failed(e.to_string()))
    }

    /// Checks `request` against this model.
    pub fn check(&self, request: &Request) -> Result<(), TranscribeError> {
        let language = request.language.as_deref();
        if let Some(code) = language
            && whisper_rs::get_lang_id(code).is_none()
        {
            return Err(TranscribeError::Language(code.to_owned()));
        }
        if !self.multilingual() {
            if request.translate_to_english {
                return Err(TranscribeError::EnglishOnly("translate"));
            }
            if language.is_some_and(|l| l != "en") {
                return Err(TranscribeError::EnglishOnly("transcribe other languages"));
            }
        }
        Ok(())
    }

    /// Transcribes 16 kHz mono `samples`; `progress` hears the percentage done.
    pub fn transcribe(
        &self,
        samples: &[f32],
        request: &Request,
        progress: impl FnMut(i32) + 'static,
    ) -> Result<Vec<Cue>, TranscribeError> {
        let mut state = self.state()?;
        Ok(self
            .decode(&mut state, samples, request, "", Some(Box::new(progress)))?
            .into_iter()
            .map(|s| s.cue)
            .collect())
    }

    /// One decode of `samples` with `state`. `prompt` is what was said just before (context);
    /// segments Whisper itself judges to be no speech, and bracketed sound descriptions
    /// (`[Music]`, `(applause)`), are left out.
    pub fn decode(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        request: &Request,
        prompt: &str,
        progress: Option<Box<dyn FnMut(i32)>>,
    ) -> Result<Vec<Segment>, TranscribeError> {
        self.check(request)?;
        let language = request.language.as_deref();
        let prompt_tokens = if prompt.is_empty() {
            Vec::new()
        } else {
            // The context's last words are enough; the model allows 224 tokens of it.
            self.ctx.tokenize(prompt, PROMPT_TOKENS).unwrap_or_default()
        };
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(request.threads.max(1));
        params.set_language(Some(language.unwrap_or(if self.multilingual() {
            "auto"
        } else {
            "en"
        })));
        params.set_translate(request.translate_to_english);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_print_special(false);
        params.set_suppress_nst(true);
        // A state remembers the text of its last decode and would prompt with it; a live
        // window is decoded again and again, so that would feed the model its own guess of the
        // same audio (it then repeats itself). Context is given explicitly instead.
        params.set_no_context(true);
        if !prompt_tokens.is_empty() {
            params.set_tokens(&prompt_tokens);
        }
        if request.fit_audio_context {
            let seconds = samples.len() as f64 / f64::from(crate::audio::SAMPLE_RATE);
            let positions = (seconds * CONTEXT_PER_SECOND).ceil() as i32 + CONTEXT_MARGIN;
            params.set_audio_ctx(positions.clamp(MIN_CONTEXT, 1500));
            params.set_max_tokens((seconds * TOKENS_PER_SECOND).ceil() as i32 + 8);
        }
        if request.no_fallback {
            params.set_temperature_inc(0.0);
        }
        if let Some(mut progress) = progress {
            params.set_progress_callback_safe(move |p: i32| progress(p));
        }
        state
            .full(params, samples)
            .map_err(|e| TranscribeError::Failed(e.to_string()))?;
        // Whisper's timestamps are centiseconds; with a fitted context, a segment it did not
        // close ends at its 30 s window, so times are kept within the audio.
        let length = Duration::from_millis(
            samples.len() as u64 * 1000 / u64::from(crate::audio::SAMPLE_RATE),
        );
        let at = |cs: i64| Duration::from_millis(cs.max(0) as u64 * 10).min(length);
        Ok((0..state.full_n_segments())
            .filter_map(|i| state.get_segment(i))
            .filter_map(|s| {
                let text = s.to_str_lossy().ok()?.trim().to_owned();
                Some(Segment {
                    no_speech: s.no_speech_probability(),
                    cue: Cue {
                        start: at(s.start_timestamp()),
                        end: at(s.end_timestamp()),
                        text,
                    },
                })
            })
            .filter(|s| s.no_speech < NO_SPEECH && !is_sound_description(&s.cue.text))
            .collect())
    }
}

/// Tokens of context given to a decode.
const PROMPT_TOKENS: usize = 64;
/// Segments Whisper gives at least this probability of being no speech are dropped.
const NO_SPEECH: f32 = 0.6;

/// A decoded segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub cue: Cue,
    /// Whisper's probability that the segment is not speech.
    pub no_speech: f32,
}

/// Empty text, or only bracketed descriptions of sound (`[BLANK_AUDIO]`, `(music)`,
/// `♪`), which Whisper writes for non-speech and which are not captions of speech.
pub fn is_sound_description(text: &str) -> bool {
    let mut depth = 0i32;
    let mut outside = false;
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            '♪' | '♫' => {}
            c if depth <= 0 && c.is_alphanumeric() => outside = true,
            _ => {}
        }
    }
    !outside
}

#[cfg(test)]
mod tests {
    use super::is_sound_description;

    #[test]
    fn sound_descriptions_are_not_speech() {
        for t in [
            "[BLANK_AUDIO]",
            " (music) ",
            "♪ ♪",
            "[Music] (applause)",
            "",
            "...",
        ] {
            assert!(is_sound_description(t), "{t:?}");
        }
        for t in ["Hello (laughs)", "[Music] hi", "50% off"] {
            assert!(!is_sound_description(t), "{t:?}");
        }
    }
}
