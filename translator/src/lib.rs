//! Local machine translation for captions: a small GGUF language model run by llama.cpp,
//! prompted with a few example sentences per language pair, served over LibreTranslate's HTTP
//! API by the `vitrine-translator` binary.
//!
//! It runs as a process of its own next to the Vitrine server (which reaches it through its
//! LibreTranslate client): llama.cpp and whisper.cpp each carry their own ggml, and one process
//! cannot hold both.

pub mod engine;
pub mod http;
pub mod languages;
pub mod metrics;
pub mod prompt;
pub mod service;

pub use engine::{Engine, EngineError, Translation};
pub use service::{ServiceError, Translator};

/// The model the setup script caches: `$VITRINE_MODELS` (default `~/.cache/vitrine/models`)
/// `/gemma-3-270m-q4_k_m.gguf`.
pub fn default_model() -> std::path::PathBuf {
    let models = std::env::var_os("VITRINE_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/vitrine/models")
        });
    models.join("gemma-3-270m-q4_k_m.gguf")
}
