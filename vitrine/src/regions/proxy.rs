//! The middleware that sends a request where it belongs: API calls of another region are
//! forwarded there and its answer relayed (clients drop their `Authorization` header on a
//! redirect to another origin, so a 307 would lose the credential), pages and media get a 307
//! (no credential rides on them; WHIP and WHEP clients follow 307s, RFC 9725 §4.5).

use super::vouch::{CLIENT_ADDRESS, Vouched};
use super::{Home, RegionInfo, Regions, home_of};
use crate::state::MAX_BODY_BYTES;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use vitrine_core::{ClientIp, Problem, Region};

/// Set on a request one region forwards to another, with the caller's address vouched for
/// ([`super::vouch`]): the receiver answers it itself, so two regions that disagree about a tag
/// cannot bounce a request between them.
pub const FORWARDED: &str = "vitrine-forwarded-from";
/// Names the region that answered, on every forwarded or redirected answer.
const ANSWERED_BY: &str = "vitrine-region";
/// Longest a forwarded call may take: an order waits for its payment (10 s by default).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// The regions and a client to reach them.
#[derive(Clone)]
pub struct Homes {
    pub regions: Arc<Regions>,
    pub(super) http: reqwest::Client,
}

impl Homes {
    pub fn new(regions: Arc<Regions>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { regions, http }
    }

    /// The headers of a call this node makes to another region on behalf of the caller at
    /// `caller`: where it comes from, and the caller's address, vouched for (the home counts
    /// the call against the caller's per-address limits, not this node's).
    pub(super) fn vouching(&self, caller: IpAddr, method: &Method, path: &str) -> HeaderMap {
        let here = &self.regions.here;
        let now = super::vouch::now_secs();
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(here.as_str()) {
            headers.insert(FORWARDED, v);
        }
        let voucher = self.regions.key.vouch(here, caller, now, method, path);
        headers.insert(CLIENT_ADDRESS, voucher);
        headers
    }
}

/// The part of a new order's body that says where it belongs.
#[derive(Deserialize)]
struct ProductOf {
    product_id: String,
}

/// Middleware: a request of another region is forwarded (API) or redirected (pages, media).
pub async fn route_home(
    State(homes): State<Option<Homes>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(homes) = homes else {
        return next.run(request).await;
    };
    // Forwarded by another region's node (the edge checked its voucher): answered here.
    if request.extensions().get::<Vouched>().is_some() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bearer = vitrine_sfu::signaling::bearer(&parts.headers);
    match home_of(&homes.regions, &parts.method, parts.uri.path(), bearer) {
        Home::Here => next.run(Request::from_parts(parts, body)).await,
        Home::There(region, info) => send(&homes, region, info, parts, body).await,
        Home::OfTheProduct => {
            let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
                return too_large();
            };
            let product = serde_json::from_slice::<ProductOf>(&bytes).ok();
            let there = product.and_then(|p| homes.regions.elsewhere(&p.product_id));
            match there {
                Some((region, info)) => send(&homes, region, info, parts, bytes.into()).await,
                None => next.run(Request::from_parts(parts, bytes.into())).await,
            }
        }
    }
}

fn too_large() -> Response {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "payload too large",
    )
    .with_detail(format!("bodies are limited to {MAX_BODY_BYTES} bytes"))
    .into_response()
}

async fn send(
    homes: &Homes,
    region: &Region,
    info: &RegionInfo,
    parts: Parts,
    body: Body,
) -> Response {
    let path = parts.uri.path();
    if path.starts_with("/api/") || path.starts_with("/oauth/") {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
            return too_large();
        };
        forward(homes, region, info, &parts, bytes).await
    } else {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        redirect(region, info, target)
    }
}

/// A 307 to the same path and query in `region` (clients repeat the method and the body).
pub fn redirect(region: &Region, info: &RegionInfo, path_and_query: &str) -> Response {
    let Ok(location) = HeaderValue::from_str(&format!("{}{path_and_query}", info.public_url))
    else {
        return Problem::internal().into_response();
    };
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    answered_by(response.headers_mut(), region);
    response
}

fn answered_by(headers: &mut HeaderMap, region: &Region) {
    if let Ok(v) = HeaderValue::from_str(region.as_str()) {
        headers.insert(ANSWERED_BY, v);
    }
}

/// Headers that belong to one connection, not to the request or answer they travel with.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Sends the call to `region` and answers with what it answered.
#[tracing::instrument(skip_all, fields(region = %region, path = parts.uri.path()))]
async fn forward(
    homes: &Homes,
    region: &Region,
    info: &RegionInfo,
    parts: &Parts,
    body: Bytes,
) -> Response {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        let ours = [FORWARDED, CLIENT_ADDRESS, "x-forwarded-for", "forwarded"];
        if !hop_by_hop(name) && !ours.contains(&name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    let caller = ClientIp::of(parts).0;
    headers.extend(homes.vouching(caller, &parts.method, parts.uri.path()));
    let sent = homes
        .http
        .request(parts.method.clone(), format!("{}{target}", info.public_url))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => return unreachable_region(region, e),
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            headers.append(name, value.clone());
        }
    }
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(e) => return unreachable_region(region, e),
    };
    let mut response = (status, body).into_response();
    *response.headers_mut() = headers;
    answered_by(response.headers_mut(), region);
    response
}

/// The region that holds the data did not answer: a 503 that says so, with when to retry.
fn unreachable_region(region: &Region, error: reqwest::Error) -> Response {
    // Without the URL: its query may carry what a log must not (an OAuth2 request's state).
    let error = error.without_url();
    tracing::warn!(region = %region, error = %error, "a home region did not answer");
    let problem = super::region_unavailable(region, "this call's data is kept there".into());
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    answered_by(response.headers_mut(), region);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_path_and_query() {
        let regions = super::super::tests::regions("eu");
        let token = vitrine_core::Secret::generate("bt_us");
        let (region, info) = regions.elsewhere(token.expose()).unwrap();
        let r = redirect(region, info, "/watch/x?lang=fr");
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://us.example/watch/x?lang=fr"
        );
        assert_eq!(r.headers()[ANSWERED_BY], "us");
    }

    #[test]
    fn connection_headers_are_not_forwarded() {
        for name in ["connection", "host", "transfer-encoding", "content-length"] {
            assert!(hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["authorization", "idempotency-key", "content-type"] {
            assert!(!hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }
}
