//! The seller studio and buyer watch pages: plain HTML and ES modules compiled into the binary,
//! so a deployment is one file and no page loads anything from another origin.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the pages load hls.js from (its version in the name).
pub const HLS_JS_PATH: &str = concat!("/assets/hls-", env!("HLS_JS_VERSION"), ".min.js");

/// hls.js from its npm package (see build.rs).
const HLS_JS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/player/node_modules/hls.js/dist/hls.min.js"
));

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

macro_rules! page {
    ($ct:literal, $file:literal) => {
        get(|| async { asset($ct, include_str!(concat!("../assets/", $file))) })
    };
}

/// The developer portal's page; `{{csrf}}` and `{{seller}}` are filled in (escaped) by the
/// server, which knows the signed-in session.
pub const DEVELOPERS_HTML: &str = include_str!("../assets/developers.html");

/// Routes of the pages and their assets.
pub fn routes() -> Router {
    Router::new()
        .route("/", page!("text/html; charset=utf-8", "index.html"))
        .route("/studio", page!("text/html; charset=utf-8", "studio.html"))
        .route(
            "/watch/{stream}",
            page!("text/html; charset=utf-8", "watch.html"),
        )
        .route(
            "/vod/{stream}",
            page!("text/html; charset=utf-8", "vod.html"),
        )
        .route(
            "/assets/hls-player.js",
            page!("text/javascript; charset=utf-8", "hls-player.js"),
        )
        .route(
            "/assets/vod.js",
            page!("text/javascript; charset=utf-8", "vod.js"),
        )
        .route(
            "/assets/captions.js",
            page!("text/javascript; charset=utf-8", "captions.js"),
        )
        .route(
            HLS_JS_PATH,
            get(|| async {
                // Versioned name: cached for a year; a new hls.js gets a new URL.
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/javascript; charset=utf-8"),
                        ),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=31536000, immutable"),
                        ),
                    ],
                    HLS_JS,
                )
            }),
        )
        .route(
            "/assets/vitrine.css",
            page!("text/css; charset=utf-8", "vitrine.css"),
        )
        .route(
            "/assets/webrtc.js",
            page!("text/javascript; charset=utf-8", "webrtc.js"),
        )
        .route(
            "/assets/studio.js",
            page!("text/javascript; charset=utf-8", "studio.js"),
        )
        .route(
            "/assets/chat.js",
            page!("text/javascript; charset=utf-8", "chat.js"),
        )
        .route(
            "/assets/shop.js",
            page!("text/javascript; charset=utf-8", "shop.js"),
        )
        .route(
            "/assets/auction.js",
            page!("text/javascript; charset=utf-8", "auction.js"),
        )
        .route(
            "/assets/in-sync.js",
            page!("text/javascript; charset=utf-8", "in-sync.js"),
        )
        .route(
            "/assets/replay-timeline.js",
            page!("text/javascript; charset=utf-8", "replay-timeline.js"),
        )
        .route(
            "/assets/studio-shop.js",
            page!("text/javascript; charset=utf-8", "studio-shop.js"),
        )
        .route(
            "/assets/watch.js",
            page!("text/javascript; charset=utf-8", "watch.js"),
        )
        .route(
            "/assets/developers.js",
            page!("text/javascript; charset=utf-8", "developers.js"),
        )
}

#[cfg(test)]
mod tests {
    use super::HLS_JS_PATH;

    #[test]
    fn pages_load_the_embedded_hls_js() {
        for page in [
            include_str!("../assets/watch.html"),
            include_str!("../assets/vod.html"),
        ] {
            assert!(
                page.contains(&format!("src=\"{HLS_JS_PATH}\"")),
                "{HLS_JS_PATH}"
            );
        }
    }
}
