//! Live captions end to end: a publisher speaks known phrases (espeak-ng, with pauses between,
//! as Opus over WHIP in real time); the server's Whisper worker captions them. Buyers in the
//! chat get `partial` then `final` `caption` events whose words match what was said, and the
//! HLS output gets an English WebVTT subtitle rendition that ffprobe reads, which the replay
//! keeps. Finals are also translated into Spanish by the local translation service (the
//! workspace's `vitrine-translator` process, through the server's LibreTranslate client), in
//! the chat, in HLS and in the replay.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

const PHRASES: [&str; 3] = [
    "Welcome to the live sale.",
    "This red jacket is half price today.",
    "Press the buy button to order one now.",
];
/// Silence before, between and after the phrases, seconds.
const PAUSE: f64 = 2.5;
/// The word error rate the speech test justifies for tiny.en on espeak-ng's voice (see
/// subtitles/tests/speech.rs), with room for the live policy cutting phrases into pieces.
const MAX_WER: f64 = 0.4;

/// The phrases spoken into one 16 kHz WAV with pauses; returns its path and each phrase's
/// (start, end) in seconds.
fn speech(dir: &std::path::Path) -> (std::path::PathBuf, Vec<(f64, f64)>) {
    let mut parts = Vec::new();
    for (i, text) in PHRASES.iter().enumerate() {
        let wav = dir.join(format!("p{i}.wav"));
        let spoke = Command::new("espeak-ng")
            .args(["-v", "en", "-s", "130", "-g", "3", "-w"])
            .arg(&wav)
            .arg(text)
            .status()
            .expect("espeak-ng (Debian package) is installed");
        assert!(spoke.success());
        parts.push(wav);
    }
    let silence = dir.join("pause.wav");
    let made = Command::new("sox")
        .args(["-n", "-r", "22050", "-c", "1", "-b", "16"])
        .arg(&silence)
        .args(["trim", "0", &PAUSE.to_string()])
        .status()
        .expect("sox (Debian package) is installed");
    assert!(made.success());
    let out = dir.join("speech.wav");
    let mut args = vec![silence.clone()];
    let mut truth = Vec::new();
    let mut at = PAUSE;
    for p in &parts {
        let length: f64 = String::from_utf8(
            Command::new("soxi")
                .arg("-D")
                .arg(p)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        truth.push((at, at + length));
        at += length + PAUSE;
        args.push(p.clone());
        args.push(silence.clone());
    }
    let joined = Command::new("sox")
        .args(&args)
        .args(["-r", "16000"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(joined.success());
    (out, truth)
}

/// The local translation service (the workspace's `vitrine-translator` binary, which
/// `cargo build --workspace` puts next to this test's directory), on a free loopback port.
struct TranslatorProcess {
    child: std::process::Child,
    url: String,
}

impl TranslatorProcess {
    async fn start() -> Self {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("vitrine-translator");
        assert!(
            bin.is_file(),
            "{} missing: `cargo build --workspace` builds it",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["--threads", "1", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .spawn()
            .unwrap();
        let mut process = Self { child, url };
        // Ready once it answers: loading the model takes a moment.
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let health = http.get(format!("{}/healthz", process.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return process;
            }
            assert!(
                process.child.try_wait().unwrap().is_none(),
                "the translator exited"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "translator not ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TranslatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn captioned_server_options(translator: &TranslatorProcess) -> ServerOptions {
    ServerOptions {
        hls: Some(vitrine_transcode::HlsConfig {
            renditions: vec![vitrine_transcode::RenditionSpec {
                height: 240,
                bitrate_kbps: 400,
                fps: 30,
            }],
            x264_preset: "ultrafast".into(),
            finalize_after: Duration::from_secs(1),
            ..Default::default()
        }),
        subtitles: Some(vitrine::config::SubtitlesConfig {
            threads: 2,
            translate: vec!["es".into()],
            libretranslate_url: Some(translator.url.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_words_become_chat_captions_and_hls_subtitles() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, truth) = speech(dir.path());
    let translator = TranslatorProcess::start().await;
    // The server converts tiny.en from the setup script's cache on first use.
    let server = TestServer::start_with(captioned_server_options(&translator)).await;
    let token = server.seller("shop").await;
    let source = MediaSource::camera("video/H264", 320, 240).speaking(&wav);
    let (stream, publisher) = go_live(&server, &token, "Spoken", source).await;
    let id = stream["id"].as_str().unwrap().to_owned();
    // Joining after the publisher is fine: the speech starts after a pause.
    let (mut buyer, _) = ChatClient::join(&server.base, &id, None, None).await;

    // Captions in the chat: partials, then one final per phrase.
    // Spanish finals (translations) come after their English final.
    let mut partials = Vec::new();
    let mut finals: Vec<serde_json::Value> = Vec::new();
    let mut spanish: Vec<serde_json::Value> = Vec::new();
    let spoken = truth.last().unwrap().1 + PAUSE;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(spoken + 30.0);
    while finals.len() < PHRASES.len() || spanish.len() < finals.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "captions so far: {partials:?} {finals:?} {spanish:?}"
        );
        let event = buyer.next().await;
        if event["type"] != "caption" {
            continue;
        }
        assert!(event["end_ms"].as_u64() >= event["start_ms"].as_u64());
        match (event["lang"].as_str(), event["kind"].as_str()) {
            (Some("en"), Some("partial")) => partials.push(event),
            (Some("en"), Some("final")) => finals.push(event),
            (Some("es"), Some("final")) => spanish.push(event),
            other => panic!("caption {other:?}: {event}"),
        }
    }
    // One translation per final, of the same utterance and times, in the same order.
    for (en, es) in finals.iter().zip(&spanish) {
        for field in ["utterance", "start_ms", "end_ms"] {
            assert_eq!(en[field], es[field], "{en} {es}");
        }
        let text = es["text"].as_str().unwrap();
        assert!(!text.is_empty() && text != en["text"], "{en} {es}");
    }
    let translated: Vec<&str> = spanish
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    // A 270M model translates loosely, but the product words come through.
    let joined = translated.join(" ").to_lowercase();
    assert!(
        ["chaqueta", "botón", "bienvenid", "precio", "venta"]
            .iter()
            .any(|w| joined.contains(w)),
        "{translated:?}"
    );
    let heard: Vec<&str> = finals.iter().map(|f| f["text"].as_str().unwrap()).collect();
    let error = vitrine_subtitles::wer::wer(&PHRASES.join(" "), &heard.join(" "));
    assert!(error <= MAX_WER, "WER {error:.2}: heard {heard:?}");
    assert!(!partials.is_empty(), "partial captions come while speaking");
    // Every partial belongs to an utterance that got its final, each final to its own.
    let utterances: Vec<u64> = finals
        .iter()
        .map(|f| f["utterance"].as_u64().unwrap())
        .collect();
    assert!(utterances.windows(2).all(|w| w[0] < w[1]), "{utterances:?}");
    assert!(
        partials
            .iter()
            .all(|p| utterances.contains(&p["utterance"].as_u64().unwrap()))
    );
    // Times: the phrases are as far apart in the captions as in the recording (within 1 s),
    // and each final lasts about as long as its phrase.
    let start = |f: &serde_json::Value| f["start_ms"].as_u64().unwrap() as f64 / 1000.0;
    let end = |f: &serde_json::Value| f["end_ms"].as_u64().unwrap() as f64 / 1000.0;
    for (f, t) in finals.iter().zip(&truth) {
        let shift = (start(f) - start(&finals[0])) - (t.0 - truth[0].0);
        assert!(shift.abs() < 1.0, "final {f} off by {shift:.2} s");
        let length = (end(f) - start(f)) - (t.1 - t.0);
        assert!(
            length.abs() < 1.5,
            "final {f} lasts {length:+.2} s more than said"
        );
    }

    // HLS: the master lists an English subtitle rendition; its WebVTT segments carry the
    // captions on the media timeline.
    let master = server.get_text(&format!("/hls/{id}/master.m3u8")).await;
    assert!(
        master.contains(
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\""
        ) && master.contains("SUBTITLES=\"subs\""),
        "{master}"
    );
    let playlist_url = format!("/hls/{id}/subtitles-en/index.m3u8");
    let text = collect_subtitles(&server, &id, &playlist_url, "button").await;
    assert!(text.contains("jacket"), "{text}");
    publisher.stop(&server.http).await;

    // The replay: a job transcribes the whole recording and its subtitle playlist becomes one
    // WebVTT file, every phrase in it, in order, as far apart as they were said.
    // (The Spanish file is written after the English one.)
    let mut vod = String::new();
    for _ in 0..300 {
        vod = server.get_text(&playlist_url).await;
        let vod_es = server
            .get_text(&format!("/hls/{id}/subtitles-es/index.m3u8"))
            .await;
        if vod.contains("all.vtt") && vod_es.contains("all.vtt") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.contains("\nall.vtt\n"),
        "{vod}"
    );
    let whole = server
        .get_text(&format!("/hls/{id}/subtitles-en/all.vtt"))
        .await;
    let cues = vtt_cues(&whole);
    let said: Vec<&str> = cues.iter().map(|c| c.2.as_str()).collect();
    let error = vitrine_subtitles::wer::wer(&PHRASES.join(" "), &said.join(" "));
    assert!(error <= MAX_WER, "WER {error:.2}: replay {said:?}");
    // Each phrase's first cue starts where it was said (up to one offset: the recording's
    // timeline starts when the video did), and no cue starts inside a pause.
    let offset = cues[0].0 - truth[0].0;
    for (i, t) in truth.iter().enumerate() {
        let first = cues
            .iter()
            .find(|c| c.0 >= t.0 + offset - 1.0)
            .unwrap_or_else(|| panic!("no cue for phrase {i} in {whole}"));
        assert!(
            (first.0 - (t.0 + offset)).abs() < 1.0,
            "phrase {i}: {first:?}\n{whole}"
        );
    }
    for c in &cues {
        let at = c.0 - offset;
        assert!(
            truth.iter().any(|t| at >= t.0 - 1.0 && at <= t.1),
            "a cue in a pause: {c:?}\n{whole}"
        );
    }
    let master = server.get_text(&format!("/hls/{id}/master.m3u8")).await;
    assert!(master.contains("LANGUAGE=\"en\""), "{master}");
    // The replay's Spanish track: the English cues translated one by one, same times.
    assert!(master.contains("LANGUAGE=\"es\""), "{master}");
    let whole_es = server
        .get_text(&format!("/hls/{id}/subtitles-es/all.vtt"))
        .await;
    let cues_es = vtt_cues(&whole_es);
    assert_eq!(cues_es.len(), cues.len(), "{whole_es}");
    for (en, es) in cues.iter().zip(&cues_es) {
        assert_eq!((en.0, en.1), (es.0, es.1));
        assert!(!es.2.is_empty() && es.2 != en.2, "{en:?} {es:?}");
    }
    server.stop().await;
    drop(translator);
}

/// (start s, end s, text) of each cue of a WebVTT file.
fn vtt_cues(vtt: &str) -> Vec<(f64, f64, String)> {
    let secs = |t: &str| -> f64 {
        t.split(':')
            .fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap())
    };
    let mut out = Vec::new();
    let mut lines = vtt.lines();
    while let Some(line) = lines.next() {
        if let Some((a, b)) = line.split_once(" --> ") {
            let text = lines.next().unwrap_or_default().to_owned();
            out.push((secs(a), secs(b), text));
        }
    }
    out
}

/// Reads the subtitle playlist until its segments hold `until`; checks each segment
/// (WebVTT with the timestamp map, readable by ffprobe) and returns their cue text.
async fn collect_subtitles(server: &TestServer, id: &str, url: &str, until: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    loop {
        let playlist = server.get_text(url).await;
        assert!(playlist.starts_with("#EXTM3U") && !playlist.contains("EXT-X-MAP"));
        let mut text = String::new();
        for name in playlist.lines().filter(|l| l.ends_with(".vtt")) {
            let r = server
                .http
                .get(server.url(&format!("/hls/{id}/subtitles-en/{name}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "text/vtt; charset=utf-8");
            let vtt = r.text().await.unwrap();
            assert!(
                vtt.starts_with(vitrine_transcode::text_track::WEBVTT_HEADER),
                "{vtt}"
            );
            if vtt.contains("-->") {
                let path = dir.path().join(name);
                std::fs::write(&path, &vtt).unwrap();
                let probe = Command::new("ffprobe")
                    .args([
                        "-v",
                        "error",
                        "-show_entries",
                        "stream=codec_name",
                        "-of",
                        "csv=p=0",
                    ])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "webvtt");
            }
            text += &vtt;
        }
        if text.to_lowercase().contains(until) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subtitles never said {until:?}:\n{playlist}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
