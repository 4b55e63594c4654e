//! Tests of [`super`]: live and VOD rendering, parts and hints, discontinuities, skips and
//! delta updates.

use super::*;

#[test]
fn program_date_times() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(1_796_156_725_151), "2026-12-01T20:25:25.151Z");
    assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    let mut p = MediaPlaylist::new(2.0, 0.5, 3);
    p.begin_run("init1.mp4".into());
    for msn in 0..2 {
        p.add_part(
            msn,
            PartEntry {
                duration: 0.5,
                independent: true,
            },
        );
        p.finish_segment(msn, 2.0);
    }
    let text = p.render_with(&|msn| Some(1_796_156_725_000 + msn as i64 * 2000));
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-12-01T20:25:27.000Z\n#EXT-X-PART"),
        "{text}"
    );
    p.end();
    assert!(
        p.render_with(&|_| Some(0))
            .contains("#EXT-X-PROGRAM-DATE-TIME:1970")
    );
}

fn part(independent: bool) -> PartEntry {
    PartEntry {
        duration: 0.5,
        independent,
    }
}

fn segment(p: &mut MediaPlaylist, msn: u64) {
    for i in 0..4 {
        p.add_part(msn, part(i == 0));
    }
    p.finish_segment(msn, 2.0);
}

#[test]
fn live_window_parts_and_hint() {
    let mut p = MediaPlaylist::new(2.0, 0.5, 3);
    p.begin_run("init0.mp4".into());
    for msn in 0..5 {
        segment(&mut p, msn);
    }
    p.add_part(5, part(true));
    let text = p.render();
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
    assert!(text.contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500"));
    assert!(!text.contains("s1.m4s"));
    // Parts of the last two complete segments and of the open one.
    assert!(!text.contains("p2.0.m4s"));
    assert!(text.contains("#EXT-X-PART:DURATION=0.50000,URI=\"p3.0.m4s\",INDEPENDENT=YES\n"));
    assert!(text.contains("URI=\"p5.0.m4s\""));
    assert!(
        !text.contains("s5.m4s"),
        "the open segment has no EXTINF yet"
    );
    assert!(
        text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p5.1.m4s\"\n"),
        "{text}"
    );
    assert!(p.has(4, None) && p.has(5, Some(0)));
    assert!(!p.has(5, Some(1)) && !p.has(5, None));
    assert!(p.has_part(5, 0) && !p.has_part(5, 1) && !p.part_gone(5, 1));
    assert_eq!(crate::validate::media_playlist(&text), vec![]);
    // Seen from a sibling: its newest part.
    assert_eq!(p.last_part(), Some((5, 0)));
    assert_eq!(
        p.report("../audio/index.m3u8").as_deref(),
        Some("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=5,LAST-PART=0\n")
    );
    p.end();
    assert_eq!(
        p.report("../audio/index.m3u8"),
        None,
        "no report once ended"
    );
}

/// Numbers a lost producer may have used are skipped: the live playlist starts after the
/// gap (players number segments by position), the replay lists both sides.
#[test]
fn a_skip_in_the_numbers_starts_the_live_window_after_it() {
    let mut p = MediaPlaylist::new(2.0, 0.5, 6);
    p.begin_run("init1.mp4".into());
    for msn in 0..3 {
        segment(&mut p, msn);
    }
    p.pause();
    p.skip_to(9);
    p.skip_to(7);
    assert_eq!(p.next_msn(), 9, "the floor only rises");
    p.begin_run("init2.mp4".into());
    p.add_part(9, part(true));
    let live = p.render();
    assert!(
        live.contains(
            "#EXT-X-MEDIA-SEQUENCE:9
"
        ),
        "{live}"
    );
    assert!(live.contains(
        "#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-DISCONTINUITY
"
    ));
    assert!(!live.contains("s2.m4s"), "{live}");
    assert_eq!(p.window_first_msn(), Some(9));
    assert_eq!(crate::validate::media_playlist(&live), vec![]);
    segment_rest(&mut p, 9);
    segment(&mut p, 10);
    let live = p.render();
    assert!(
        live.contains(
            "#EXT-X-MEDIA-SEQUENCE:9
"
        ) && live.contains("s10.m4s")
    );
    assert_eq!(crate::validate::media_playlist(&live), vec![]);
    p.end();
    let vod = p.render();
    assert!(
        vod.contains("s2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init2.mp4\"\n"),
        "{vod}"
    );
    assert!(vod.contains("s9.m4s") && vod.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
}

/// A window longer than six target durations offers delta updates: asked for, the
/// segments older than that are replaced by EXT-X-SKIP; the parts and the hint stay.
#[test]
fn delta_updates_skip_the_old_part_of_a_long_window() {
    let mut short = MediaPlaylist::new(2.0, 0.5, 6);
    short.begin_run("init1.mp4".into());
    for msn in 0..8 {
        segment(&mut short, msn);
    }
    assert_eq!(
        short.can_skip_until(),
        None,
        "a 12 s window has nothing to skip"
    );
    assert_eq!(short.render_delta(&|_| None, true), short.render());
    let mut p = MediaPlaylist::new(2.0, 0.5, 20);
    p.begin_run("init1.mp4".into());
    for msn in 0..25 {
        segment(&mut p, msn);
    }
    p.add_part(25, part(true));
    let full = p.render();
    assert!(full.contains("CAN-SKIP-UNTIL=12.000") && full.contains("s5.m4s\n"));
    let delta = p.render_delta(&|msn| Some(msn as i64 * 2000), true);
    // Window 5..=24 and the open 25 (0.5 s): the segments starting 12 s or more before
    // the end (5..=19; 19 starts 12.5 s before it) are skipped, 20.. are listed.
    assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-SKIP:SKIPPED-SEGMENTS=15\n#EXT-X-MAP:URI=\"init1.mp4\"\n"), "{delta}");
    assert!(
        !delta.contains("s19.m4s") && delta.contains("s20.m4s"),
        "{delta}"
    );
    assert!(delta.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p25.1.m4s\"\n"));
    assert_eq!(crate::validate::media_playlist(&delta), vec![]);
    assert_eq!(crate::validate::media_playlist(&full), vec![]);
    p.end();
    assert_eq!(
        p.render_delta(&|_| None, true),
        p.render(),
        "a replay is whole"
    );
}

/// The parts after the first of segment `msn`, and its end.
fn segment_rest(p: &mut MediaPlaylist, msn: u64) {
    for _ in 1..4 {
        p.add_part(msn, part(false));
    }
    p.finish_segment(msn, 2.0);
}

#[test]
fn discontinuity_then_vod() {
    let mut p = MediaPlaylist::new(2.0, 0.5, 6);
    p.begin_run("init0.mp4".into());
    segment(&mut p, 0);
    segment(&mut p, 1);
    p.add_part(2, part(true));
    // The publisher leaves mid-segment: the open one is dropped, the next run continues.
    p.pause();
    assert!(p.part_gone(2, 1));
    p.begin_run("init1.mp4".into());
    assert_eq!(p.next_msn(), 2);
    segment(&mut p, 2);
    let live = p.render();
    assert!(
        live.contains("s1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n"),
        "{live}"
    );
    p.end();
    let vod = p.render();
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
    assert!(vod.ends_with("s2.m4s\n#EXT-X-ENDLIST\n"), "{vod}");
    assert!(!vod.contains("EXT-X-PART"));
    assert_eq!(vod.matches("#EXTINF").count(), 3);
    assert_eq!(crate::validate::media_playlist(&live), vec![]);
    assert_eq!(crate::validate::media_playlist(&vod), vec![]);
    assert!(p.has(99, Some(0)), "an ended recording answers at once");
}

#[test]
fn discontinuity_sequence_counts_what_left_the_window() {
    let mut p = MediaPlaylist::new(2.0, 0.5, 3);
    p.begin_run("a.mp4".into());
    segment(&mut p, 0);
    p.begin_run("b.mp4".into());
    for msn in 1..6 {
        segment(&mut p, msn);
    }
    let text = p.render();
    assert!(
        text.contains("#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
        "{text}"
    );
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    let json = serde_json::to_string(&p).unwrap();
    let back: MediaPlaylist = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}
