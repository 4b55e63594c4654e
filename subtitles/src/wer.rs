//! Word error rate: word-level edit distance over the reference's length, after lower-casing and
//! dropping punctuation, as ASR evaluations report it.

/// The words of `text`, lower-cased, punctuation removed.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// (substitutions + deletions + insertions) / reference words.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut row = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let cost = usize::from(rw != hw);
            row[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[h.len()] as f64 / r.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_over_reference_words() {
        assert_eq!(wer("The red jacket.", "the red jacket"), 0.0);
        assert_eq!(wer("the red jacket", "the blue jacket"), 1.0 / 3.0);
        assert_eq!(wer("the red jacket", "the red jacket is red"), 2.0 / 3.0);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("a b", ""), 1.0);
    }
}
