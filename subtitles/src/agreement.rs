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

/// How far (in words) a decode's settled part may be longer or shorter than before: Whisper
/// sometimes splits or joins words ("to nay" / "today") when it decodes the same audio again.
const ALIGN_SLACK: usize = 2;
/// Words at the end of the settled part compared to find where it ends in a new decode.
const ALIGN_WORDS: usize = 3;

/// Where `settled` ends in `hypothesis`: both start at the window's start, so it is near
/// `settled.len()`; the position whose preceding words match the settled tail best wins
/// (nearest to that length on a tie).
fn align(settled: &[Word], hypothesis: &[Word]) -> usize {
    let n = settled.len();
    if n == 0 {
        return 0;
    }
    let score = |k: usize| {
        let m = ALIGN_WORDS.min(n).min(k);
        settled[n - m..]
            .iter()
            .zip(&hypothesis[k - m..k])
            .filter(|(a, b)| a.key() == b.key())
            .count()
    };
    (n.saturating_sub(ALIGN_SLACK)..=(n + ALIGN_SLACK).min(hypothesis.len()))
        .max_by_key(|&k| (score(k), std::cmp::Reverse(k.abs_diff(n))))
        .unwrap_or(n.min(hypothesis.len()))
}

/// LocalAgreement-2 over successive decodes of one window of audio. Every decode covers the
/// window from its start, so words are matched by position (time estimates move between
/// decodes; word order does not).
#[derive(Debug, Default, Clone)]
pub struct Agreement {
    /// Words at the window's start already handed out as final (their audio is still in the
    /// window, so every decode says them again).
    handed: Vec<Word>,
    /// Settled words not yet handed out.
    committed: Vec<Word>,
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

    /// Whether any word of the window was handed out.
    pub fn handed_out(&self) -> Option<&Word> {
        self.handed.last()
    }

    /// Words of the window already settled: handed out, then committed.
    fn settled(&self) -> Vec<Word> {
        self.handed.iter().chain(&self.committed).cloned().collect()
    }

    /// Takes a new decode of the window; returns how many words it newly committed.
    pub fn insert(&mut self, hypothesis: Vec<Word>) -> usize {
        let at = align(&self.settled(), &hypothesis);
        let new = &hypothesis[at..];
        let agreed = new
            .iter()
            .zip(&self.previous)
            .take_while(|(a, b)| a.key() == b.key() && !a.key().is_empty())
            .count();
        self.committed.extend_from_slice(&new[..agreed]);
        self.previous = new[agreed..].to_vec();
        agreed
    }

    /// Hands out the committed words up to the last sentence end that more committed words
    /// follow (so the full stop is not just where the decode ran out of audio).
    pub fn take_sentences(&mut self) -> Option<Vec<Word>> {
        let cut = self.committed[..self.committed.len().saturating_sub(1)]
            .iter()
            .rposition(Word::ends_sentence)?;
        let out: Vec<Word> = self.committed.drain(..=cut).collect();
        self.handed.extend_from_slice(&out);
        Some(out)
    }

    /// The window is cut after the handed-out words: decodes start with the committed ones.
    pub fn forget_handed(&mut self) {
        self.handed.clear();
    }

    /// The window is cut where the last decode ended: every word not yet handed out, settled
    /// or not, is handed out now.
    pub fn flush(&mut self) -> Vec<Word> {
        let mut out = std::mem::take(&mut self.committed);
        out.append(&mut self.previous);
        self.handed.clear();
        out
    }

    /// The utterance is over and `last` is the decode of all of it (the best one: it heard
    /// the whole utterance): its words after those already handed out. Partials only ever
    /// showed the settled words, so the final may still improve on them. Without a last
    /// decode, what was settled and shown stands. The next window starts clean.
    pub fn finish(&mut self, last: Vec<Word>) -> Vec<Word> {
        let out = if last.is_empty() {
            let mut out = std::mem::take(&mut self.committed);
            out.append(&mut self.previous);
            out
        } else {
            let at = align(&self.handed, &last);
            last[at..].to_vec()
        };
        self.committed.clear();
        self.previous.clear();
        self.handed.clear();
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
        // The second decode agrees on "Hello" only; the newer spelling is kept.
        assert_eq!(a.insert(said(0.0, "hello, everyone here")), 1);
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
        // Later decodes still say the handed-out sentence first: it is skipped.
        a.insert(said(
            0.0,
            "Hello everyone here is the. Best price today only",
        ));
        assert_eq!(text_of(a.committed()), "Best price today");
    }

    #[test]
    fn decodes_that_move_word_times_or_split_words_still_line_up() {
        let mut a = Agreement::default();
        a.insert(said(0.0, "This red time."));
        a.insert(said(0.0, "This red jacket is half."));
        assert_eq!(text_of(a.committed()), "This red");
        // Times shift (another estimate) and a word splits in two: positions still match.
        a.insert(said(0.3, "This red jacket is half price to net."));
        assert_eq!(text_of(a.committed()), "This red jacket is half");
        a.insert(said(0.1, "This red jacket is half price to nay."));
        assert_eq!(text_of(a.committed()), "This red jacket is half price to");
        // The final decode heard it all: its words stand.
        let last = a.finish(said(0.0, "This red jacket is half price today."));
        assert_eq!(text_of(&last), "This red jacket is half price today.");
    }

    #[test]
    fn the_final_decode_completes_the_utterance() {
        let mut a = Agreement::default();
        a.insert(said(0.0, "This jacket is"));
        a.insert(said(0.0, "This jacket is warm"));
        let last = a.finish(said(0.0, "This jacket is waterproof."));
        assert_eq!(text_of(&last), "This jacket is waterproof.");
        assert!(a.committed().is_empty() && a.tentative().is_empty());
        // The next utterance starts fresh, in a new window.
        a.insert(said(5.0, "Next"));
        assert_eq!(text_of(&a.finish(said(5.0, "Next one."))), "Next one.");
        // A final after sentences were handed out gives only the rest.
        a.insert(said(0.0, "Buy now. Only"));
        a.insert(said(0.0, "Buy now. Only ten"));
        assert_eq!(text_of(&a.take_sentences().unwrap()), "Buy now.");
        assert_eq!(
            text_of(&a.finish(said(0.0, "Buy now. Only ten left."))),
            "Only ten left."
        );
    }

    #[test]
    fn flush_hands_out_everything() {
        let mut a = Agreement::default();
        a.insert(said(0.0, "one two"));
        a.insert(said(0.0, "one two three"));
        assert_eq!(text_of(&a.flush()), "one two three");
        assert!(a.committed().is_empty() && a.tentative().is_empty());
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
