//! Which words of a live transcription are settled: the LocalAgreement policy. The same
//! growing window of audio is decoded again at every step; a word is committed once two
//! consecutive decodes agree on it (and on every word before it). What is committed never
//! changes again; the rest is shown as a partial caption. Pure: hypotheses in, words out.

/// A word of a hypothesis, with its place in the stream's audio (sample positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub start: u64,
    pub end: u64,
}

impl Word {
    /// The word as compared between hypotheses: case and punctuation ignored, so "Hello," in
    /// one decode and "hello" in the next agree.
    fn key(&self) -> String {
        self.text
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// Ends a sentence: the point where a final caption may be cut.
    pub fn ends_sentence(&self) -> bool {
        self.text.ends_with(['.', '?', '!'])
    }
}

/// Words of a decoded segment, their times spread over it by their share of its characters
/// (whisper.cpp's segment times are reliable; per-word times are not needed for cutting at
/// words).
pub fn words_of(text: &str, start: u64, end: u64) -> Vec<Word> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let total: usize = parts.iter().map(|w| w.len() + 1).sum();
    let span = end.saturating_sub(start);
    let mut done = 0usize;
    parts
        .into_iter()
        .map(|w| {
            let from = start + span * done as u64 / total.max(1) as u64;
            done += w.len() + 1;
            let to = start + span * done as u64 / total.max(1) as u64;
            Word {
                text: w.to_owned(),
                start: from,
                end: to,
            }
        })
        .collect()
}

/// Joins words into caption text.
pub fn text_of(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words of the next hypothesis that start this close before the end of the committed words
/// still count as new (decodes move word boundaries a little).
const OVERLAP_SAMPLES: u64 = 1_600; // 0.1 s at 16 kHz
/// Longest run of committed words a new decode may repeat at its start.
const MAX_REPEAT: usize = 5;

/// LocalAgreement-2 over successive decodes of one window.
#[derive(Debug, Default, Clone)]
pub struct Agreement {
    /// Settled words not yet handed out as final.
    committed: Vec<Word>,
    /// End of the last word ever committed: words before it are not new.
    committed_end: u64,
    /// The unsettled words of the previous decode.
    previous: Vec<Word>,
}

impl Agreement {
    /// Settled words not yet handed out.
    pub fn committed(&self) -> &[Word] {
        &self.committed
    }

    /// The unsettled words of the latest decode.
    pub fn tentative(&self) -> &[Word] {
        &self.previous
    }

    /// Takes a new decode of the window; returns how many words it newly committed.
    pub fn insert(&mut self, hypothesis: Vec<Word>) -> usize {
        let mut new: Vec<Word> = hypothesis
            .into_iter()
            .filter(|w| w.start + OVERLAP_SAMPLES > self.committed_end)
            .collect();
        // A decode may repeat the last committed words at its start: drop the longest repeat.
        if let Some(tail) = self.committed.last().map(|w| w.end)
            && new
                .first()
                .is_some_and(|w| w.start < tail + 10 * OVERLAP_SAMPLES)
        {
            let longest = (1..=MAX_REPEAT.min(self.committed.len()).min(new.len()))
                .rev()
                .find(|&n| {
                    let c = &self.committed[self.committed.len() - n..];
                    c.iter().zip(&new[..n]).all(|(a, b)| a.key() == b.key())
                });
            if let Some(n) = longest {
                new.drain(..n);
            }
        }
        let agreed = new
            .iter()
            .zip(&self.previous)
            .take_while(|(a, b)| a.key() == b.key() && !a.key().is_empty())
            .count();
        for w in new.drain(..agreed) {
            self.committed_end = self.committed_end.max(w.end);
            self.committed.push(w);
        }
        self.previous = new;
        agreed
    }

    /// Hands out the committed words up to the last sentence end that more committed words
    /// follow (so the full stop is not just where the decode ran out of audio).
    pub fn take_sentences(&mut self) -> Option<Vec<Word>> {
        let cut = self.committed[..self.committed.len().saturating_sub(1)]
            .iter()
            .rposition(Word::ends_sentence)?;
        Some(self.committed.drain(..=cut).collect())
    }

    /// Hands out every committed word.
    pub fn take_committed(&mut self) -> Vec<Word> {
        std::mem::take(&mut self.committed)
    }

    /// Hands out every word, settled or not, as they stand (a window cut mid-speech that
    /// never agreed on anything).
    pub fn flush(&mut self) -> Vec<Word> {
        let mut out = std::mem::take(&mut self.committed);
        out.append(&mut self.previous);
        if let Some(last) = out.last() {
            self.committed_end = self.committed_end.max(last.end);
        }
        out
    }

    /// The utterance is over: everything, settled or not, is handed out, and the next window
    /// starts clean.
    pub fn finish(&mut self, last: Vec<Word>) -> Vec<Word> {
        self.previous.clear();
        self.insert_final(last)
    }

    fn insert_final(&mut self, hypothesis: Vec<Word>) -> Vec<Word> {
        // The final decode is trusted whole: committed words stay as they were, the rest comes
        // from it.
        let mut out = std::mem::take(&mut self.committed);
        let before = self.committed_end;
        let mut new: Vec<Word> = hypothesis
            .into_iter()
            .filter(|w| w.start + OVERLAP_SAMPLES > before)
            .collect();
        if let Some(last) = out.last() {
            let n = (1..=MAX_REPEAT.min(out.len()).min(new.len()))
                .rev()
                .find(|&n| {
                    out[out.len() - n..]
                        .iter()
                        .zip(&new[..n])
                        .all(|(a, b)| a.key() == b.key())
                })
                .filter(|_| {
                    new.first()
                        .is_some_and(|w| w.start < last.end + 10 * OVERLAP_SAMPLES)
                });
            if let Some(n) = n {
                new.drain(..n);
            }
        }
        for w in &new {
            self.committed_end = self.committed_end.max(w.end);
        }
        out.extend(new);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words one per half second from `from` seconds.
    fn said(from: f32, text: &str) -> Vec<Word> {
        text.split_whitespace()
            .enumerate()
            .map(|(i, w)| Word {
                text: w.into(),
                start: ((from + i as f32 * 0.5) * 16_000.0) as u64,
                end: ((from + i as f32 * 0.5 + 0.45) * 16_000.0) as u64,
            })
            .collect()
    }

    #[test]
    fn words_settle_when_two_decodes_agree() {
        let mut a = Agreement::default();
        assert_eq!(a.insert(said(0.0, "Hello every")), 0);
        assert_eq!(text_of(a.tentative()), "Hello every");
        // The second decode agrees on "Hello" only.
        assert_eq!(a.insert(said(0.0, "hello, everyone here")), 1);
        // The newer decode's spelling is kept.
        assert_eq!(text_of(a.committed()), "hello,");
        assert_eq!(text_of(a.tentative()), "everyone here");
        assert_eq!(a.insert(said(0.0, "Hello everyone here is the.")), 2);
        assert_eq!(text_of(a.committed()), "hello, everyone here");
        // No sentence end is followed by a committed word yet.
        assert!(a.take_sentences().is_none());
        a.insert(said(0.0, "Hello everyone here is the. Best price"));
        a.insert(said(0.0, "Hello everyone here is the. Best price today"));
        assert_eq!(
            text_of(&a.take_sentences().unwrap()),
            "hello, everyone here is the."
        );
        assert_eq!(text_of(a.committed()), "Best price");
    }

    #[test]
    fn a_window_cut_after_a_sentence_does_not_repeat_it() {
        let mut a = Agreement::default();
        a.insert(said(0.0, "Buy now. Only"));
        a.insert(said(0.0, "Buy now. Only ten"));
        assert_eq!(text_of(&a.take_sentences().unwrap()), "Buy now.");
        // The next window starts at "Only"; its decode repeats the committed "Only".
        let next = said(1.0, "Only ten left");
        a.insert(next.clone());
        a.insert(next);
        assert_eq!(text_of(a.committed()), "Only ten left");
    }

    #[test]
    fn the_final_decode_completes_the_utterance() {
        let mut a = Agreement::default();
        a.insert(said(0.0, "This jacket is"));
        a.insert(said(0.0, "This jacket is warm"));
        let last = a.finish(said(0.0, "This jacket is waterproof."));
        assert_eq!(text_of(&last), "This jacket is waterproof.");
        assert!(a.committed().is_empty() && a.tentative().is_empty());
        // The next utterance starts fresh, later in the stream.
        a.insert(said(5.0, "Next"));
        assert_eq!(text_of(&a.finish(said(5.0, "Next one."))), "Next one.");
    }

    #[test]
    fn words_spread_over_their_segment() {
        let w = words_of(" Hi there, all", 1600, 1600 + 14 * 100);
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].start, w[2].end), (1600, 3000));
        assert!(w[0].end == w[1].start && w[1].end > w[1].start);
        assert!(words_of("   ", 0, 100).is_empty());
        assert!(
            Word {
                text: "now?".into(),
                start: 0,
                end: 1
            }
            .ends_sentence()
        );
    }
}
