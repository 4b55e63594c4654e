//! Captions as text with times, and the two files every player and editor reads: WebVTT (HLS
//! subtitle renditions, `<track>`) and SRT. Pure formatting, tested without a model.

use std::fmt::Write;
use std::time::Duration;

/// One caption: what was said between two instants of the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub start: Duration,
    pub end: Duration,
    pub text: String,
}

/// `HH:MM:SS` then the millisecond separator (`.` for WebVTT, `,` for SRT).
fn timestamp(d: Duration, separator: char) -> String {
    let ms = d.as_millis();
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A WebVTT file of `cues` (empty cues left out).
pub fn to_webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for cue in cues.iter().filter(|c| !c.text.trim().is_empty()) {
        let _ = write!(
            out,
            "\n{} --> {}\n{}\n",
            timestamp(cue.start, '.'),
            timestamp(cue.end.max(cue.start), '.'),
            vitrine_transcode::text_track::cue_text(&cue.text)
        );
    }
    out
}

/// An SRT file of `cues` (empty cues left out), numbered from 1.
pub fn to_srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (n, cue) in cues
        .iter()
        .filter(|c| !c.text.trim().is_empty())
        .enumerate()
    {
        let text: Vec<&str> = cue
            .text
            .trim()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            n + 1,
            timestamp(cue.start, ','),
            timestamp(cue.end.max(cue.start), ','),
            text.join("\n")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start: u64, end: u64, text: &str) -> Cue {
        Cue {
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            text: text.into(),
        }
    }

    #[test]
    fn webvtt_and_srt() {
        let cues = [
            cue(0, 2_500, " Hello & welcome <b>all</b> "),
            cue(2_500, 2_500, "   "),
            cue(3_723_004, 3_725_000, "an hour in\n\n--> later"),
        ];
        assert_eq!(
            to_webvtt(&cues),
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello &amp; welcome &lt;b>all&lt;/b>\n\
             \n01:02:03.004 --> 01:02:05.000\nan hour in\n-> later\n"
        );
        assert_eq!(
            to_srt(&cues),
            "1\n00:00:00,000 --> 00:00:02,500\nHello & welcome <b>all</b>\n\n\
             2\n01:02:03,004 --> 01:02:05,000\nan hour in\n--> later\n\n"
        );
        assert_eq!(to_webvtt(&[]), "WEBVTT\n");
    }
}
