//! Transcription of synthetic speech with known text at known offsets, pauses between
//! (espeak-ng and sox, Debian packages): the words come back, each phrase's first cue starts
//! within 1 s of the truth, and no cue falls inside a pause.

mod common;

use std::process::Command;
use std::time::Duration;
use vitrine_subtitles::transcriber::{Request, Transcriber};
use vitrine_subtitles::vad::VadConfig;
use vitrine_subtitles::wer::wer;

const PHRASES: [&str; 3] = [
    "Welcome to the live sale.",
    "This red jacket is half price today.",
    "Press the buy button to order one now.",
];
/// Silence before, between and after the phrases, seconds.
const PAUSE: f32 = 2.5;

/// Speaks `text` into 16 kHz mono samples.
fn speak(dir: &std::path::Path, i: usize, text: &str) -> Vec<f32> {
    let raw = dir.join(format!("p{i}.wav"));
    let wav = dir.join(format!("p{i}-16k.wav"));
    let spoke = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "130", "-g", "3", "-w"])
        .arg(&raw)
        .arg(text)
        .status();
    assert!(
        spoke
            .expect("espeak-ng (Debian package) is installed")
            .success()
    );
    let converted = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .status();
    assert!(
        converted
            .expect("sox (Debian package) is installed")
            .success()
    );
    let mut reader = hound::WavReader::open(&wav).unwrap();
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

#[test]
fn known_speech_between_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let pause = vec![0.0f32; (PAUSE * 16_000.0) as usize];
    let mut audio = pause.clone();
    let mut truth = Vec::new(); // (start, end) of each phrase, seconds
    for (i, text) in PHRASES.iter().enumerate() {
        let speech = speak(dir.path(), i, text);
        let start = audio.len() as f32 / 16_000.0;
        audio.extend(&speech);
        truth.push((start, audio.len() as f32 / 16_000.0));
        audio.extend(&pause);
    }

    let (model, _) = common::converted_tiny_en();
    let transcriber = Transcriber::open(model.path()).unwrap();
    let request = Request {
        language: Some("en".into()),
        translate_to_english: false,
        threads: 2,
        fit_audio_context: true,
        no_fallback: false,
    };
    let cues = transcriber
        .transcribe_speech(&audio, &request, &VadConfig::default(), |_| {})
        .unwrap();
    let heard: String = cues
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let said = PHRASES.join(" ");
    // tiny.en reads clean human speech at about 5 % WER. Here each phrase is decoded alone (a
    // 2-3 s speech region, no context) from espeak's formant voice, far from what the model
    // learned: 25 % measured ("my life sale", "priced", "My button", "one hour"). 35 % leaves
    // room for other CPUs' float rounding and still fails any broken model, decoding or VAD
    // path, which give 60-100 %.
    let error = wer(&said, &heard);
    println!("WER {error:.2}; cues: {cues:?}");
    assert!(error <= 0.35, "WER {error:.2}: heard {heard:?}");

    let secs = |d: Duration| d.as_secs_f32();
    for (start, _) in &truth {
        let first = cues
            .iter()
            .map(|c| secs(c.start))
            .min_by(|a, b| (a - start).abs().total_cmp(&(b - start).abs()))
            .unwrap();
        assert!(
            (first - start).abs() <= 1.0,
            "a cue starts at {first:.2}s, the phrase at {start:.2}s: {cues:?}"
        );
    }
    // No cue inside a pause: every cue overlaps speech, and none covers a pause's middle.
    for c in &cues {
        let (s, e) = (secs(c.start), secs(c.end));
        assert!(
            truth.iter().any(|(ts, te)| s < te + 0.5 && e > ts - 0.5),
            "cue in silence: {c:?}"
        );
        for w in truth.windows(2) {
            let middle = (w[0].1 + w[1].0) / 2.0;
            assert!(
                !(s < middle - 0.5 && e > middle + 0.5),
                "cue spans a pause: {c:?}"
            );
        }
    }
}
