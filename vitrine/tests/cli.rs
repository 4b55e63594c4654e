//! The command line and the server's HTTPS mode, as an operator uses them.

use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vitrine::app;
use vitrine::config::Config;
use vitrine::store::Store;
use vitrine_core::Secret;

const BIN: &str = env!("CARGO_BIN_EXE_vitrine");

#[tokio::test]
async fn sellers_create_prints_one_json_line_with_a_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["sellers", "create", "--name", "Acme Outlet", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let token = line["api_token"].as_str().unwrap();
    assert!(line["seller_id"].as_str().unwrap().starts_with("sl_"));

    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("vitrine.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    let seller = store
        .seller_by_token(&Secret::from_presented(token))
        .await
        .unwrap();
    assert_eq!(seller.unwrap().name, "Acme Outlet");
    // Stored hashed: the clear token appears nowhere in the database file.
    store.close().await;
    let db = std::fs::read(dir.path().join("vitrine.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    let bad = Command::new(BIN)
        .args(["sellers", "create", "--name", "  ", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--name"));
}

#[tokio::test]
async fn serves_https_when_given_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display()),
        database_max_connections: None,
        public_url: None,
        tls: Some((cert_path, key_path)),
        ice: Default::default(),
        redis_url: None,
        checkout: Default::default(),
        chat: Default::default(),
        hls: Default::default(),
        subtitles: vitrine::config::SubtitlesConfig {
            enabled: false,
            ..Default::default()
        },
        roles: Default::default(),
        rate_limits: Default::default(),
        webhooks: Default::default(),
        payouts: Default::default(),
        rates: None,
        sandbox_latency: std::time::Duration::from_millis(20),
        sandbox_debit_latency: std::time::Duration::from_secs(3600),
        demo: false,
        edge: Default::default(),
        cluster: None,
        regions: None,
    };
    let running = app::start(&config).await.unwrap();
    assert!(running.state.public_url().starts_with("https://"));

    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    // Plain HTTP on the HTTPS port is refused, not served.
    let mut plain = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    running.shutdown().await.unwrap();
}

/// `vitrine transcode` on a real media file (video + audio made by ffmpeg) writes static HLS
/// that ffprobe reads back; a file that is not media fails with a clear message.
#[test]
fn transcode_writes_static_hls_and_rejects_non_media() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("talk.mp4");
    ffmpeg(
        "-f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 5 -c:v libx264 -preset ultrafast -c:a aac -shortest",
        &input,
    );
    let config = dir.path().join("v.toml");
    std::fs::write(
        &config,
        "[hls]\nx264_preset = \"ultrafast\"\n[[hls.renditions]]\nheight = 360\nbitrate_kbps = 600\n\
         [[hls.renditions]]\nheight = 180\nbitrate_kbps = 200\n",
    )
    .unwrap();
    let out = dir.path().join("hls");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["transcode", "--json", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["frames"], 150, "{summary}");
    assert!(
        (summary["duration_s"].as_f64().unwrap() - 5.0).abs() < 0.2,
        "{summary}"
    );
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(
        master.contains("RESOLUTION=640x360") && master.contains("RESOLUTION=320x180"),
        "{master}"
    );
    let playlist = std::fs::read_to_string(out.join("360p/index.m3u8")).unwrap();
    assert!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD") && playlist.ends_with("#EXT-X-ENDLIST\n")
    );
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_entries",
            "stream=codec_name,width:format=duration",
        ])
        .arg(out.join("master.m3u8"))
        .output()
        .unwrap();
    let probe: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "{probe}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 5.0).abs() < 0.3, "{probe}");

    let junk = dir.path().join("notes.mp4");
    std::fs::write(&junk, b"this is not a video").unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["transcode", "--out"])
        .arg(dir.path().join("junk"))
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("cannot read") && err.contains("notes.mp4"),
        "{err}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["transcode", "--out", "x", "/nonexistent.mp4"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.mp4"));
}

/// `vitrine subtitles convert-model` names what is wrong and leaves no half-written file.
#[test]
fn convert_model_rejects_what_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ggml.bin");
    let run = |model_dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .args(["subtitles", "convert-model"])
            .arg(model_dir)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let missing = run(&dir.path().join("nothing-here"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("model.bin"));
    std::fs::write(dir.path().join("model.bin"), b"not a model").unwrap();
    std::fs::write(dir.path().join("vocabulary.txt"), "a\n").unwrap();
    let junk = run(dir.path());
    assert!(!junk.status.success());
    let err = String::from_utf8_lossy(&junk.stderr);
    assert!(err.contains("not a CTranslate2 model"), "{err}");
    assert!(!out.exists() && !out.with_extension("part").exists());
}

/// Parses a WebVTT file: every cue's start and end, in order, and its text.
fn vtt_cues(vtt: &str) -> Vec<(String, String, String)> {
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
    vtt["WEBVTT\n\n".len()..]
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let (timing, text) = block.split_once('\n').expect("timing then text");
            let (start, end) = timing.split_once(" --> ").expect("a timing line");
            assert!(
                start.len() == 12 && end.len() == 12 && start <= end,
                "{timing}"
            );
            (start.to_owned(), end.to_owned(), text.trim().to_owned())
        })
        .collect()
}

/// `vitrine subtitles transcribe` on a video with speech writes WebVTT and SRT; files without
/// audio or without media fail clearly.
#[test]
fn transcribe_writes_webvtt_and_srt() {
    let models = std::env::var_os("VITRINE_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/vitrine/models")
        });
    let speech = models.join("jfk.wav");
    assert!(
        speech.exists(),
        "run scripts/setup.sh: no {}",
        speech.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let talk = dir.path().join("talk.mp4");
    ffmpeg(
        &format!(
            "-f lavfi -i testsrc2=size=320x240:rate=25 -i {} -t 11 -c:v libx264 -preset ultrafast -c:a aac -shortest",
            speech.display()
        ),
        &talk,
    );
    let vitrine = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .args(["subtitles", "transcribe", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = dir.path().join("subs");
    let run = vitrine(&[talk.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cues = vtt_cues(&std::fs::read_to_string(out.join("talk.vtt")).unwrap());
    assert!(!cues.is_empty());
    assert!(
        cues.windows(2).all(|w| w[0].1 <= w[1].0),
        "cues in order: {cues:?}"
    );
    let text: String = cues
        .iter()
        .map(|c| c.2.as_str())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let said = "and so my fellow americans ask not what your country can do for you \
                ask what you can do for your country";
    let error = vitrine_subtitles::wer::wer(said, &text);
    assert!(error <= 0.1, "WER {error:.2}: {text}");
    let srt = std::fs::read_to_string(out.join("talk.srt")).unwrap();
    assert!(srt.starts_with("1\n00:00:"), "{srt}");
    assert_eq!(srt.matches(" --> ").count(), cues.len());

    // --json: one line with the timing a benchmark reads, and the same text.
    let run = vitrine(&[
        talk.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--threads".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(run.status.success());
    let line: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let audio = line["audio_seconds"].as_f64().unwrap();
    assert!((audio - 11.0).abs() < 0.1, "{line}");
    assert!(line["transcribe_seconds"].as_f64().unwrap() > 0.0);
    assert!(vitrine_subtitles::wer::wer(said, line["text"].as_str().unwrap()) <= 0.1);
    assert_eq!(line["files"].as_array().unwrap().len(), 2);

    // No audio, not media, English-only model asked to translate: clear errors.
    let silent = dir.path().join("silent.mp4");
    ffmpeg(
        "-f lavfi -i testsrc2=size=160x120:rate=10 -t 1 -c:v libx264",
        &silent,
    );
    let run = vitrine(&[silent.as_os_str()]);
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("has no audio"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"not media at all").unwrap();
    let run = vitrine(&[junk.as_os_str()]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("cannot read"));
    let run = vitrine(&[talk.as_os_str(), "--translate".as_ref(), "en".as_ref()]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("English-only"));
    let run = vitrine(&[talk.as_os_str(), "--translate".as_ref(), "de".as_ref()]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("no translator"));
}

/// Runs the ffmpeg command line (quiet); the test fails when it does.
/// Makes `out` with the ffmpeg command line (`args` split on whitespace); the test fails when
/// ffmpeg does.
fn ffmpeg(args: &str, out: &std::path::Path) {
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args.split_whitespace())
        .arg(out)
        .status()
        .expect("ffmpeg (Debian package) is installed");
    assert!(made.success(), "ffmpeg {args} {}", out.display());
}
