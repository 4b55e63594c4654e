//! The operations served by the media and chat crates (WHIP, WHEP, HLS, the chat websocket)
//! and the binary's own service routes, documented here because those crates speak
//! protocols with their own specifications and know nothing of OpenAPI.
//!
//! The functions below are never called: each one only carries its operation. The handlers
//! are in `vitrine_ingest::whip`, `vitrine_sfu::whep` (and `signaling`),
//! `vitrine_transcode::routes`, `vitrine_chat::routes`, and `crate::app`.

// `healthz` and `metrics` are documented on their handlers; their operations are listed here.
use crate::app::{__path_healthz, __path_metrics};
use vitrine_core::Problem;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    whip_offer,
    whip_options,
    whip_trickle,
    whip_end,
    whep_offer,
    whep_options,
    whep_trickle,
    whep_end,
    hls_master,
    hls_playlist,
    hls_object,
    hls_poster,
    hls_steering,
    chat,
    healthz,
    metrics,
    openapi_json
))]
pub struct Doc;

/// The bytes of a media file.
#[allow(dead_code)]
struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// Publish (WHIP, RFC 9725); a second publish replaces the first
#[utoipa::path(
    post,
    path = "/whip/{stream}",
    params(
        ("stream" = String, Path, description = "The stream's id"),
        ("Vitrine-Capture-Size" = Option<String>, Header, description = "The camera's picture size, `<width>x<height>` (16x16 to 7680x4320): the HLS ladder is planned from it when the first frames are smaller (a browser starts small while its bandwidth estimate ramps up)")
    ),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses(
        (
            status = 201,
            description = "SDP answer; Location names the session",
            body = String,
            content_type = "application/sdp",
            headers(
                ("Location" = String, description = "The session resource (relative), to PATCH and DELETE"),
                ("ETag" = String, description = "The session's ICE generation, for If-Match on an ICE restart (RFC 9725 §4.4)"),
                ("Link" = String, description = "One per STUN/TURN server the client may use: `<turn:...>; rel=\"ice-server\"; username=\"...\"; credential=\"...\"; credential-type=\"password\"` (RFC 9725 §4.6); TURN credentials expire")
            )
        ),
        (status = 400, description = "A malformed offer, or a capture size out of bounds (`invalid-capture-size`)", body = Problem),
        (status = 401, description = "Invalid or missing stream key", body = Problem),
        (status = 404, description = "No such stream", body = Problem),
        (status = 415, description = "The body is not application/sdp", body = Problem),
        (
            status = 503,
            description = "The server is at its session limit or has no free port",
            body = Problem,
            headers(("Retry-After" = u64, description = "Seconds to wait before offering again"))
        )
    ),
    security(("streamKey" = []))
)]
#[allow(dead_code)]
fn whip_offer() {}

/// The session resource operations WHIP and WHEP share (RFC 9725 §4): what the endpoint
/// accepts, trickle ICE, and the end of the session.
macro_rules! session_operations {
    ($stream_path:tt, $session_path:tt, $options:ident, $trickle:ident, $end:ident, $end_summary:tt, $ended:tt) => {
        /// What the endpoint accepts (Accept-Post) and the ICE servers to use (Link); a CORS preflight is answered apart
        #[utoipa::path(
            options,
            path = $stream_path,
            params(("stream" = String, Path, description = "The stream's id")),
            responses(
                (
                    status = 204,
                    description = "No content. The Link headers (STUN and TURN servers, TURN with time-limited credentials) go to any WHEP client, and to a WHIP client only with the stream key as bearer token",
                    headers(
                        ("Accept-Post" = String, description = "application/sdp"),
                        ("Link" = String, description = "One per ICE server: `<turn:...>; rel=\"ice-server\"; username=\"...\"; credential=\"...\"; credential-type=\"password\"`")
                    )
                ),
                (status = 404, description = "No such stream (WHEP)", body = Problem)
            )
        )]
        #[allow(dead_code)]
        fn $options() {}

        /// Trickle ICE candidates, or restart ICE (RFC 9725 §4.4)
        ///
        /// A fragment with new `a=ice-ufrag`/`a=ice-pwd` restarts ICE and needs `If-Match: *` or
        /// the session's current ETag; the answer carries the server's new credentials and
        /// candidates and the new ETag. Any If-Match must match the current ETag.
        #[utoipa::path(
            patch,
            path = $session_path,
            params(
                ("stream" = String, Path, description = "The stream's id"),
                ("session" = String, Path, description = "The session's id (from Location)"),
                ("If-Match" = Option<String>, Header, description = "`*` or the session's ETag; required for an ICE restart")
            ),
            request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "An SDP fragment (RFC 8840)"),
            responses(
                (
                    status = 200,
                    description = "ICE restarted: the server's new ICE credentials and candidates",
                    body = String,
                    content_type = "application/trickle-ice-sdpfrag",
                    headers(("ETag" = String, description = "The new ICE generation"))
                ),
                (
                    status = 204,
                    description = "Candidates added",
                    headers(("ETag" = String, description = "The current ICE generation"))
                ),
                (status = 400, description = "The fragment is not valid", body = Problem),
                (status = 404, description = "No such session", body = Problem),
                (status = 412, description = "If-Match does not match the session's ETag (its ICE generation changed)", body = Problem),
                (status = 415, description = "The body is not application/trickle-ice-sdpfrag", body = Problem),
                (status = 422, description = "The fragment's ice-ufrag is not the session's current one", body = Problem),
                (status = 428, description = "An ICE restart without If-Match", body = Problem)
            )
        )]
        #[allow(dead_code)]
        fn $trickle() {}

        #[doc = $end_summary]
        #[utoipa::path(
            delete,
            path = $session_path,
            params(
                ("stream" = String, Path, description = "The stream's id"),
                ("session" = String, Path, description = "The session's id (from Location)")
            ),
            responses(
                (status = 200, description = $ended),
                (status = 404, description = "No such session", body = Problem)
            )
        )]
        #[allow(dead_code)]
        fn $end() {}
    };
}

session_operations!(
    "/whip/{stream}",
    "/whip/{stream}/{session}",
    whip_options,
    whip_trickle,
    whip_end,
    "End the broadcast",
    "Ended"
);

/// Play (WHEP); no key needed
#[utoipa::path(
    post,
    path = "/whep/{stream}",
    params(("stream" = String, Path, description = "The stream's id")),
    request_body(content = String, content_type = "application/sdp", description = "SDP offer"),
    responses(
        (
            status = 201,
            description = "SDP answer; Location names the session",
            body = String,
            content_type = "application/sdp",
            headers(
                ("Location" = String, description = "The session resource (relative), to PATCH and DELETE"),
                ("ETag" = String, description = "The session's ICE generation, for If-Match on an ICE restart (RFC 9725 §4.4)"),
                ("Link" = String, description = "One per STUN/TURN server the client may use: `<turn:...>; rel=\"ice-server\"; username=\"...\"; credential=\"...\"; credential-type=\"password\"` (RFC 9725 §4.6); TURN credentials expire")
            )
        ),
        (status = 404, description = "No such stream", body = Problem),
        (status = 415, description = "The body is not application/sdp", body = Problem),
        (
            status = 429,
            description = "Too many unconnected sessions from this address or for this stream",
            body = Problem,
            headers(("Retry-After" = u64, description = "Seconds until a pending session times out"))
        ),
        (
            status = 503,
            description = "The stream or the server has as many WebRTC viewers as it takes (watch over HLS), or no port is free",
            body = Problem,
            headers(("Retry-After" = u64, description = "Seconds to wait before offering again"))
        )
    )
)]
#[allow(dead_code)]
fn whep_offer() {}

session_operations!(
    "/whep/{stream}",
    "/whep/{stream}/{session}",
    whep_options,
    whep_trickle,
    whep_end,
    "Stop watching",
    "Stopped"
);

/// HLS master playlist: a variant per rendition (BANDWIDTH, RESOLUTION, FRAME-RATE, CODECS) and the AAC rendition group. A stream that is starting is answered once every rendition has a segment (up to 15 s).
#[utoipa::path(
    get,
    path = "/hls/{stream}/master.m3u8",
    params(("stream" = String, Path, description = "The stream's id")),
    responses(
        (status = 200, description = "OK", body = String, content_type = "application/vnd.apple.mpegurl"),
        (status = 404, description = "No such stream, or it has no HLS output (yet)", body = Problem)
    )
)]
#[allow(dead_code)]
fn hls_master() {}

/// Media playlist: LL-HLS while live (EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL CAN-BLOCK-RELOAD), VOD with EXT-X-ENDLIST once the recording is a replay
#[utoipa::path(
    get,
    path = "/hls/{stream}/{rendition}/index.m3u8",
    params(
        ("stream" = String, Path, description = "The stream's id"),
        ("rendition" = String, Path, description = "`1080p`, `720p`, ..., or `audio`."),
        ("_HLS_msn" = Option<u64>, Query, minimum = 0, description = "Blocking reload: answer once this media sequence number is listed."),
        ("_HLS_part" = Option<u32>, Query, minimum = 0, description = "With _HLS_msn: answer once this part of that segment is listed."),
        ("_HLS_skip" = Option<String>, Query, description = "`YES` (or `v2`): a delta update, the segments older than the playlist's CAN-SKIP-UNTIL replaced by EXT-X-SKIP (offered when the live window is longer than six target durations).")
    ),
    responses(
        (status = 200, description = "OK", body = String, content_type = "application/vnd.apple.mpegurl"),
        (status = 400, description = "A malformed directive, _HLS_part without _HLS_msn, _HLS_msn too far ahead of the live edge, or _HLS_skip other than YES or v2", body = Problem),
        (status = 404, description = "No such stream or rendition", body = Problem),
        (status = 502, description = "In a cluster: the node producing the stream did not answer", body = Problem),
        (status = 503, description = "The requested segment or part did not become available in time", body = Problem)
    )
)]
#[allow(dead_code)]
fn hls_playlist() {}

/// An init segment, segment or part (fMP4/CMAF); cached as immutable
#[utoipa::path(
    get,
    path = "/hls/{stream}/{rendition}/{file}",
    params(
        ("stream" = String, Path, description = "The stream's id"),
        ("rendition" = String, Path, description = "`1080p`, `720p`, ..., or `audio`."),
        ("file" = String, Path, description = "`init{n}.mp4`, `s{msn}.m4s` (segment) or `p{msn}.{i}.m4s` (part; the preload-hinted part is held until it exists).")
    ),
    responses(
        (status = 200, description = "OK", body = inline(Binary), content_type = "video/mp4"),
        (status = 404, description = "No such media object", body = Problem)
    )
)]
#[allow(dead_code)]
fn hls_object() {}

/// A picture of the stream
#[utoipa::path(
    get,
    path = "/hls/{stream}/poster.jpg",
    params(("stream" = String, Path, description = "The stream's id")),
    responses(
        (status = 200, description = "OK", body = inline(Binary), content_type = "image/jpeg"),
        (status = 404, description = "No such stream, or no poster yet", body = Problem)
    )
)]
#[allow(dead_code)]
fn hls_poster() {}

/// The content steering manifest the master playlist names when CDNs are configured as pathways: `{"VERSION":1,"TTL":300,"PATHWAY-PRIORITY":["cdn-a","cdn-b"]}`
#[utoipa::path(
    get,
    path = "/hls/{stream}/steering.json",
    params(
        ("stream" = String, Path, description = "The stream's id"),
        ("_HLS_pathway" = Option<String>, Query, description = "The pathway the player uses now (does not change the answer)."),
        ("_HLS_throughput" = Option<u64>, Query, description = "The player's measured throughput, bit/s (does not change the answer).")
    ),
    responses(
        (status = 200, description = "OK", body = Object, content_type = "application/json"),
        (status = 404, description = "No pathways are configured", body = Problem)
    )
)]
#[allow(dead_code)]
fn hls_steering() {}

/// The stream's chat room (websocket, protocol v1: docs/chat-protocol.md)
///
/// Upgrade to a websocket; the first message must be hello (optionally with a buyer or seller token). JSON text frames with a type field.
#[utoipa::path(
    get,
    path = "/ws/streams/{stream}/chat",
    params(("stream" = String, Path, description = "Stream id")),
    responses(
        (status = 101, description = "Switching protocols"),
        (status = 400, description = "Not a websocket upgrade request", body = Problem),
        (status = 404, description = "No such stream", body = Problem)
    )
)]
#[allow(dead_code)]
fn chat() {}

/// This document
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    responses((status = 200, description = "OpenAPI 3.1", body = Object, content_type = "application/json"))
)]
#[allow(dead_code)]
fn openapi_json() {}
