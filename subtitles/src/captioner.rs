//! Live captions of one stream, sans IO: audio in (16 kHz mono, in order), decode jobs out,
//! their hypotheses in, `partial` and `final` cues out. It owns the voice-activity state, the
//! window of audio being decoded, and the LocalAgreement of successive decodes; it never runs
//! the model, sleeps or reads a clock (positions are sample counts), so it is tested with
//! made-up hypotheses.
//!
//! **Policy.** Nothing is decoded outside speech (Whisper invents text in silence). During
//! speech the growing window is decoded every `step`; words two decodes agree on are
//! committed; a committed sentence end cuts a `final` cue and the window. When the detector
//! hears the pause that ends the utterance, one last decode of it gives its `final` cue. A
//! window longer than `max_window` is cut at its committed words. When decodes take longer
//! than `step` (a saturated pool), the step grows to the decode time: captions come in
//! bigger pieces instead of falling behind; audio older than `max_backlog` is dropped and
//! counted.

use crate::agreement::{Agreement, Word, text_of};
use crate::vad::{OnlineVad, VadConfig, VadEvent};
use std::collections::VecDeque;
use std::time::Duration;

/// Samples per second of the audio the captioner takes.
pub const RATE: u64 = crate::audio::SAMPLE_RATE as u64;
/// Audio kept before speech starts, so its first syllable is in the window.
const PREROLL: u64 = RATE;
/// Below this much audio a decode is not worth it.
const MIN_DECODE: u64 = RATE / 2;

/// How the live policy is tuned.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionerConfig {
    /// Time between decodes of the growing window (when the pool keeps up).
    pub step: Duration,
    /// A window this long is cut at its committed words.
    pub max_window: Duration,
    /// Undecoded audio beyond this is dropped (a pool far too slow).
    pub max_backlog: Duration,
    pub vad: VadConfig,
}

impl Default for CaptionerConfig {
    fn default() -> Self {
        Self {
            step: Duration::from_millis(1000),
            max_window: Duration::from_secs(12),
            max_backlog: Duration::from_secs(30),
            vad: VadConfig::default(),
        }
    }
}

fn samples(d: Duration) -> u64 {
    (d.as_secs_f64() * RATE as f64) as u64
}

/// A decode to run: `audio` starts at stream position `start`.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub start: u64,
    pub audio: Vec<f32>,
    /// The utterance ends with this audio: the decode gives its final cue.
    pub last: bool,
    /// What was said just before (context for the model).
    pub prompt: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CueKind {
    /// May still change: the next partial or final of the same utterance replaces it.
    Partial,
    /// Settled.
    Final,
}

/// A caption of live audio; positions in samples since the captioner started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCue {
    /// Partials and the finals that settle them share it; it grows through the stream.
    pub utterance: u64,
    pub kind: CueKind,
    pub start: u64,
    pub end: u64,
    pub text: String,
}

/// One stream's live caption state.
#[derive(Debug)]
pub struct Captioner {
    cfg: CaptionerConfig,
    vad: OnlineVad,
    /// Samples heard so far: the position of the next one.
    heard: u64,
    /// Audio not yet captioned (or kept as pre-roll), starting at `window_start`.
    window: VecDeque<f32>,
    window_start: u64,
    /// Ends of utterances the detector heard, not yet decoded.
    ends: VecDeque<u64>,
    /// Where utterances not yet decoded started: each one's window begins there once the
    /// ones before are decoded (a pause is never in a window).
    starts: VecDeque<u64>,
    agreement: Agreement,
    utterance: u64,
    /// The decode under way: its id, end position, and whether it closes an utterance.
    busy: Option<(u64, u64, bool)>,
    next_id: u64,
    /// Position of the end of the last decode started.
    stepped_at: u64,
    step: u64,
    /// The last partial handed out (unchanged partials are not repeated).
    shown: String,
    prompt: String,
    dropped: u64,
}

impl Captioner {
    pub fn new(cfg: CaptionerConfig) -> Self {
        Self {
            vad: OnlineVad::new(cfg.vad, RATE as u32),
            step: samples(cfg.step),
            cfg,
            heard: 0,
            window: VecDeque::new(),
            window_start: 0,
            ends: VecDeque::new(),
            starts: VecDeque::new(),
            agreement: Agreement::default(),
            utterance: 0,
            busy: None,
            next_id: 0,
            stepped_at: 0,
            shown: String::new(),
            prompt: String::new(),
            dropped: 0,
        }
    }

    /// Samples heard so far.
    pub fn heard(&self) -> u64 {
        self.heard
    }

    /// Samples dropped because decoding fell too far behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The current step (longer than configured while the pool is saturated).
    pub fn step(&self) -> Duration {
        Duration::from_secs_f64(self.step as f64 / RATE as f64)
    }

    pub fn speaking(&self) -> bool {
        self.vad.speaking()
    }

    /// Takes the next audio.
    pub fn push(&mut self, audio: &[f32]) {
        let events = self.vad.push(audio);
        self.window.extend(audio);
        self.heard += audio.len() as u64;
        for event in events {
            match event {
                VadEvent::Start(at) => {
                    self.starts.push_back(at);
                    if self.ends.is_empty() && self.busy.is_none_or(|(_, _, last)| !last) {
                        self.cut(at);
                    }
                    self.stepped_at = at;
                }
                VadEvent::End(at) => self.ends.push_back(at),
            }
        }
        if !self.speaking() && self.ends.is_empty() && self.busy.is_none() {
            self.cut(self.heard.saturating_sub(PREROLL));
        }
        let backlog = samples(self.cfg.max_backlog);
        if self.window.len() as u64 > backlog {
            let keep_from = self.heard - samples(self.cfg.max_window);
            self.dropped += keep_from - self.window_start;
            self.cut(keep_from);
            self.ends.retain(|e| *e > keep_from);
        }
    }

    /// Drops the window's audio before `at`.
    fn cut(&mut self, at: u64) {
        let n = at
            .saturating_sub(self.window_start)
            .min(self.window.len() as u64);
        self.window.drain(..n as usize);
        self.window_start += n;
        // Only starts still ahead matter (and so they stay few).
        let from = self.window_start;
        while self.starts.len() > 1 && self.starts.get(1).is_some_and(|s| *s <= from) {
            self.starts.pop_front();
        }
    }

    /// The next decode to run, if one is due and none is under way.
    pub fn next_job(&mut self) -> Option<Job> {
        if self.busy.is_some() {
            return None;
        }
        let (end, last) = match self.ends.front() {
            Some(&end) => (end, true),
            None if self.speaking() && self.heard >= self.stepped_at + self.step => {
                (self.heard, false)
            }
            None => return None,
        };
        let len = end
            .saturating_sub(self.window_start)
            .min(self.window.len() as u64);
        if len < MIN_DECODE && !last {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.busy = Some((id, end, last));
        self.stepped_at = end;
        Some(Job {
            id,
            start: self.window_start,
            audio: self.window.iter().take(len as usize).copied().collect(),
            last,
            prompt: self.prompt.clone(),
        })
    }

    /// The decode `id` finished after `took` (waiting included) with these words (stream
    /// positions); returns the cues it settles or shows.
    pub fn done(&mut self, id: u64, words: Vec<Word>, took: Duration) -> Vec<LiveCue> {
        let Some((_, end, last)) = self.busy.filter(|(b, _, _)| *b == id) else {
            return Vec::new();
        };
        self.busy = None;
        // A saturated pool lengthens the step instead of queueing decodes.
        self.step = samples(self.cfg.step).max(samples(took));
        let mut cues = Vec::new();
        if last {
            self.ends.pop_front();
            let all = self.agreement.finish(words);
            self.final_cue(all, &mut cues);
            self.utterance += 1;
            self.cut(end);
            self.starts.retain(|s| *s >= end);
            match self.starts.front() {
                Some(&next) => self.cut(next),
                None if !self.speaking() => self.cut(self.heard.saturating_sub(PREROLL)),
                None => {}
            }
            return cues;
        }
        self.agreement.insert(words);
        if let Some(sentences) = self.agreement.take_sentences() {
            // Their audio stays in the window (later decodes say them again, and they are
            // skipped), so no word is cut in half.
            self.final_cue(sentences, &mut cues);
            self.utterance += 1;
        }
        if end - self.window_start > samples(self.cfg.max_window) {
            match self.agreement.handed_out().map(|w| w.end) {
                // Cut after the sentences handed out; the settled words begin the next window.
                Some(until) => {
                    self.agreement.forget_handed();
                    self.cut(until);
                }
                // One long sentence: what was heard so far stands as its final.
                None => {
                    let all = self.agreement.flush();
                    self.final_cue(all, &mut cues);
                    self.utterance += 1;
                    self.cut(end);
                }
            }
        }
        let mut words = self.agreement.committed().to_vec();
        words.extend_from_slice(self.agreement.tentative());
        let text = text_of(&words);
        if !text.is_empty() && text != self.shown {
            self.shown = text.clone();
            cues.push(LiveCue {
                utterance: self.utterance,
                kind: CueKind::Partial,
                start: words.first().map_or(self.window_start, |w| w.start),
                end: words.last().map_or(end, |w| w.end),
                text,
            });
        }
        cues
    }

    /// The decode `id` failed: its audio stays and the next step tries again.
    pub fn failed(&mut self, id: u64) {
        if self.busy.is_some_and(|(b, _, _)| b == id) {
            self.busy = None;
        }
    }

    fn final_cue(&mut self, words: Vec<Word>, cues: &mut Vec<LiveCue>) {
        self.shown.clear();
        let text = text_of(&words);
        if text.is_empty() {
            return;
        }
        self.prompt = text.clone();
        cues.push(LiveCue {
            utterance: self.utterance,
            kind: CueKind::Final,
            start: words.first().map_or(0, |w| w.start),
            end: words.last().map_or(0, |w| w.end),
            text,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::words_of;

    fn tone(seconds: f32) -> Vec<f32> {
        (0..(seconds * 16_000.0) as usize)
            .map(|i| 0.3 * (i as f32 * 0.07).sin())
            .collect()
    }

    /// Talking: sound with the short breaks between words (which keep the noise floor low).
    fn talk(seconds: f32) -> Vec<f32> {
        let mut out = Vec::new();
        for _ in 0..seconds as usize {
            out.extend(tone(0.9));
            out.extend(silence(0.1));
        }
        out
    }

    fn silence(seconds: f32) -> Vec<f32> {
        vec![0.0; (seconds * 16_000.0) as usize]
    }

    /// A fake model: the words of `script` whose times fall inside the job's audio.
    fn decode(job: &Job, script: &[(f32, f32, &str)]) -> Vec<Word> {
        let end = job.start + job.audio.len() as u64;
        script
            .iter()
            .map(|&(s, e, t)| ((s * 16_000.0) as u64, (e * 16_000.0) as u64, t))
            .filter(|(s, e, _)| *s >= job.start && *e <= end)
            .flat_map(|(s, e, t)| words_of(t, s, e))
            .collect()
    }

    /// Feeds `audio` in 100 ms packets, running every due job at once through `script`.
    fn run(c: &mut Captioner, audio: &[f32], script: &[(f32, f32, &str)]) -> Vec<LiveCue> {
        let mut cues = Vec::new();
        for packet in audio.chunks(1600) {
            c.push(packet);
            while let Some(job) = c.next_job() {
                assert!(!job.audio.is_empty());
                let words = decode(&job, script);
                cues.extend(c.done(job.id, words, Duration::from_millis(200)));
            }
        }
        cues
    }

    #[test]
    fn silence_is_never_decoded() {
        let mut c = Captioner::new(CaptionerConfig::default());
        c.push(&silence(20.0));
        assert!(c.next_job().is_none());
        assert!(c.window.len() as u64 <= PREROLL, "only a pre-roll is kept");
    }

    #[test]
    fn partials_then_a_final_per_utterance() {
        let mut audio = silence(1.0);
        audio.extend(tone(3.0)); // 1..4 s
        audio.extend(silence(2.0));
        audio.extend(tone(2.0)); // 6..8 s
        audio.extend(silence(2.0));
        let script = [
            (1.0, 2.0, "Welcome to"),
            (2.0, 3.9, "the spring sale"),
            (6.1, 7.9, "Ten left"),
        ];
        let mut c = Captioner::new(CaptionerConfig::default());
        let cues = run(&mut c, &audio, &script);
        let finals: Vec<&LiveCue> = cues.iter().filter(|c| c.kind == CueKind::Final).collect();
        assert_eq!(finals.len(), 2, "{cues:#?}");
        assert_eq!(finals[0].text, "Welcome to the spring sale");
        assert_eq!(finals[1].text, "Ten left");
        assert_eq!((finals[0].utterance, finals[1].utterance), (0, 1));
        assert!(finals[0].start >= 16_000 && finals[0].end <= 4 * 16_000);
        // Partials came before the first final, for its utterance, growing.
        let partials: Vec<&LiveCue> = cues
            .iter()
            .take_while(|c| c.kind == CueKind::Partial)
            .collect();
        assert!(!partials.is_empty());
        assert!(partials.iter().all(|p| p.utterance == 0));
        assert!(partials.windows(2).all(|w| w[0].text != w[1].text));
        // No cue covers the silences.
        for cue in &cues {
            assert!(cue.start >= 16_000 && !(cue.start > 4 * 16_000 && cue.start < 6 * 16_000));
        }
    }

    #[test]
    fn the_next_window_starts_at_the_next_utterance_not_in_the_pause() {
        let mut c = Captioner::new(CaptionerConfig::default());
        c.push(&silence(1.0));
        c.push(&talk(2.0));
        c.push(&silence(0.8)); // the first utterance ends
        let mut job = c.next_job();
        while job.as_ref().is_some_and(|j| !j.last) {
            c.done(job.unwrap().id, Vec::new(), Duration::from_millis(100));
            job = c.next_job();
        }
        let last = job.expect("the final decode of the first utterance");
        // The second utterance starts while the first's final decode runs.
        c.push(&silence(1.5));
        c.push(&talk(1.0));
        c.done(last.id, Vec::new(), Duration::from_millis(100));
        let second_start = (1.0 + 2.0 + 0.8 + 1.5) * 16_000.0;
        assert!(
            (c.window_start as f32 - second_start).abs() < 0.2 * 16_000.0,
            "window starts at {}",
            c.window_start
        );
    }

    #[test]
    fn a_committed_sentence_is_final_mid_speech() {
        let audio = tone(6.0);
        let script = [
            (0.0, 1.5, "Buy it now."),
            (1.5, 3.0, "Only ten left."),
            (3.0, 5.5, "Free shipping"),
        ];
        let mut c = Captioner::new(CaptionerConfig::default());
        let cues = run(&mut c, &audio, &script);
        let finals: Vec<&str> = cues
            .iter()
            .filter(|c| c.kind == CueKind::Final)
            .map(|c| c.text.as_str())
            .collect();
        // "Only ten left." is not final yet: no settled word follows its full stop.
        assert_eq!(finals, ["Buy it now."], "{cues:#?}");
        // Later partials show only what follows the final (the audio is still decoded).
        let partial = cues
            .iter()
            .rev()
            .find(|c| c.kind == CueKind::Partial)
            .unwrap();
        assert_eq!(partial.text, "Only ten left. Free shipping");
        assert_eq!(c.prompt, "Buy it now.");
    }

    #[test]
    fn a_long_utterance_is_cut_at_the_longest_window() {
        // 20 s of talk, a word a second, no sentence end: cut near 12 s, nothing lost or
        // repeated.
        let audio = talk(20.0);
        let words: Vec<String> = (0..19).map(|i| format!("w{i}")).collect();
        let script: Vec<(f32, f32, &str)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (i as f32 + 0.2, i as f32 + 0.8, w.as_str()))
            .collect();
        let mut c = Captioner::new(CaptionerConfig::default());
        let mut cues = run(&mut c, &audio, &script);
        cues.extend(run(&mut c, &silence(1.0), &script));
        let finals: Vec<&str> = cues
            .iter()
            .filter(|c| c.kind == CueKind::Final)
            .map(|c| c.text.as_str())
            .collect();
        assert!(finals.len() >= 2, "{finals:?}");
        assert_eq!(finals.join(" "), words.join(" "));
    }

    #[test]
    fn a_slow_pool_lengthens_the_step_and_bounds_the_backlog() {
        let mut c = Captioner::new(CaptionerConfig::default());
        c.push(&tone(2.0));
        let job = c.next_job().unwrap();
        // Another decode is never started while one is under way.
        c.push(&tone(1.5));
        assert!(c.next_job().is_none());
        c.done(job.id, Vec::new(), Duration::from_secs(3));
        assert_eq!(c.step(), Duration::from_secs(3));
        assert!(c.next_job().is_none(), "not due before the longer step");
        c.push(&tone(2.0));
        // 40 s of speech while the pool is stuck on one decode: only the backlog bound stays.
        let stuck = c.next_job().unwrap();
        c.push(&talk(40.0));
        assert!(c.window.len() as u64 <= samples(Duration::from_secs(30)));
        assert!(c.dropped() > 0);
        c.failed(stuck.id);
        assert!(c.next_job().is_some(), "a failed decode is retried");
    }
}
