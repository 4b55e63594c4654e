//! The languages the local translator offers, each with its name as the prompt spells it and
//! the same few example sentences, so that any pair of them can be prompted in either
//! direction. A small base language model translates only when shown examples of the pair it
//! is asked for; a language without examples is refused rather than guessed.
//!
//! The examples are live-shopping lines written for this purpose and kept apart from the
//! benchmark's sentences, so that measured quality is not inflated by the prompt.

/// One language: ISO 639-1 code, English name, and the example sentences in the order of
/// [`EXAMPLES_EN`].
pub struct Language {
    pub code: &'static str,
    pub name: &'static str,
    pub examples: [&'static str; 4],
}

/// The examples in English (the first language of [`LANGUAGES`]).
const EXAMPLES_EN: [&str; 4] = [
    "Good evening and thanks for joining us.",
    "These leather boots are made by hand in Portugal.",
    "The blue one is my favourite, and it is back in stock.",
    "If you have a question, just type it below.",
];

pub const LANGUAGES: &[Language] = &[
    Language {
        code: "en",
        name: "English",
        examples: EXAMPLES_EN,
    },
    Language {
        code: "es",
        name: "Spanish",
        examples: [
            "Buenas noches y gracias por acompañarnos.",
            "Estas botas de cuero están hechas a mano en Portugal.",
            "La azul es mi favorita y vuelve a estar disponible.",
            "Si tienes alguna pregunta, escríbela abajo.",
        ],
    },
    Language {
        code: "de",
        name: "German",
        examples: [
            "Guten Abend und danke, dass ihr dabei seid.",
            "Diese Lederstiefel werden in Portugal von Hand gefertigt.",
            "Die blaue ist mein Favorit, und sie ist wieder auf Lager.",
            "Wenn du eine Frage hast, schreib sie einfach unten.",
        ],
    },
    Language {
        code: "fr",
        name: "French",
        examples: [
            "Bonsoir et merci de nous avoir rejoints.",
            "Ces bottes en cuir sont faites à la main au Portugal.",
            "La bleue est ma préférée, et elle est de nouveau en stock.",
            "Si vous avez une question, écrivez-la simplement ci-dessous.",
        ],
    },
    Language {
        code: "it",
        name: "Italian",
        examples: [
            "Buonasera e grazie per essere con noi.",
            "Questi stivali in pelle sono fatti a mano in Portogallo.",
            "Quella blu è la mia preferita, ed è di nuovo disponibile.",
            "Se avete una domanda, scrivetela qui sotto.",
        ],
    },
    Language {
        code: "pt",
        name: "Portuguese",
        examples: [
            "Boa noite e obrigado por estarem com a gente.",
            "Estas botas de couro são feitas à mão em Portugal.",
            "A azul é a minha favorita e voltou ao estoque.",
            "Se tiver alguma pergunta, é só escrever aqui embaixo.",
        ],
    },
    Language {
        code: "nl",
        name: "Dutch",
        examples: [
            "Goedenavond en bedankt dat jullie erbij zijn.",
            "Deze leren laarzen worden met de hand gemaakt in Portugal.",
            "De blauwe is mijn favoriet, en hij is weer op voorraad.",
            "Als je een vraag hebt, typ hem dan hieronder.",
        ],
    },
];

/// The language with this ISO 639-1 code (case-insensitive, region suffix ignored: `pt-BR`).
pub fn language(code: &str) -> Option<&'static Language> {
    let base = code.split(['-', '_']).next().unwrap_or(code);
    LANGUAGES.iter().find(|l| l.code.eq_ignore_ascii_case(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_resolve_with_or_without_region() {
        assert_eq!(language("es").unwrap().name, "Spanish");
        assert_eq!(language("PT-br").unwrap().code, "pt");
        assert!(language("ja").is_none());
        assert!(language("").is_none());
    }

    #[test]
    fn every_language_has_every_example_on_one_line() {
        for l in LANGUAGES {
            for e in l.examples {
                assert!(
                    !e.trim().is_empty() && !e.contains('\n'),
                    "{}: {e:?}",
                    l.code
                );
            }
        }
    }
}
