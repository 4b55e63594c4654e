//! Subtitles: Whisper models, transcription and caption files; the live workers, translation
//! and HLS subtitle renditions arrive with the rest of the subtitles issue. So far:
//! [`convert`] turns the CTranslate2 Whisper weights that package registries ship into the ggml
//! file whisper.cpp loads; [`audio`] decodes any media to 16 kHz mono; [`transcriber`] runs
//! whisper-rs; [`cue`] writes WebVTT and SRT.
//!
//! The sans-IO parts ([`ct2`] reader, [`ggml`] writer, [`mel`] filterbank, [`vocab`] byte
//! decoder, [`cue`] formats, [`vad`] speech regions, [`wer`]) are pure and tested without a
//! model.

pub mod audio;
pub mod convert;
pub mod ct2;
pub mod cue;
pub mod ggml;
pub mod mel;
pub mod transcriber;
pub mod vad;
pub mod vocab;
pub mod wer;
