//! The translator on the real Gemma 3 270M GGUF file the setup script caches: translations of
//! product lines, reuse of the evaluated examples across calls, and clear errors for missing
//! or malformed model files.

use std::path::PathBuf;
use vitrine_translator::languages::language;
use vitrine_translator::{Engine, EngineError};

fn model() -> PathBuf {
    let path = vitrine_translator::default_model();
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path
}

#[test]
fn translates_product_lines() {
    let engine = Engine::load(&model(), 2).unwrap();
    let mut session = engine.session().unwrap();
    let en = language("en").unwrap();
    for (to, text, expect) in [
        ("es", "Thank you very much.", "gracias"),
        ("de", "Thank you very much.", "dank"),
        ("es", "The shoes are black.", "zapatos"),
    ] {
        let out = session.translate(text, en, language(to).unwrap()).unwrap();
        println!("{to}: {text} -> {}", out.text);
        assert!(
            out.text.to_lowercase().contains(expect),
            "{to}: {text:?} -> {:?}",
            out.text
        );
        assert!(!out.text.contains('\n'));
    }
}

#[test]
fn the_examples_are_evaluated_once_and_reuse_changes_nothing() {
    let engine = Engine::load(&model(), 2).unwrap();
    let (en, es) = (language("en").unwrap(), language("es").unwrap());
    let text = "This jacket is waterproof.";
    let fresh = engine.session().unwrap().translate(text, en, es).unwrap();
    assert_eq!(fresh.evaluated_tokens, fresh.prompt_tokens);

    let mut session = engine.session().unwrap();
    session.translate("Only three left.", en, es).unwrap();
    let reused = session.translate(text, en, es).unwrap();
    // Only the caption's own tokens (and the prompt's tail) are evaluated again...
    assert!(
        reused.evaluated_tokens < 20 && reused.evaluated_tokens < reused.prompt_tokens / 4,
        "{reused:?}"
    );
    // ... and the result is the one a fresh context gives.
    assert_eq!(reused.text, fresh.text);
}

#[test]
fn missing_and_malformed_models_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("vitrine-translator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("none.gguf");
    assert!(matches!(
        Engine::load(&missing, 1),
        Err(EngineError::ModelMissing(_))
    ));
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"GGUF but not really a model").unwrap();
    assert!(matches!(
        Engine::load(&garbage, 1),
        Err(EngineError::ModelInvalid(_))
    ));
    std::fs::remove_dir_all(&dir).ok();
}
