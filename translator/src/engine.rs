//! The llama.cpp side: one GGUF model in memory and, per worker, one context that completes
//! translation prompts greedily. A context keeps the pair's examples evaluated: the next
//! caption of the same pair evaluates only its own tokens.
//!
//! The examples are always evaluated as one batch of their own and the caption as the next,
//! whether the examples were already there or not. llama.cpp's arithmetic depends on how
//! tokens are batched, and a small model's greedy choice can flip on that difference: with a
//! fixed split, a caption's translation does not depend on what the context did before.

use crate::languages::Language;
use crate::prompt;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

/// Tokens one context holds: the examples (~200), a caption of up to 2,000 bytes (~600) and
/// its translation (at most 512).
const CONTEXT_TOKENS: u32 = 2048;
/// Most tokens one decode call takes: the examples or the caption, each in one call.
const BATCH_TOKENS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {0} not found")]
    ModelMissing(String),
    #[error("model file {0} is not a GGUF model llama.cpp can load")]
    ModelInvalid(String),
    #[error("llama.cpp: {0}")]
    Backend(String),
    #[error("text too long for the model's context ({0} tokens)")]
    TooLong(usize),
}

/// llama.cpp's backend is initialised once per process and lives as long as it.
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp's own logging goes to stderr line by line; what matters is reported
            // through this crate's errors and tracing.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

/// A loaded model, shared by the workers' sessions.
pub struct Engine {
    model: LlamaModel,
    threads: i32,
}

/// What one translation cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub text: String,
    /// Tokens of the whole prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens evaluated for this call (the rest were already in the context).
    pub evaluated_tokens: usize,
    pub generated_tokens: usize,
}

impl Engine {
    /// Loads a GGUF model; `threads` is how many CPU threads each session's evaluation uses.
    pub fn load(path: &Path, threads: usize) -> Result<Self, EngineError> {
        let shown = path.display().to_string();
        // llama.cpp asserts rather than reports a missing file in debug builds.
        if !path.is_file() {
            return Err(EngineError::ModelMissing(shown));
        }
        let model = LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default())
            .map_err(|_| EngineError::ModelInvalid(shown))?;
        Ok(Self {
            model,
            threads: threads.clamp(1, 64) as i32,
        })
    }

    /// A context of its own for one worker.
    pub fn session(&self) -> Result<Session<'_>, EngineError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(CONTEXT_TOKENS))
            .with_n_batch(BATCH_TOKENS as u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let context = self
            .model
            .new_context(backend()?, params)
            .map_err(|e| EngineError::Backend(e.to_string()))?;
        Ok(Session {
            model: &self.model,
            context,
            evaluated: Vec::new(),
            last_batch_len: 0,
        })
    }
}

/// One context and the tokens it holds, position by position.
pub struct Session<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    evaluated: Vec<LlamaToken>,
    /// Tokens in the last decode call: the logits asked for are at its end.
    last_batch_len: i32,
}

impl Session<'_> {
    /// `text` (one caption or sentence) translated from one language to another.
    pub fn translate(
        &mut self,
        text: &str,
        from: &Language,
        to: &Language,
    ) -> Result<Translation, EngineError> {
        let vocab = self.model.vocab();
        let source_tokens = vocab.tokenize(prompt::one_line(text).as_bytes(), false, false);
        let budget = prompt::token_budget(source_tokens.len());
        let prompt = prompt::prompt(from, to, text);
        let examples = vocab.tokenize(prompt.examples.as_bytes(), true, false);
        let query = vocab.tokenize(prompt.query.as_bytes(), false, false);
        let prompt_tokens = examples.len() + query.len();
        if prompt_tokens + budget > CONTEXT_TOKENS as usize {
            return Err(EngineError::TooLong(prompt_tokens));
        }
        let evaluated_tokens = self.evaluate(&examples, &query)?;

        let mut sampler = LlamaSampler::greedy();
        let mut completion: Vec<u8> = Vec::new();
        let mut generated = 0;
        // Logits of the last evaluated position are those of the prompt's last token.
        let mut logits_at = self.last_batch_len - 1;
        while generated < budget {
            let token = sampler.sample(&self.context, logits_at);
            generated += 1;
            if vocab.is_eog(token) {
                break;
            }
            completion.extend(vocab.token_to_piece(token, false, None));
            if completion.contains(&b'\n') {
                break;
            }
            self.decode(&[token], self.evaluated.len())?;
            self.evaluated.push(token);
            logits_at = 0;
        }
        let completion = String::from_utf8_lossy(&completion);
        let text = prompt::finished(&completion)
            .unwrap_or(completion.trim())
            .to_owned();
        Ok(Translation {
            text,
            prompt_tokens,
            evaluated_tokens,
            generated_tokens: generated,
        })
    }

    /// Brings the context to exactly `examples` then `query`: keeps the examples if it holds
    /// them, drops everything after, evaluates what is missing, each part as one batch.
    /// Returns how many tokens were evaluated.
    fn evaluate(
        &mut self,
        examples: &[LlamaToken],
        query: &[LlamaToken],
    ) -> Result<usize, EngineError> {
        let mut evaluated = 0;
        if self.evaluated.starts_with(examples) {
            self.context
                .clear_kv_cache_seq(Some(0), Some(examples.len() as u32), None)
                .map_err(|e| EngineError::Backend(e.to_string()))?;
            self.evaluated.truncate(examples.len());
        } else {
            self.context.clear_kv_cache();
            self.evaluated.clear();
            self.decode(examples, 0)?;
            self.evaluated.extend_from_slice(examples);
            evaluated += examples.len();
        }
        self.decode(query, examples.len())?;
        self.evaluated.extend_from_slice(query);
        Ok(evaluated + query.len())
    }

    /// Evaluates `tokens` at positions from `at`, asking for the last one's logits.
    fn decode(&mut self, tokens: &[LlamaToken], at: usize) -> Result<(), EngineError> {
        let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
        for (i, token) in tokens.iter().enumerate() {
            batch
                .add(*token, (at + i) as i32, &[0], i + 1 == tokens.len())
                .map_err(|e| EngineError::Backend(e.to_string()))?;
        }
        if let Err(e) = self.context.decode(&mut batch) {
            // The context no longer matches what was recorded: start afresh next time.
            self.evaluated.clear();
            self.context.clear_kv_cache();
            return Err(EngineError::Backend(e.to_string()));
        }
        self.last_batch_len = tokens.len() as i32;
        Ok(())
    }
}
