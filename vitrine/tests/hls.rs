//! Live HLS end to end: a publisher sends real encoded media over WHIP; the server's GStreamer
//! ladder and packager produce LL-HLS that `ffprobe` (an independent reader) accepts; the
//! recording becomes a replay; publisher changes and pipeline failures continue the playlists.

mod support;

use std::time::Duration;
use support::*;
use vitrine_transcode::{EncoderChoice, HlsConfig, RenditionSpec};

/// How long a test waits for media to appear (encoding runs on two shared cores).

fn hls_config() -> HlsConfig {
    HlsConfig {
        enabled: true,
        renditions: vec![
            RenditionSpec {
                height: 360,
                bitrate_kbps: 600,
                fps: 30,
            },
            RenditionSpec {
                height: 240,
                bitrate_kbps: 300,
                fps: 30,
            },
            // Taller than the source: never produced.
            RenditionSpec {
                height: 720,
                bitrate_kbps: 2000,
                fps: 30,
            },
        ],
        segment: Duration::from_secs(2),
        part: Duration::from_millis(500),
        window_segments: 6,
        encoder: EncoderChoice::X264,
        x264_preset: "ultrafast".into(),
        audio_bitrate_kbps: 96,
        finalize_after: Duration::from_secs(3),
        storage: None,
        pathways: Vec::new(),
        subtitle_languages: Vec::new(),
    }
}

async fn hls_server() -> TestServer {
    TestServer::start_with(ServerOptions {
        hls: Some(hls_config()),
        ..Default::default()
    })
    .await
}

fn extinf(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| v.trim_end_matches(',').parse().unwrap())
        .collect()
}

async fn bytes(server: &TestServer, url: &str) -> Vec<u8> {
    let r = server.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

async fn ffprobe(args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .output()
        .await
        .expect("ffprobe (Debian package ffmpeg) is installed");
    assert!(
        out.status.success(),
        "ffprobe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first video packet of a segment (with its init segment) as ffprobe reads it.
async fn first_packet(
    dir: &std::path::Path,
    name: &str,
    init: &[u8],
    segment: &[u8],
) -> (String, f64) {
    let path = dir.join(format!("{name}.mp4"));
    std::fs::write(&path, [init, segment].concat()).unwrap();
    let probe = ffprobe(&[
        "-show_entries",
        "packet=pts_time,flags",
        "-read_intervals",
        "%+#1",
        path.to_str().unwrap(),
    ])
    .await;
    let p = &probe["packets"][0];
    (
        p["flags"].as_str().unwrap().to_owned(),
        p["pts_time"].as_str().unwrap().parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_ladder_ll_hls_then_replay() {
    let server = hls_server().await;
    let token = server.seller("shop").await;
    let source = MediaSource::camera("video/H264", 640, 360);
    let (stream, publisher) = go_live(&server, &token, "Ladder", source).await;
    let id = stream["id"].as_str().unwrap().to_owned();
    let master_url = stream["hls_url"].as_str().unwrap().to_owned();
    assert_eq!(master_url, server.url(&format!("/hls/{id}/master.m3u8")));

    // The master playlist: the configured renditions no taller than the source, with audio.
    let r = server.http.get(&master_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let master = r.text().await.unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
    assert!(
        master.contains("RESOLUTION=640x360") && master.contains("RESOLUTION=426x240"),
        "{master}"
    );
    assert!(
        master.contains("#EXT-X-MEDIA:TYPE=AUDIO") && master.contains(",mp4a.40.2\""),
        "{master}"
    );
    assert!(master.contains("CODECS=\"avc1."), "{master}");

    let base = format!("/hls/{id}");
    let top = server.url(&format!("{base}/360p/index.m3u8"));
    let playlist = wait_playlist(&server, &top, "four segments", |p| extinf(p).len() >= 4).await;
    assert!(playlist.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"));
    assert!(playlist.contains("#EXT-X-PART-INF:PART-TARGET=0.500"));
    for d in extinf(&playlist) {
        assert!((d - 2.0).abs() <= 0.2, "segment of {d} s in\n{playlist}");
    }
    // The RFC 8216bis rules hold, and the siblings' newest parts are reported.
    assert_eq!(
        vitrine_transcode::validate::media_playlist(&playlist),
        vec![]
    );
    for sibling in ["240p", "audio"] {
        let report = format!("#EXT-X-RENDITION-REPORT:URI=\"../{sibling}/index.m3u8\",LAST-MSN=");
        assert!(playlist.contains(&report), "{sibling}: {playlist}");
    }
    assert!(
        !playlist.contains("URI=\"../360p/index.m3u8\""),
        "not itself"
    );

    // An independent reader decodes every rendition with the expected size and codec.
    for (rendition, codec, size) in [
        ("360p", "h264", Some((640, 360))),
        ("240p", "h264", Some((426, 240))),
        ("audio", "aac", None),
    ] {
        let url = server.url(&format!("{base}/{rendition}/index.m3u8"));
        let probe = ffprobe(&[
            "-live_start_index",
            "0",
            "-show_entries",
            "stream=codec_name,width,height",
            &url,
        ])
        .await;
        let s = &probe["streams"][0];
        assert_eq!(s["codec_name"], codec, "{rendition}: {probe}");
        if let Some((w, h)) = size {
            assert_eq!(
                (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()),
                (w, h),
                "{rendition}"
            );
        }
    }

    // Keyframes are aligned: segment n of every rendition starts with a keyframe at one instant.
    let low = server.get_text(&format!("{base}/240p/index.m3u8")).await;
    let msn = next_msn(&playlist.min_by_segments(&low)) - 2;
    let dir = tempfile::tempdir().unwrap();
    let mut starts = Vec::new();
    for rendition in ["360p", "240p"] {
        let text = server
            .get_text(&format!("{base}/{rendition}/index.m3u8"))
            .await;
        let init_name = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .unwrap()
            .trim_end_matches('"');
        let init = bytes(
            &server,
            &server.url(&format!("{base}/{rendition}/{init_name}")),
        )
        .await;
        let segment = bytes(
            &server,
            &server.url(&format!("{base}/{rendition}/s{msn}.m4s")),
        )
        .await;
        let (flags, pts) = first_packet(dir.path(), rendition, &init, &segment).await;
        assert!(
            flags.starts_with('K'),
            "{rendition} s{msn} starts with {flags}"
        );
        starts.push(pts);
    }
    assert!(
        (starts[0] - starts[1]).abs() < 0.001,
        "segment {msn} starts at {starts:?}"
    );

    // A part's bytes are a slice of its segment: the parts concatenate to the whole segment.
    let text = server.get_text(&format!("{base}/360p/index.m3u8")).await;
    let complete = next_msn(&text) - 1;
    let parts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"p{complete}.")))
        .map(|l| l.split("URI=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(parts.len(), 4, "{text}");
    let mut joined = Vec::new();
    for p in &parts {
        joined.extend(bytes(&server, &server.url(&format!("{base}/360p/{p}"))).await);
    }
    let segment_url = server.url(&format!("{base}/360p/s{complete}.m4s"));
    let r = server.http.get(&segment_url).send().await.unwrap();
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), joined);

    // Blocking reload: asking for the hinted part answers once that part is listed, and not
    // before (the playlist read just before did not list it).
    let text = server.get_text(&format!("{base}/360p/index.m3u8")).await;
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let listed = |t: &str| {
        t.lines()
            .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"{hint}\"")))
    };
    assert!(!listed(&text), "the hinted part is not listed yet");
    let (m, p) = hint
        .trim_start_matches('p')
        .trim_end_matches(".m4s")
        .split_once('.')
        .unwrap();
    let blocked = server.url(&format!(
        "{base}/360p/index.m3u8?_HLS_msn={m}&_HLS_part={p}"
    ));
    let hinted = server.url(&format!("{base}/360p/{hint}"));
    let (reload, part) = tokio::join!(
        async {
            let r = server.http.get(&blocked).send().await.unwrap();
            // Never stale: a CDN may answer every player asking for that part from its cache.
            assert_eq!(r.headers()["cache-control"], "public, max-age=12");
            r.text().await.unwrap()
        },
        bytes(&server, &hinted)
    );
    assert!(listed(&reload), "{reload}");
    assert_eq!(vitrine_transcode::validate::media_playlist(&reload), vec![]);
    let plain = server.http.get(&top).send().await.unwrap();
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    // A delta update asked of a 12 s window (which offers none) is the whole playlist.
    let delta = server
        .http
        .get(format!("{top}?_HLS_skip=YES"))
        .send()
        .await
        .unwrap();
    assert_eq!(delta.status(), 200);
    let delta = delta.text().await.unwrap();
    assert!(
        !delta.contains("EXT-X-SKIP") && delta.contains("#EXTINF"),
        "{delta}"
    );
    assert_eq!(vitrine_transcode::validate::media_playlist(&delta), vec![]);
    assert!(
        !part.is_empty(),
        "the preload-hinted part was served once it existed"
    );
    // Refused: far ahead of the live edge, malformed.
    let far = format!("{top}?_HLS_msn={}", next_msn(&reload) + 50);
    for url in [
        far,
        format!("{top}?_HLS_msn=x"),
        format!("{top}?_HLS_part=1"),
        format!("{top}?_HLS_skip=maybe"),
    ] {
        let r = server.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{url}");
    }
    for path in [
        "/hls/nope/master.m3u8",
        &format!("{base}/1080p/index.m3u8"),
        &format!("{base}/360p/manifest.json"),
        &format!("{base}/360p/..%2Fmanifest.json"),
    ] {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    // Stop: the recording becomes a replay with a poster, listed by the API.
    let live_segments = extinf(&server.get_text(&format!("{base}/360p/index.m3u8")).await).len();
    publisher.stop(&server.http).await;
    let vod = wait_playlist(&server, &top, "the replay", |p| {
        p.contains("#EXT-X-ENDLIST")
    })
    .await;
    assert_eq!(vitrine_transcode::validate::media_playlist(&vod), vec![]);
    assert!(!vod.contains("RENDITION-REPORT"), "{vod}");
    assert!(
        vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && !vod.contains("#EXT-X-PART"),
        "{vod}"
    );
    assert!(extinf(&vod).len() >= live_segments);
    let view = server
        .get_json(&format!("/api/v1/streams/{id}"), Some(&token))
        .await;
    assert_eq!(view["state"], "ended");
    let replay = &view["replay"];
    assert_eq!(replay["master_url"], master_url.as_str(), "{view}");
    assert_eq!(
        replay["vod_url"],
        server.url(&format!("/vod/{id}")).as_str()
    );
    let poster = bytes(&server, replay["poster_url"].as_str().unwrap()).await;
    assert_eq!(&poster[..2], &[0xff, 0xd8], "a JPEG");
    let total: f64 = extinf(&vod).iter().sum();
    let probe = ffprobe(&["-show_entries", "format=duration", &top]).await;
    let probed: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (probed - total).abs() < 0.5,
        "ffprobe reads {probed} s of {total} s"
    );
    assert!(
        server
            .get_text(&format!("/vod/{id}"))
            .await
            .contains("<video")
    );

    // Deleting the stream deletes its media.
    let r = server
        .http
        .delete(server.url(&format!("/api/v1/streams/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for url in [master_url.clone(), segment_url] {
        assert_eq!(
            server.http.get(&url).send().await.unwrap().status(),
            404,
            "{url}"
        );
    }
    server.stop().await;
}

/// Picks the playlist with fewer complete segments (renditions finish a segment at slightly
/// different moments).
trait MinBySegments {
    fn min_by_segments(&self, other: &str) -> String;
}

impl MinBySegments for String {
    fn min_by_segments(&self, other: &str) -> String {
        if next_msn(self) <= next_msn(other) {
            self.clone()
        } else {
            other.to_owned()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_changes_and_pipeline_failures_continue_the_playlists() {
    let server = hls_server().await;
    let token = server.seller("shop").await;
    let stream = server.stream(&token, "Resilience").await;
    let id = stream["id"].as_str().unwrap().to_owned();
    let (whip, key) = (
        stream["whip_url"].as_str().unwrap(),
        stream["stream_key"].as_str().unwrap(),
    );
    // A VP8 publisher first (a browser that prefers VP8), then H.264 after a drop.
    let vp8 = MediaSource::camera("video/VP8", 640, 360);
    let first = MediaPublisher::start(&server.http, &server.base, whip, key, vp8).await;
    let top = server.url(&format!("/hls/{id}/360p/index.m3u8"));
    let audio = server.url(&format!("/hls/{id}/audio/index.m3u8"));
    wait_playlist(&server, &top, "two segments", |p| extinf(p).len() >= 2).await;
    first.abandon().await;
    let h264 = MediaSource::camera("video/H264", 640, 360);
    let second = MediaPublisher::start(&server.http, &server.base, whip, key, h264).await;
    let after_drop = |p: &str| {
        p.split("#EXT-X-DISCONTINUITY\n")
            .nth(1)
            .is_some_and(|tail| extinf(tail).len() >= 2)
    };
    let text = wait_playlist(
        &server,
        &top,
        "segments after the publisher came back",
        after_drop,
    )
    .await;
    assert!(
        text.contains("#EXT-X-MAP:URI=\"init2.mp4\""),
        "a new init segment after the discontinuity: {text}"
    );
    wait_playlist(
        &server,
        &audio,
        "audio after the publisher came back",
        after_drop,
    )
    .await;

    // A pipeline that fails mid-stream is restarted and the playlists continue.
    let hls = server.running.as_ref().unwrap().state.hls.clone().unwrap();
    assert!(hls.restart(&vitrine_core::StreamId::parse(&id).unwrap()));
    let after_restart = |p: &str| {
        p.split("#EXT-X-DISCONTINUITY\n")
            .nth(2)
            .is_some_and(|tail| extinf(tail).len() >= 2)
    };
    let text = wait_playlist(&server, &top, "segments after the restart", after_restart).await;
    assert!(text.contains("init3.mp4"), "{text}");
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("vitrine_hls_pipeline_restarts_total 1"),
        "{metrics}"
    );
    // The master playlist never changed: the same two renditions.
    let master = server.get_text(&format!("/hls/{id}/master.m3u8")).await;
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2);
    second.abandon().await;

    // Audio only: one audio variant.
    let (radio, _voice) = go_live(&server, &token, "Radio", MediaSource::microphone()).await;
    let radio_id = radio["id"].as_str().unwrap().to_owned();
    let master = server
        .get_text(&format!("/hls/{radio_id}/master.m3u8"))
        .await;
    assert!(
        master.ends_with("CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"),
        "{master}"
    );
    let audio_only = server.url(&format!("/hls/{radio_id}/audio/index.m3u8"));
    let text = wait_playlist(&server, &audio_only, "audio segments", |p| {
        extinf(p).len() >= 2
    })
    .await;
    for d in extinf(&text) {
        assert!((d - 2.0).abs() <= 0.2, "audio segment of {d} s");
    }

    // Video only (a muted camera): variants without an audio group.
    let camera = MediaSource::camera("video/H264", 640, 360).muted();
    let (silent, _camera) = go_live(&server, &token, "Silent", camera).await;
    let silent_id = silent["id"].as_str().unwrap().to_owned();
    let master = server
        .get_text(&format!("/hls/{silent_id}/master.m3u8"))
        .await;
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
    assert!(
        !master.contains("AUDIO") && !master.contains("mp4a"),
        "{master}"
    );
    let video_only = server.url(&format!("/hls/{silent_id}/240p/index.m3u8"));
    wait_playlist(&server, &video_only, "video segments", |p| {
        extinf(p).len() >= 2
    })
    .await;
    server.stop().await;
}
