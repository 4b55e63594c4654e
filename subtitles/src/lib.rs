//! Subtitles: Whisper models, live captions, replay subtitles, translation and caption files.
//!
//! **Shape.** [`convert`] turns the CTranslate2 Whisper weights that package registries ship
//! into the ggml file whisper.cpp loads; [`transcriber`] runs whisper-rs; [`pool`] shares one
//! loaded model between streams on blocking worker threads. [`live`] captions every live
//! stream from the SFU's audio tap ([`live_audio`] decodes its Opus) with the streaming policy
//! of [`captioner`] and [`agreement`]; [`replay`] transcribes finished recordings, taken from
//! the [`jobs`] queue (in memory, or a Redis Streams consumer group); [`translate`] puts
//! captions into other languages. [`cue`] writes WebVTT and SRT; [`audio`] decodes any media.
//!
//! The sans-IO parts ([`ct2`] reader, [`ggml`] writer, [`mel`] filterbank, [`vocab`] byte
//! decoder, [`cue`] formats, [`vad`] voice activity, [`agreement`] and [`captioner`] live
//! policy, [`wer`]) are pure and tested without a model.

pub mod agreement;
pub mod audio;
pub mod captioner;
pub mod convert;
pub mod ct2;
pub mod cue;
pub mod ggml;
pub mod jobs;
pub mod live;
pub mod live_audio;
pub mod mel;
pub mod metrics;
pub mod pool;
pub mod replay;
pub mod transcriber;
pub mod translate;
pub mod vad;
pub mod vocab;
pub mod wer;
