//! A checker of HLS media playlists against rules of RFC 8216bis (the LL-HLS revision), in the
//! spirit of Apple's `mediastreamvalidator`: the tests run it over the playlists this server
//! renders, live and ended. Sans-IO: text in, violations out. [`RULES`] lists what is checked.

/// One broken rule: which, on which line (1-based; 0 for the playlist as a whole), and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub rule: &'static str,
    pub line: usize,
    pub message: String,
}

/// Every rule checked, with the section of RFC 8216bis it comes from.
pub const RULES: [(&str, &str); 17] = [
    ("extm3u", "4.4.1.1: the first line is #EXTM3U"),
    ("version", "4.4.1.2: exactly one EXT-X-VERSION"),
    ("target-duration", "4.4.3.1: one EXT-X-TARGETDURATION"),
    (
        "extinf-within-target",
        "4.4.3.1: every EXTINF, rounded, <= the target duration",
    ),
    (
        "media-sequence-before-segments",
        "4.4.3.2: EXT-X-MEDIA-SEQUENCE before the first segment",
    ),
    (
        "map-before-media",
        "4.4.4.5: EXT-X-MAP before the first segment or part it applies to",
    ),
    (
        "part-inf",
        "4.4.3.7: EXT-X-PART-INF with PART-TARGET when parts are listed",
    ),
    (
        "part-within-target",
        "4.4.4.9: every part's DURATION <= PART-TARGET",
    ),
    (
        "part-not-too-short",
        "4.4.4.9: a part is >= 85 % of PART-TARGET unless independent or last of its segment",
    ),
    (
        "part-hold-back",
        "4.4.3.8: PART-HOLD-BACK >= 2 x PART-TARGET",
    ),
    ("hold-back", "4.4.3.8: HOLD-BACK >= 3 x target duration"),
    (
        "can-skip-until",
        "4.4.3.8: CAN-SKIP-UNTIL >= 6 x target duration",
    ),
    (
        "skip",
        "4.4.5.2: at most one EXT-X-SKIP, with SKIPPED-SEGMENTS, before any segment, only where CAN-SKIP-UNTIL is offered",
    ),
    (
        "preload-hint",
        "4.4.5.3: at most one part PRELOAD-HINT, with a URI, never after ENDLIST",
    ),
    (
        "rendition-report",
        "4.4.5.4: RENDITION-REPORT with URI and LAST-MSN (and LAST-PART with parts)",
    ),
    (
        "program-date-time",
        "4.4.4.6: EXT-X-PROGRAM-DATE-TIME is an ISO 8601 date-time with a zone",
    ),
    (
        "uri-after-extinf",
        "4.4.4.1: every EXTINF is followed by its URI",
    ),
];

/// The value of `name=` in an attribute list (quotes removed).
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn number(list: &str, name: &str) -> Option<f64> {
    attribute(list, name)?.parse().ok()
}

/// A part as listed, for the rules that look at a segment's parts together.
struct Part {
    line: usize,
    duration: f64,
    independent: bool,
}

/// Checks `text`, a media playlist; an empty result means every rule of [`RULES`] holds.
pub fn media_playlist(text: &str) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut bad = |rule: &'static str, line: usize, message: String| {
        v.push(Violation {
            rule,
            line,
            message,
        });
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"#EXTM3U") {
        bad(
            "extm3u",
            1,
            "the playlist does not start with #EXTM3U".into(),
        );
    }
    let tag = |prefix: &'static str| tagged(&lines, prefix);
    if tag("#EXT-X-VERSION:").count() != 1 {
        bad("version", 0, "not exactly one EXT-X-VERSION".into());
    }
    let targets: Vec<_> = tag("#EXT-X-TARGETDURATION:").collect();
    let target = match targets.as_slice() {
        [(_, t)] => t.parse::<f64>().ok(),
        _ => None,
    };
    if target.is_none() {
        bad(
            "target-duration",
            0,
            "not exactly one integer EXT-X-TARGETDURATION".into(),
        );
    }
    let part_target = tag("#EXT-X-PART-INF:").find_map(|(_, a)| number(a, "PART-TARGET"));
    let first_media = lines
        .iter()
        .position(|l| l.starts_with("#EXTINF:") || l.starts_with("#EXT-X-PART:"))
        .map(|i| i + 1);
    let before_media = |line: usize| first_media.is_none_or(|f| line < f);
    if tag("#EXT-X-MEDIA-SEQUENCE:").any(|(l, _)| !before_media(l)) {
        bad(
            "media-sequence-before-segments",
            0,
            "EXT-X-MEDIA-SEQUENCE after a segment".into(),
        );
    }
    if let Some(first) = first_media
        && !tag("#EXT-X-MAP:").any(|(l, _)| l < first)
    {
        bad(
            "map-before-media",
            first,
            "media before any EXT-X-MAP".into(),
        );
    }
    let can_skip =
        tag("#EXT-X-SERVER-CONTROL:").any(|(_, c)| number(c, "CAN-SKIP-UNTIL").is_some());
    let skips: Vec<_> = tag("#EXT-X-SKIP:").collect();
    for (n, (line, a)) in skips.iter().enumerate() {
        let counted = attribute(a, "SKIPPED-SEGMENTS").is_some_and(|c| c.parse::<u64>().is_ok());
        if n > 0 || !counted || !can_skip || !before_media(*line) {
            bad(
                "skip",
                *line,
                "a second EXT-X-SKIP, one without SKIPPED-SEGMENTS or CAN-SKIP-UNTIL, or one after a segment".into(),
            );
        }
    }
    for (line, control) in tag("#EXT-X-SERVER-CONTROL:") {
        let (Some(t), hold) = (target, number(control, "HOLD-BACK")) else {
            continue;
        };
        if hold.is_some_and(|h| h < 3.0 * t) {
            bad("hold-back", line, format!("HOLD-BACK under 3 x {t}"));
        }
        if number(control, "CAN-SKIP-UNTIL").is_some_and(|c| c < 6.0 * t) {
            bad(
                "can-skip-until",
                line,
                format!("CAN-SKIP-UNTIL under 6 x {t}"),
            );
        }
        let part_hold = number(control, "PART-HOLD-BACK");
        if let (Some(p), Some(pt)) = (part_hold, part_target)
            && p < 2.0 * pt
        {
            bad(
                "part-hold-back",
                line,
                format!("PART-HOLD-BACK {p} under 2 x {pt}"),
            );
        }
    }
    // Segments, their parts and their URIs.
    let mut parts: Vec<Part> = Vec::new();
    let check_parts = |parts: &mut Vec<Part>, bad: &mut dyn FnMut(&'static str, usize, String)| {
        let count = parts.len();
        for (i, p) in parts.iter().enumerate() {
            let Some(pt) = part_target else { break };
            // Six decimals of slack: durations are written rounded.
            if p.duration > pt + 1e-6 {
                bad(
                    "part-within-target",
                    p.line,
                    format!("part of {} s over {pt}", p.duration),
                );
            }
            if p.duration < 0.85 * pt && !p.independent && i + 1 != count {
                bad(
                    "part-not-too-short",
                    p.line,
                    format!("part of {} s under 85 % of {pt}", p.duration),
                );
            }
        }
        parts.clear();
    };
    let ended = lines.contains(&"#EXT-X-ENDLIST");
    let mut hints = 0;
    for (i, l) in lines.iter().enumerate() {
        let line = i + 1;
        if let Some(a) = l.strip_prefix("#EXT-X-PART:") {
            if part_target.is_none() {
                bad("part-inf", line, "a part without EXT-X-PART-INF".into());
            }
            parts.push(Part {
                line,
                duration: number(a, "DURATION").unwrap_or(f64::INFINITY),
                independent: attribute(a, "INDEPENDENT") == Some("YES"),
            });
        } else if let Some(d) = l.strip_prefix("#EXTINF:") {
            check_parts(&mut parts, &mut bad);
            let duration: f64 = d
                .split(',')
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(f64::INFINITY);
            if let Some(t) = target
                && duration.round() > t
            {
                bad(
                    "extinf-within-target",
                    line,
                    format!("EXTINF {duration} over the target {t}"),
                );
            }
            if lines
                .get(i + 1)
                .is_none_or(|u| u.is_empty() || u.starts_with('#'))
            {
                bad(
                    "uri-after-extinf",
                    line,
                    "EXTINF without a URI after it".into(),
                );
            }
        } else if let Some(a) = l.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            if attribute(a, "TYPE") == Some("PART") {
                hints += 1;
            }
            if attribute(a, "URI").is_none_or(str::is_empty) || ended {
                bad(
                    "preload-hint",
                    line,
                    "a hint without a URI, or in an ended playlist".into(),
                );
            }
        } else if let Some(a) = l.strip_prefix("#EXT-X-RENDITION-REPORT:") {
            let complete = attribute(a, "URI").is_some()
                && number(a, "LAST-MSN").is_some()
                && (part_target.is_none() || number(a, "LAST-PART").is_some());
            if !complete {
                bad(
                    "rendition-report",
                    line,
                    "a report without URI, LAST-MSN or LAST-PART".into(),
                );
            }
        } else if let Some(t) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")
            && !iso_date_time(t)
        {
            bad(
                "program-date-time",
                line,
                format!("{t:?} is not a date-time with a zone"),
            );
        }
    }
    check_parts(&mut parts, &mut bad);
    if hints > 1 {
        bad("preload-hint", 0, format!("{hints} part hints"));
    }
    v
}

/// The lines (1-based numbers) that start with `prefix`, and what follows it.
fn tagged<'a>(
    lines: &'a [&'a str],
    prefix: &'static str,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    lines
        .iter()
        .enumerate()
        .filter(move |(_, l)| l.starts_with(prefix))
        .map(move |(i, l)| (i + 1, &l[prefix.len()..]))
}

/// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`.
fn iso_date_time(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let zone = t.ends_with('Z') || t.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-');
    shape && zone
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-PART-INF:PART-TARGET=0.500\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,HOLD-BACK=6.000\n\
        #EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-MAP:URI=\"init1.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-12-07T02:24:18.162Z\n\
        #EXT-X-PART:DURATION=0.50000,URI=\"p3.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.50000,URI=\"p3.1.m4s\"\n\
        #EXT-X-PART:DURATION=0.50000,URI=\"p3.2.m4s\"\n\
        #EXT-X-PART:DURATION=0.30000,URI=\"p3.3.m4s\"\n\
        #EXTINF:1.80000,\ns3.m4s\n\
        #EXT-X-PART:DURATION=0.50000,URI=\"p4.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p4.1.m4s\"\n\
        #EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=4,LAST-PART=0\n";

    fn rules(text: &str) -> Vec<&'static str> {
        media_playlist(text).into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_good_live_playlist_passes() {
        assert_eq!(media_playlist(GOOD), vec![]);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let broken = [
            (GOOD.replacen("#EXTM3U", "#EXTM3X", 1), "extm3u"),
            (GOOD.replacen("#EXT-X-VERSION:9\n", "", 1), "version"),
            (
                GOOD.replacen("#EXT-X-TARGETDURATION:2\n", "", 1),
                "target-duration",
            ),
            (
                GOOD.replacen("#EXTINF:1.80000", "#EXTINF:2.60000", 1),
                "extinf-within-target",
            ),
            (
                GOOD.replacen("#EXT-X-MEDIA-SEQUENCE:3\n", "", 1) + "#EXT-X-MEDIA-SEQUENCE:3\n",
                "media-sequence-before-segments",
            ),
            (
                GOOD.replacen("#EXT-X-MAP:URI=\"init1.mp4\"\n", "", 1),
                "map-before-media",
            ),
            (
                GOOD.replacen("#EXT-X-PART-INF:PART-TARGET=0.500\n", "", 1),
                "part-inf",
            ),
            (
                GOOD.replacen(
                    "DURATION=0.50000,URI=\"p3.1.m4s\"",
                    "DURATION=0.51000,URI=\"p3.1.m4s\"",
                    1,
                ),
                "part-within-target",
            ),
            (
                GOOD.replacen(
                    "DURATION=0.50000,URI=\"p3.1.m4s\"",
                    "DURATION=0.20000,URI=\"p3.1.m4s\"",
                    1,
                ),
                "part-not-too-short",
            ),
            (
                GOOD.replacen("PART-HOLD-BACK=1.500", "PART-HOLD-BACK=0.900", 1),
                "part-hold-back",
            ),
            (
                GOOD.replacen("HOLD-BACK=6.000", "HOLD-BACK=5.000", 1),
                "hold-back",
            ),
            (
                GOOD.replacen(
                    "CAN-BLOCK-RELOAD=YES",
                    "CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0",
                    1,
                ),
                "can-skip-until",
            ),
            (
                GOOD.replacen(
                    "#EXT-X-MAP:",
                    "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXT-X-MAP:",
                    1,
                ),
                "skip",
            ),
            (
                GOOD.to_owned() + "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p4.2.m4s\"\n",
                "preload-hint",
            ),
            (GOOD.replacen(",LAST-PART=0", "", 1), "rendition-report"),
            (
                GOOD.replacen("2026-12-07T02:24:18.162Z", "yesterday", 1),
                "program-date-time",
            ),
            (GOOD.replacen("s3.m4s\n", "", 1), "uri-after-extinf"),
        ];
        assert_eq!(broken.len(), RULES.len(), "one case per rule");
        for (text, rule) in &broken {
            assert!(
                rules(text).contains(rule),
                "{rule}: {:?}\n{text}",
                media_playlist(text)
            );
        }
        // The last part of a segment, and an independent one, may be short.
        assert_eq!(rules(GOOD), Vec::<&str>::new());
        // A skip where the server offers one.
        let delta = GOOD
            .replacen(
                "HOLD-BACK=6.000",
                "HOLD-BACK=6.000,CAN-SKIP-UNTIL=12.000",
                1,
            )
            .replacen(
                "#EXT-X-MAP:",
                "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXT-X-MAP:",
                1,
            );
        assert_eq!(rules(&delta), Vec::<&str>::new());
    }

    #[test]
    fn attributes_are_read_with_quotes_and_commas() {
        let a = "TYPE=PART,URI=\"p,1.m4s\",LAST-MSN=7";
        assert_eq!(attribute(a, "URI"), Some("p,1.m4s"));
        assert_eq!(attribute(a, "LAST-MSN"), Some("7"));
        assert_eq!(attribute(a, "NONE"), None);
        assert!(iso_date_time("2026-12-07T02:24:18.162Z"));
        assert!(iso_date_time("2026-12-07T02:24:18+01:00"));
        assert!(!iso_date_time("2026-12-07 02:24:18Z"));
    }
}
