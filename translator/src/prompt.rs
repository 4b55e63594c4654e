//! Sans-IO prompting: the few-shot text a base language model completes into a translation,
//! and the reading of its completion. Every prompt of one language pair starts with the same
//! examples, so the engine reuses their evaluated state from one caption to the next and only
//! the caption itself costs prompt time.

use crate::languages::Language;

/// The prompt whose completion is `text` in `to`, in two parts: the pair's examples (one
/// `Name: sentence` line each, the same for every text of the pair), then the text and the
/// target's name. The text is put on one line (a line break would end the completion early).
pub struct Prompt {
    pub examples: String,
    pub query: String,
}

pub fn prompt(from: &Language, to: &Language, text: &str) -> Prompt {
    let mut examples = String::with_capacity(512);
    for (source, target) in from.examples.iter().zip(to.examples.iter()) {
        examples.push_str(&format!(
            "{}: {source}\n{}: {target}\n\n",
            from.name, to.name
        ));
    }
    let query = format!("{}: {}\n{}:", from.name, one_line(text), to.name);
    Prompt { examples, query }
}

/// `text` with every run of whitespace (line breaks included) made one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The translation in a completion so far: the text before the first line break, once there
/// is one. `None` while the line is still open.
pub fn finished(completion: &str) -> Option<&str> {
    completion.find('\n').map(|end| completion[..end].trim())
}

/// How many tokens a completion of a `source_tokens`-token text may take: translations run
/// longer than their source in most pairs (German and Romance languages from English), so
/// twice the source plus a margin, capped.
pub fn token_budget(source_tokens: usize) -> usize {
    (source_tokens * 2 + 16).min(512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::languages::language;

    #[test]
    fn prompt_ends_with_the_text_and_the_target_name() {
        let (en, es) = (language("en").unwrap(), language("es").unwrap());
        let p = prompt(en, es, "Only  three\nleft!");
        assert!(p.examples.starts_with("English: Good evening"));
        assert!(p.examples.ends_with("\n\n"));
        assert_eq!(p.examples.matches("\nSpanish: ").count(), 4);
        assert_eq!(p.query, "English: Only three left!\nSpanish:");
        // The examples do not depend on the text: the part the engine keeps evaluated.
        assert_eq!(prompt(en, es, "Something else.").examples, p.examples);
        assert_ne!(
            prompt(en, language("de").unwrap(), "x").examples,
            p.examples
        );
    }

    #[test]
    fn completion_ends_at_the_first_line_break() {
        assert_eq!(finished(" Solo quedan tres."), None);
        assert_eq!(
            finished(" Solo quedan tres.\n\nEnglish:"),
            Some("Solo quedan tres.")
        );
        assert_eq!(finished("\n"), Some(""));
    }

    #[test]
    fn budget_grows_with_the_source_and_is_capped() {
        assert_eq!(token_budget(10), 36);
        assert_eq!(token_budget(10_000), 512);
    }
}
