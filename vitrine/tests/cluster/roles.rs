//! Roles on nodes of their own: an API node sends media clients to a media node, an HLS node
//! packages and a subtitles node captions a stream published on a media node that does
//! neither, each through one relay.

use crate::clients::{Publisher, Viewer};
use crate::nodes::Cluster;
use crate::{stream, support};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_run_apart_and_an_api_node_sends_media_clients_to_a_media_node() {
    let cluster = Cluster::with_roles(&[("m", "media"), ("p", "api")]).await;
    let (media, api) = (cluster.base("m"), cluster.base("p"));
    let (id, key) = stream(&cluster, "p").await;

    // The media node serves no API and no pages; the API node serves both.
    let http = reqwest::Client::new();
    for (base, status) in [(&media, 404), (&api, 200)] {
        let r = http
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{base}");
    }

    // A seller and a viewer who reach the API node are sent to the media node, and media flows.
    let publisher = Publisher::start(vec![format!("{api}/whip/{id}")], &key).await;
    assert_eq!(publisher.node(), media);
    let mut viewer = Viewer::start(vec![format!("{api}/whep/{id}")]).await;
    viewer.video(20).await;
    assert_eq!(viewer.node(), media);
    assert_eq!(cluster.node("p").metric("vitrine_publishers").await, 0.0);
    assert_eq!(cluster.node("m").metric("vitrine_publishers").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_node_packages_a_stream_published_on_a_media_node() {
    let cluster = Cluster::with_roles(&[("m", "api,media"), ("h", "hls")]).await;
    let (media, hls) = (cluster.base("m"), cluster.base("h"));
    let (id, key) = stream(&cluster, "m").await;
    let http = reqwest::Client::new();
    // The camera starts small (as a browser's does) and says it captures 426x240: the HLS
    // node, which gets the stream through a relay, plans its ladder from the declared size
    // (from the picture it would make one 120p rendition).
    let declaring = reqwest::Client::builder()
        .default_headers(reqwest::header::HeaderMap::from_iter([(
            reqwest::header::HeaderName::from_static("vitrine-capture-size"),
            reqwest::header::HeaderValue::from_static("426x240"),
        )]))
        .build()
        .unwrap();
    let camera = support::MediaPublisher::start(
        &declaring,
        &media,
        &format!("{media}/whip/{id}"),
        &key,
        support::MediaSource::camera("video/H264", 214, 120),
    )
    .await;

    // The HLS node relays the stream from the media node and packages it.
    let playlist = format!("{hls}/hls/{id}/240p/index.m3u8");
    cluster
        .until("the HLS node lists a segment", || async {
            match http.get(&playlist).send().await {
                Ok(r) if r.status() == 200 => r.text().await.unwrap().contains("#EXTINF"),
                _ => false,
            }
        })
        .await;
    assert_eq!(
        cluster.node("h").metric("vitrine_cluster_relays").await,
        1.0
    );
    assert_eq!(cluster.node("m").metric("vitrine_relay_legs").await, 1.0);
    // The media node packages nothing.
    let r = http
        .get(format!("{media}/hls/{id}/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The seller stops: the relay, whose only consumer is the packaging, closes (the idle
    // grace, 2 s here), and so does its leg on the media node.
    camera.stop(&http).await;
    let (h, m) = (cluster.node("h"), cluster.node("m"));
    cluster
        .until("the HLS node's relay closes", || async {
            h.metric("vitrine_cluster_relays").await == 0.0
                && m.metric("vitrine_relay_legs").await == 0.0
        })
        .await;
}

/// Said by the seller in the captions test, after a pause that leaves the subtitles node
/// time to take the stream.
const PHRASES: [&str; 2] = [
    "Welcome to the live sale.",
    "This red jacket is half price today.",
];

/// The phrases spoken (espeak-ng) with 3 s pauses around them, in one WAV file.
fn speech(dir: &std::path::Path) -> std::path::PathBuf {
    use std::process::Command;
    let run = |command: &mut Command| {
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("{command:?} (Debian packages the setup installs): {e}"));
        assert!(status.success(), "{command:?}");
    };
    let pause = dir.join("pause.wav");
    run(Command::new("sox")
        .args(["-n", "-r", "22050", "-c", "1", "-b", "16"])
        .arg(&pause)
        .args(["trim", "0", "3"]));
    let out = dir.join("speech.wav");
    let mut join = Command::new("sox");
    join.arg(&pause);
    for (i, text) in PHRASES.iter().enumerate() {
        let wav = dir.join(format!("p{i}.wav"));
        run(Command::new("espeak-ng")
            .args(["-v", "en", "-s", "130", "-w"])
            .arg(&wav)
            .arg(text));
        join.arg(&wav).arg(&pause);
    }
    run(join.args(["-r", "16000"]).arg(&out));
    out
}

/// A node with only the subtitles role captions a stream whose media node runs no Whisper:
/// it takes the stream's captions work, receives its audio over one relay, and its captions
/// reach a buyer chatting on the media node through the shared chat log, and the WebVTT
/// subtitle rendition of the HLS node that packages the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtitles_node_captions_a_stream_published_on_a_media_node() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech(dir.path());
    let cluster =
        Cluster::with_roles(&[("m", "api,media"), ("s", "subtitles"), ("h", "hls")]).await;
    let (media, hls) = (cluster.base("m"), cluster.base("h"));
    let (id, key) = stream(&cluster, "m").await;
    let (mut buyer, _) = support::ChatClient::join(&media, &id, None, None).await;
    let http = reqwest::Client::new();
    let _camera = support::MediaPublisher::start(
        &http,
        &media,
        &format!("{media}/whip/{id}"),
        &key,
        support::MediaSource::camera("video/VP8", 320, 240).speaking(&wav),
    )
    .await;

    // Final captions of what was said arrive in the chat of the media node.
    let mut finals: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !finals.join(" ").to_lowercase().contains("price") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "finals so far: {finals:?}\n{}",
            cluster.logs()
        );
        let event = buyer.next().await;
        if event["type"] == "caption" && event["kind"] == "final" {
            assert_eq!(event["lang"], "en", "{event}");
            finals.push(event["text"].as_str().unwrap().to_owned());
        }
    }
    // Words of both phrases (the rest may suffer on a busy machine: the other cluster tests
    // run beside this one; tests/captions.rs measures the words' error rate).
    let heard = finals.join(" ").to_lowercase();
    assert!(heard.contains("welcome"), "{finals:?}");
    // The subtitles node did the work over one relay; the media node has no Whisper.
    let (m, s, h) = (cluster.node("m"), cluster.node("s"), cluster.node("h"));
    assert!(s.metric("vitrine_subtitles_final_cues_total").await >= 1.0);
    assert_eq!(s.metric("vitrine_cluster_relays").await, 1.0);
    assert_eq!(
        m.metric("vitrine_relay_legs").await,
        2.0,
        "one to each role's node"
    );
    for node in [m, h] {
        assert!(!node.metrics().await.contains("vitrine_subtitles_"));
    }

    // The HLS node, which runs no Whisper either, lists an English subtitle rendition and
    // places the subtitles node's finals in it, on its own media timeline.
    let master = format!("{hls}/hls/{id}/master.m3u8");
    cluster
        .until("the HLS node serves the master playlist", || async {
            match http.get(&master).send().await {
                Ok(r) if r.status() == 200 => {
                    let text = r.text().await.unwrap();
                    text.contains("TYPE=SUBTITLES") && text.contains("LANGUAGE=\"en\"")
                }
                _ => false,
            }
        })
        .await;
    let placed = std::sync::Mutex::new(String::new());
    cluster
        .until("the HLS node's subtitles hold the captions", || async {
            let text = subtitle_text(&http, &hls, &id).await;
            let done = text.to_lowercase().contains("welcome");
            *placed.lock().unwrap() = text;
            done
        })
        .await;
    let placed = placed.into_inner().unwrap();
    assert!(
        finals.iter().any(|f| placed.contains(f.as_str())),
        "a final as said in chat: {finals:?} / {placed}"
    );
}

/// The cue text of every WebVTT segment the HLS node's English subtitle playlist lists.
async fn subtitle_text(http: &reqwest::Client, base: &str, id: &str) -> String {
    let url = format!("{base}/hls/{id}/subtitles-en/index.m3u8");
    let Ok(r) = http.get(&url).send().await else {
        return String::new();
    };
    let playlist = r.text().await.unwrap_or_default();
    let mut text = String::new();
    for name in playlist.lines().filter(|l| l.ends_with(".vtt")) {
        let segment = http
            .get(format!("{base}/hls/{id}/subtitles-en/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(segment.status(), 200);
        let vtt = segment.text().await.unwrap();
        for line in vtt.lines().filter(|l| {
            !l.is_empty() && !l.contains("-->") && !l.starts_with("WEBVTT") && !l.starts_with("X-")
        }) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}
