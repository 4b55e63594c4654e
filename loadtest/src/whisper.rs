//! `whisper-row`: one transcription of a clip (a JSON line from `vitrine subtitles transcribe
//! --json` or from the faster-whisper peer) scored against the clip's known text, appended as a
//! report row for `chart --kind whisper`.

use crate::report::append;
use anyhow::Context;

#[derive(clap::Args, Clone)]
pub struct WhisperRowArgs {
    #[arg(long)]
    pub label: String,
    #[arg(long)]
    pub clip: String,
    #[arg(long)]
    pub round: u32,
    /// The clip's known text.
    #[arg(long)]
    pub reference: std::path::PathBuf,
    /// The engine's JSON line: {"audio_seconds", "transcribe_seconds", "text"}.
    #[arg(long)]
    pub result: String,
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(serde::Serialize)]
struct Row {
    label: String,
    clip: String,
    /// The clip's length, whole seconds (the chart's x).
    clip_seconds: u64,
    round: u32,
    transcribe_seconds: f64,
    /// Transcription seconds per audio second (lower is faster).
    rtf: f64,
    /// Audio seconds per transcription second.
    speed: f64,
    wer: f64,
    text: String,
}

pub fn run(args: &WhisperRowArgs) -> anyhow::Result<()> {
    let result: serde_json::Value =
        serde_json::from_str(args.result.trim()).context("the engine's JSON line")?;
    let audio = result["audio_seconds"].as_f64().context("audio_seconds")?;
    let took = result["transcribe_seconds"]
        .as_f64()
        .context("transcribe_seconds")?;
    let text = result["text"].as_str().context("text")?.to_owned();
    let reference = std::fs::read_to_string(&args.reference)
        .with_context(|| format!("reading {}", args.reference.display()))?;
    let row = Row {
        label: args.label.clone(),
        clip: args.clip.clone(),
        clip_seconds: audio.round() as u64,
        round: args.round,
        transcribe_seconds: took,
        rtf: took / audio,
        speed: audio / took,
        wer: crate::wer::wer(&reference, &text),
        text,
    };
    append(&args.out, &row)
}
