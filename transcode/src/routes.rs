//! HTTP for HLS players and CDNs: `/hls/{stream}/master.m3u8`, each rendition's
//! `index.m3u8` (with LL-HLS blocking reload: `_HLS_msn`, `_HLS_part`), its init segments,
//! segments and parts, the WebVTT subtitle renditions, and the poster. Playlists are `no-cache` while live; media objects are
//! immutable (their names are never reused), so any CDN can cache them for a year.

use crate::Hls;
use crate::media::{MANIFEST, POSTER, StreamMedia};
use crate::origins::{FORWARDED, Producer};
use crate::steering;
use crate::store::check_key;
use crate::text_track;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use vitrine_core::{Problem, StreamId};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const WEBVTT: &str = "text/vtt; charset=utf-8";
/// How long a master playlist request waits for a stream that is starting.
const MASTER_WAIT: Duration = Duration::from_secs(15);
/// How long a master playlist request waits for a stream's session to start, when it has
/// none (kept short: unknown streams are answered 404 after it).
const MEDIA_APPEAR_WAIT: Duration = Duration::from_secs(2);
/// Blocking requests ahead of the live edge by more than this many segments are refused.
const MAX_MSN_AHEAD: u64 = 2;

pub fn routes(hls: Arc<Hls>) -> Router {
    Router::new()
        .route("/hls/{stream}/master.m3u8", get(master))
        .route("/hls/{stream}/poster.jpg", get(poster))
        .route("/hls/{stream}/steering.json", get(steering_manifest))
        .route("/hls/{stream}/{rendition}/index.m3u8", get(playlist))
        .route("/hls/{stream}/{rendition}/{file}", get(object))
        .with_state(hls)
}

/// An answer with its content type, `Cache-Control` (a fixed policy, or one computed at run
/// time) and the CORS header every HLS answer carries.
fn reply(
    content_type: &'static str,
    cache: impl Into<Cow<'static, str>>,
    body: impl IntoResponse,
) -> Response {
    let cache = match cache.into() {
        Cow::Borrowed(fixed) => HeaderValue::from_static(fixed),
        Cow::Owned(computed) => {
            HeaderValue::from_str(&computed).unwrap_or(HeaderValue::from_static("no-cache"))
        }
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, cache),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response()
}

fn playlist_cache(media: &StreamMedia) -> &'static str {
    if media.read(|m| m.ended) {
        "public, max-age=10"
    } else {
        "no-cache"
    }
}

/// The producer's answer, when another node produces the stream (and this request was not
/// already passed on by a node).
async fn elsewhere(hls: &Hls, raw: &str, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    if headers.contains_key(FORWARDED) {
        return None;
    }
    let stream = StreamId::parse(raw).ok()?;
    if hls.producing(&stream) {
        return None;
    }
    match hls.origins().producer(&stream).await {
        Producer::Node(node) => {
            hls.metrics.forwarded.inc();
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            Some(hls.origins().forward(&node, path).await)
        }
        Producer::Here => None,
    }
}

async fn stream_media(hls: &Hls, raw: &str) -> Result<Arc<StreamMedia>, Problem> {
    let stream = StreamId::parse(raw).map_err(|_| Problem::not_found("no such stream"))?;
    hls.media(&stream)
        .await
        .ok_or_else(|| Problem::not_found("this stream has no HLS output"))
}

async fn master(
    State(hls): State<Arc<Hls>>,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    count(&hls, "master");
    if let Some(answer) = elsewhere(&hls, &stream, &uri, &headers).await {
        return Ok(answer);
    }
    let id = StreamId::parse(&stream).map_err(|_| Problem::not_found("no such stream"))?;
    let media = hls
        .media_soon(&id, MEDIA_APPEAR_WAIT)
        .await
        .ok_or_else(|| Problem::not_found("this stream has no HLS output"))?;
    // A stream that just went live has no codec strings until its encoders produced a frame.
    if !media.read(|m| m.ended) {
        media.wait_for(MASTER_WAIT, |m| m.playable()).await;
    }
    let text = media
        .read(|m| m.master())
        .ok_or_else(|| Problem::not_found("this stream's HLS output is not ready"))?;
    let text = steering::master(&text, media.stream.as_str(), &hls.config.pathways);
    Ok(reply(PLAYLIST, playlist_cache(&media), text))
}

/// The steering manifest the master playlist names when CDNs are configured as pathways
/// (players add `_HLS_pathway` and `_HLS_throughput`, which do not change the answer).
async fn steering_manifest(
    State(hls): State<Arc<Hls>>,
    Path(stream): Path<String>,
) -> Result<Response, Problem> {
    StreamId::parse(&stream).map_err(|_| Problem::not_found("no such stream"))?;
    if hls.config.pathways.is_empty() {
        return Err(Problem::not_found("no content steering on this server"));
    }
    let body = steering::manifest(&hls.config.pathways);
    Ok(reply("application/json", "public, max-age=60", body))
}

/// The LL-HLS delivery directives of a playlist request (RFC 8216bis 6.2.5).
#[derive(Debug, Deserialize)]
pub struct Directives {
    #[serde(rename = "_HLS_msn")]
    msn: Option<String>,
    #[serde(rename = "_HLS_part")]
    part: Option<String>,
    #[serde(rename = "_HLS_skip")]
    skip: Option<String>,
}

/// `_HLS_skip`: `YES` asks for a delta update (`v2` also asks to skip date ranges, of which
/// these playlists have none).
fn skip_directive(raw: Option<&str>) -> Result<bool, Problem> {
    match raw {
        None => Ok(false),
        Some("YES" | "v2") => Ok(true),
        Some(_) => Err(Problem::bad_request(
            "invalid-directive",
            "_HLS_skip must be YES or v2",
        )),
    }
}

fn directive<T: std::str::FromStr>(raw: Option<&str>, name: &str) -> Result<Option<T>, Problem> {
    raw.map(|v| {
        v.parse().map_err(|_| {
            Problem::bad_request(
                "invalid-directive",
                format!("{name} must be a non-negative integer"),
            )
        })
    })
    .transpose()
}

async fn playlist(
    State(hls): State<Arc<Hls>>,
    Path((stream, rendition)): Path<(String, String)>,
    Query(d): Query<Directives>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if let Some(answer) = elsewhere(&hls, &stream, &uri, &headers).await {
        return Ok(answer);
    }
    let media = stream_media(&hls, &stream).await?;
    if rendition.starts_with(text_track::PREFIX) {
        // Subtitle playlists are plain (no parts, no blocking reload): a segment is listed
        // with its media segment, and players poll them.
        let window = hls.config.window_segments;
        let text = media
            .read(|m| {
                let first = m
                    .playlists
                    .values()
                    .next()
                    .and_then(|p| p.window_first_msn());
                m.subtitles
                    .iter()
                    .find(|t| text_track::rendition_name(&t.language) == rendition)
                    .map(|t| t.render(m.ended, window, first, &|msn| m.program_time(msn)))
            })
            .ok_or_else(|| Problem::not_found("no such rendition"))?;
        return Ok(reply(PLAYLIST, playlist_cache(&media), text));
    }
    count(
        &hls,
        if d.msn.is_some() {
            "blocking"
        } else {
            "playlist"
        },
    );
    let msn: Option<u64> = directive(d.msn.as_deref(), "_HLS_msn")?;
    let part: Option<u32> = directive(d.part.as_deref(), "_HLS_part")?;
    let skip = skip_directive(d.skip.as_deref())?;
    if part.is_some() && msn.is_none() {
        return Err(Problem::bad_request(
            "invalid-directive",
            "_HLS_part needs _HLS_msn",
        ));
    }
    let (exists, next, target) = media.read(|m| {
        m.playlists
            .get(&rendition)
            .map(|p| (true, p.next_msn(), p.segment_target))
            .unwrap_or((false, 0, 0.0))
    });
    if !exists {
        return Err(Problem::not_found("no such rendition"));
    }
    if let Some(msn) = msn {
        if msn > next + MAX_MSN_AHEAD {
            return Err(Problem::bad_request(
                "invalid-directive",
                format!("_HLS_msn {msn} is too far ahead of the live edge"),
            ));
        }
        // The server must answer within three target durations (RFC 8216bis 6.2.5.2).
        let wait = Duration::from_secs_f64(3.0 * target.max(1.0));
        let ready = media
            .wait_for(wait, |m| {
                m.playlists
                    .get(&rendition)
                    .is_some_and(|p| p.has(msn, part))
            })
            .await;
        if !ready {
            hls.metrics.reload_timeouts.inc();
            return Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "reload-timeout",
                "The requested segment or part did not become available in time",
            ));
        }
    }
    let text = media
        .read(|m| {
            let mut text = m
                .playlists
                .get(&rendition)
                .map(|p| p.render_delta(&|msn| m.program_time(msn), skip))?;
            if !m.ended {
                // Every sibling's newest part, for a player switching renditions.
                let siblings = m.playlists.iter().filter(|(name, _)| **name != rendition);
                for (name, sibling) in siblings {
                    text.extend(sibling.report(&format!("../{name}/index.m3u8")));
                }
            }
            Some(text)
        })
        .ok_or_else(|| Problem::not_found("no such rendition"))?;
    // An answer to a blocking reload never goes stale (it lists at least what was asked for):
    // a CDN may keep it and answer every player asking for the same part from its cache.
    let cache: Cow<'static, str> = match msn {
        Some(_) if !media.read(|m| m.ended) => blocking_cache(target).into(),
        _ => playlist_cache(&media).into(),
    };
    Ok(reply(PLAYLIST, cache, text))
}

/// `Cache-Control` of a blocking reload's answer: six target durations, long past the time any
/// live player asks for that part (the same URL is never asked for a different answer).
fn blocking_cache(target_secs: f64) -> String {
    format!(
        "public, max-age={}",
        (6.0 * target_secs).ceil().max(1.0) as u64
    )
}

/// Counts a request for `kind` (see `metrics::RequestLabels`).
fn count(hls: &Hls, kind: &'static str) {
    let labels = crate::metrics::RequestLabels { kind };
    hls.metrics.requests.get_or_create(&labels).inc();
}

/// What kind of media object `file` names.
fn object_kind(file: &str) -> &'static str {
    if parse_part(file).is_some() {
        "part"
    } else if file.starts_with('s') && file.ends_with(".m4s") {
        "segment"
    } else if file.starts_with("init") && file.ends_with(".mp4") {
        "init"
    } else {
        "other"
    }
}

/// `p{msn}.{index}.m4s` → (msn, index).
fn parse_part(file: &str) -> Option<(u64, u32)> {
    let (msn, index) = file
        .strip_prefix('p')?
        .strip_suffix(".m4s")?
        .split_once('.')?;
    Some((msn.parse().ok()?, index.parse().ok()?))
}

async fn object(
    State(hls): State<Arc<Hls>>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    count(&hls, object_kind(&file));
    let key = format!("{stream}/{rendition}/{file}");
    let text = file.ends_with(".vtt");
    let id = StreamId::parse(&stream).map_err(|_| Problem::not_found("no such stream"))?;
    if check_key(&key).is_err()
        || file == MANIFEST
        || !(file.ends_with(".m4s") || file.ends_with(".mp4") || text)
    {
        return Err(Problem::not_found("no such media object"));
    }
    if hls.producing(&id) {
        wait_for_part(&hls, &stream, &rendition, &file).await?;
    }
    let reply_with = |bytes| {
        if file == text_track::WHOLE {
            // A replay's whole-recording subtitles may be rewritten (a later, better job).
            reply(WEBVTT, "public, max-age=60", bytes)
        } else if text {
            reply(WEBVTT, IMMUTABLE, bytes)
        } else {
            reply("video/mp4", IMMUTABLE, bytes)
        }
    };
    match stored(&hls, &key).await? {
        Some(bytes) => Ok(reply_with(bytes)),
        // Not stored (yet): a part the preload hint names is held by its producer until it
        // exists; on a node whose storage is its own, the producer has every object.
        None => match elsewhere(&hls, &stream, &uri, &headers).await {
            Some(answer) => Ok(answer),
            None => Err(Problem::not_found("no such media object")),
        },
    }
}

/// The preload hint names a part before it exists: hold the request until it does (or can no
/// longer come).
async fn wait_for_part(
    hls: &Hls,
    stream: &str,
    rendition: &str,
    file: &str,
) -> Result<(), Problem> {
    let Some((msn, index)) = parse_part(file) else {
        return Ok(());
    };
    let media = stream_media(hls, stream).await?;
    let target = media.read(|m| m.playlists.get(rendition).map_or(0.0, |p| p.segment_target));
    let wait = Duration::from_secs_f64(3.0 * target.max(1.0));
    media
        .wait_for(wait, |m| {
            m.playlists
                .get(rendition)
                .is_none_or(|p| p.has_part(msn, index) || p.part_gone(msn, index))
        })
        .await;
    Ok(())
}

/// An object from the store; a failure to read is a 500, logged.
async fn stored(hls: &Hls, key: &str) -> Result<Option<axum::body::Bytes>, Problem> {
    hls.get(key).await.map_err(|e| {
        tracing::error!(%key, error = %e, "reading HLS media");
        Problem::internal()
    })
}

async fn poster(
    State(hls): State<Arc<Hls>>,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = StreamId::parse(&stream).map_err(|_| Problem::not_found("no such stream"))?;
    match stored(&hls, &format!("{id}/{POSTER}")).await? {
        Some(bytes) => Ok(reply("image/jpeg", "public, max-age=60", bytes)),
        None => match elsewhere(&hls, &stream, &uri, &headers).await {
            Some(answer) => Ok(answer),
            None => Err(Problem::not_found("this stream has no poster yet")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names() {
        assert_eq!(parse_part("p12.3.m4s"), Some((12, 3)));
        assert_eq!(parse_part("s12.m4s"), None);
        assert_eq!(parse_part("p1.x.m4s"), None);
    }
}
