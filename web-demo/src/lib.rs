//! The seller studio and buyer watch pages: plain HTML and ES modules compiled into the binary,
//! so a deployment is one file and no page loads anything from another origin.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

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
            "/assets/studio-shop.js",
            page!("text/javascript; charset=utf-8", "studio-shop.js"),
        )
        .route(
            "/assets/watch.js",
            page!("text/javascript; charset=utf-8", "watch.js"),
        )
}
