//! Whisper models on disk: the converter's command, and the default model (tiny.en under the
//! data dir, converted on first use from the CTranslate2 weights the setup script caches).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// `vitrine subtitles convert-model`: CTranslate2 Whisper weights to a ggml file, written to a
/// temporary name first so a failed conversion never leaves a half file under `out`. Returns
/// a one-line summary of what was written.
pub fn convert_model(
    dir: &Path,
    out: &Path,
    weights: vitrine_subtitles::convert::Weights,
) -> anyhow::Result<String> {
    let model = std::fs::read(dir.join("model.bin"))
        .with_context(|| format!("reading {}", dir.join("model.bin").display()))?;
    let vocabulary = std::fs::read_to_string(dir.join("vocabulary.txt"))
        .with_context(|| format!("reading {}", dir.join("vocabulary.txt").display()))?;
    let tmp = out.with_extension("part");
    let file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let converted = vitrine_subtitles::convert::convert_with(&model, &vocabulary, weights, file);
    let converted = match converted {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("converting {}", dir.display()));
        }
    };
    std::fs::rename(&tmp, out)?;
    let h = converted.hparams;
    Ok(format!(
        "{}: {} tensors, {} layers x {} state, {} tokens",
        out.display(),
        converted.tensors,
        h.n_audio_layer,
        h.n_audio_state,
        h.n_vocab
    ))
}

/// The default model: tiny.en under the data dir, converted on first use from the CTranslate2
/// model the setup script caches, with Q8_0 weight matrices (measured with the same words as
/// f16 and up to a fifth faster on the CPU: loadtest/README.md).
pub fn default_model(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let model = data_dir.join("models/ggml-tiny.en-q8_0.bin");
    if model.exists() {
        return Ok(model);
    }
    let cache = std::env::var_os("VITRINE_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vitrine/models"))
        })
        .map(|d| d.join("tiny.en-ct2"))
        .filter(|d| d.join("model.bin").exists())
        .context("no Whisper model: pass --model, or run scripts/setup.sh to fetch tiny.en")?;
    std::fs::create_dir_all(model.parent().expect("a parent folder"))?;
    eprintln!(
        "converting {} once into {}",
        cache.display(),
        model.display()
    );
    eprintln!(
        "{}",
        convert_model(&cache, &model, vitrine_subtitles::convert::Weights::Q8_0)?
    );
    Ok(model)
}
