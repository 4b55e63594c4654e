//! What the model tests share: the Whisper material the setup script fetched, and tiny.en
//! converted to ggml by this crate.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$VITRINE_MODELS`, default `~/.cache/vitrine/models`, with tiny.en and jfk.wav in it.
pub fn models() -> PathBuf {
    let dir = std::env::var_os("VITRINE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vitrine/models")
        });
    assert!(
        dir.join("tiny.en-ct2/model.bin").exists() && dir.join("jfk.wav").exists(),
        "no Whisper test material under {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// tiny.en converted into a temporary ggml file.
pub fn converted_tiny_en() -> (
    tempfile::NamedTempFile,
    vitrine_subtitles::convert::Converted,
) {
    let dir = models();
    let model = std::fs::read(dir.join("tiny.en-ct2/model.bin")).unwrap();
    let vocabulary = std::fs::read_to_string(dir.join("tiny.en-ct2/vocabulary.txt")).unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let converted = vitrine_subtitles::convert::convert(
        &model,
        &vocabulary,
        std::io::BufWriter::new(out.reopen().unwrap()),
    )
    .unwrap();
    (out, converted)
}
