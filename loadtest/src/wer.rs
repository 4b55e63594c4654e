//! Word error rate, the same for every engine a benchmark compares: words lower-cased with
//! punctuation removed, word-level edit distance over the reference's length.

/// The words of `text` as compared.
pub fn words_of(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level Levenshtein distance.
pub fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(x != y));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Word error rate of `hypothesis` against `reference`.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = words_of(reference);
    edit_distance(&r, &words_of(hypothesis)) as f64 / r.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_errors() {
        let w = |s: &str| words_of(s);
        assert_eq!(edit_distance(&w("a b c"), &w("A, b d")), 1);
        assert_eq!(edit_distance(&w("a b"), &w("")), 2);
        assert_eq!(wer("The red jacket.", "the red jacket"), 0.0);
        assert_eq!(wer("one two three four", "one three four five"), 0.5);
    }
}
