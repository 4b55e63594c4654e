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
