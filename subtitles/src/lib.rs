//! Subtitles: Whisper models and, as the subtitles issue lands, the transcription workers,
//! captions and WebVTT. So far: [`convert`], which turns the CTranslate2 Whisper weights that
//! package registries ship into the ggml file whisper.cpp (and so whisper-rs) loads.
//!
//! The sans-IO parts ([`ct2`] reader, [`ggml`] writer, [`mel`] filterbank, [`vocab`] byte
//! decoder) are pure and tested without a model; [`convert`] maps one onto the other.

pub mod convert;
pub mod ct2;
pub mod ggml;
pub mod mel;
pub mod vocab;
