//! Any node an HLS origin: a stream's HLS is produced once, by the node holding its `hls` work
//! lease, into a shared S3-compatible bucket (a real server the test command starts); every
//! node answers `/hls/...` for it (media from the bucket, playlists from the producer), only
//! the producer writes the recording, and another node continues it when the producer dies.

use crate::nodes::{Bucket, Cluster};
use crate::{stream, support};
use std::collections::BTreeSet;

const NO_LIMITS: &[&str] = &["--no-ip-limits"];

/// GET `url`, which must answer 200; its body.
async fn text(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.text().await.unwrap()
}

/// The (msn, part) a live playlist's preload hint names.
fn hint(playlist: &str) -> (u64, u32) {
    let uri = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p"))
        .unwrap_or_else(|| panic!("no preload hint in\n{playlist}"));
    let (msn, rest) = uri.split_once('.').unwrap();
    let part = rest.split_once('.').unwrap().0;
    (msn.parse().unwrap(), part.parse().unwrap())
}

/// The segments (sequence numbers) a playlist lists, by their `s{msn}.m4s` lines.
fn segments(playlist: &str) -> BTreeSet<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix('s')?.strip_suffix(".m4s")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_a_live_streams_hls_and_only_its_producer_writes_the_recording() {
    let bucket = Bucket::create().await;
    let cluster = Cluster::start_in(&[("a", NO_LIMITS), ("b", NO_LIMITS)], Some(bucket)).await;
    let (a, b) = (cluster.base("a"), cluster.base("b"));
    let (id, key) = stream(&cluster, "a").await;
    let http = reqwest::Client::new();
    let camera = support::MediaPublisher::start(
        &http,
        &a,
        &format!("{a}/whip/{id}"),
        &key,
        support::MediaSource::camera("video/H264", 426, 240),
    )
    .await;
    let bucket = cluster.bucket.as_ref().unwrap();
    let manifest_key = format!("{id}/manifest.json");
    cluster
        .until("the producer saved the recording's manifest", || async {
            bucket.get(&manifest_key).await.is_some()
        })
        .await;

    // Node b, which packages nothing, answers for the stream as a itself does.
    let master = text(&http, &format!("{a}/hls/{id}/master.m3u8")).await;
    assert_eq!(
        text(&http, &format!("{b}/hls/{id}/master.m3u8")).await,
        master
    );
    let index = format!("{id}/240p/index.m3u8");
    let mut same = false;
    for _ in 0..3 {
        // Both ask for the same coming part with a blocking reload: the answer is the
        // playlist at the moment that part is listed (a part listed while b's request is on
        // its way to the producer would make them differ: try again).
        let (msn, part) = hint(&text(&http, &format!("{a}/hls/{index}")).await);
        let query = format!("?_HLS_msn={msn}&_HLS_part={part}");
        let (url_a, url_b) = (
            format!("{a}/hls/{index}{query}"),
            format!("{b}/hls/{index}{query}"),
        );
        let (from_a, from_b) = tokio::join!(text(&http, &url_a), text(&http, &url_b));
        assert!(!from_b.contains("#EXT-X-ENDLIST"), "{from_b}");
        if from_a == from_b {
            same = true;
            break;
        }
    }
    assert!(same, "a and b serve different live playlists");
    // A segment read through b (from the bucket) is the producer's.
    let playlist = text(&http, &format!("{a}/hls/{index}")).await;
    let msn = *segments(&playlist).last().unwrap();
    let segment = format!("{id}/240p/s{msn}.m4s");
    let (from_a, from_b) = tokio::join!(
        http.get(format!("{a}/hls/{segment}")).send(),
        http.get(format!("{b}/hls/{segment}")).send(),
    );
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(
        (from_a.status().as_u16(), from_b.status().as_u16()),
        (200, 200)
    );
    assert_eq!(from_a.bytes().await.unwrap(), from_b.bytes().await.unwrap());
    // Reading the stream on b changed nothing in the bucket: the recording is still live (b
    // used to take an unfinished manifest it had not written for a crashed process's and end
    // it, and every player then saw ENDLIST).
    let saved: serde_json::Value =
        serde_json::from_slice(&bucket.get(&manifest_key).await.unwrap()).unwrap();
    assert_eq!(saved["ended"], false);
    assert_eq!(cluster.node("b").metric("vitrine_hls_pipelines").await, 0.0);

    // The seller stops: after the grace (3 s here) the recording ends, on both nodes alike.
    camera.stop(&http).await;
    for base in [&a, &b] {
        let url = format!("{base}/hls/{index}");
        cluster
            .until("the playlist ends", || async {
                text(&http, &url).await.contains("#EXT-X-ENDLIST")
            })
            .await;
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&bucket.get(&manifest_key).await.unwrap()).unwrap();
    assert_eq!(saved["ended"], true);
    assert_eq!(
        text(&http, &format!("{a}/hls/{index}")).await,
        text(&http, &format!("{b}/hls/{index}")).await
    );
}

/// The newest segment a live playlist lists with its parts, or just parts of (the open one).
fn newest_msn(playlist: &str) -> Option<u64> {
    let parts = playlist
        .lines()
        .filter_map(|l| l.split("URI=\"p").nth(1)?.split('.').next()?.parse().ok());
    parts.chain(segments(playlist)).max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_producer_is_replaced_and_the_recording_goes_on_under_new_numbers() {
    let bucket = Bucket::create().await;
    let nodes = [("m", "api,media"), ("h1", "hls"), ("h2", "hls")];
    let mut cluster = Cluster::with_roles_in(&nodes, Some(bucket)).await;
    let media = cluster.base("m");
    let (id, key) = stream(&cluster, "m").await;
    let http = reqwest::Client::new();
    let _camera = support::MediaPublisher::start(
        &http,
        &media,
        &format!("{media}/whip/{id}"),
        &key,
        support::MediaSource::camera("video/H264", 426, 240),
    )
    .await;
    let index = format!("{id}/240p/index.m3u8");
    let bucket = cluster.bucket.as_ref().unwrap();
    let manifest_key = format!("{id}/manifest.json");
    cluster
        .until(
            "one HLS node produces the stream and saved its manifest",
            || async {
                let produced = cluster.node("h1").metric("vitrine_hls_pipelines").await
                    + cluster.node("h2").metric("vitrine_hls_pipelines").await;
                produced == 1.0 && bucket.get(&manifest_key).await.is_some()
            },
        )
        .await;
    let (dead, survivor) = if cluster.node("h1").metric("vitrine_hls_pipelines").await == 1.0 {
        ("h1", "h2")
    } else {
        ("h2", "h1")
    };
    let survivor_base = cluster.base(survivor);
    // Both answer; the last thing the producer listed before it dies.
    let before = text(&http, &format!("{survivor_base}/hls/{index}")).await;
    let last = text(&http, &format!("{}/hls/{index}", cluster.base(dead))).await;
    let last_msn = newest_msn(&last).unwrap().max(newest_msn(&before).unwrap());
    cluster.node_mut(dead).kill();

    // The survivor takes the stream's work once the dead node's lease lapses and continues
    // the same recording: new numbers past any the dead node can have used (its objects keep
    // their names in the bucket and in caches), after a discontinuity, never ended.
    let url = format!("{survivor_base}/hls/{index}");
    cluster
        .until("the survivor lists a segment of its own", || async {
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => {
                    let text = r.text().await.unwrap();
                    segments(&text).iter().any(|&msn| msn > last_msn)
                }
                _ => false,
            }
        })
        .await;
    let continued = text(&http, &url).await;
    assert_eq!(
        cluster.node(survivor).metric("vitrine_hls_pipelines").await,
        1.0
    );
    assert!(!continued.contains("#EXT-X-ENDLIST"), "{continued}");
    assert!(continued.contains("#EXT-X-DISCONTINUITY\n"), "{continued}");
    let listed = segments(&continued);
    assert!(
        listed.iter().all(|&msn| msn > last_msn + 1),
        "the dead node listed up to {last_msn}; now:\n{continued}"
    );
    let violations = vitrine_transcode::validate::media_playlist(&continued);
    assert!(violations.is_empty(), "{violations:?}\n{continued}");
    // The survivor's segments are its own objects, not the dead node's.
    let first = *listed.first().unwrap();
    let segment = format!("{survivor_base}/hls/{id}/240p/s{first}.m4s");
    assert_eq!(http.get(&segment).send().await.unwrap().status(), 200);
}
