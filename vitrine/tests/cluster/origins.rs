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
