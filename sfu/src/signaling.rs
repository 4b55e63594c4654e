//! The HTTP side shared by WHIP and WHEP (RFC 9725 resource semantics): content-type checks,
//! the `201 Created` answer, trickle-ICE `PATCH`, `DELETE`, `OPTIONS`, and the mapping of
//! signaling errors to problem responses.

use crate::offer::OfferError;
use crate::peer::PeerError;
use crate::sdpfrag::parse_sdpfrag;
use crate::session::Sessions;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vitrine_core::{Problem, SessionId, StreamId};

pub const SDP: &str = "application/sdp";
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Errors of a signaling request, each with the status a WHIP/WHEP client expects.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("unknown stream")]
    UnknownStream,
    #[error("unknown session")]
    UnknownSession,
    #[error("invalid or missing stream key")]
    Unauthorized,
    #[error("expected Content-Type: {0}")]
    ContentType(&'static str),
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error("sdp is not valid utf-8")]
    NotUtf8,
    #[error("{0}")]
    BadFragment(String),
    #[error("server is at its session limit")]
    Full,
    #[error("negotiation failed: {0}")]
    Negotiation(#[from] PeerError),
    #[error("stream directory unavailable")]
    Directory,
}

impl IntoResponse for SignalingError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let problem = match &self {
            Self::UnknownStream | Self::UnknownSession => Problem::not_found(detail),
            Self::Unauthorized => Problem::unauthorized(detail),
            Self::ContentType(expected) => Problem::unsupported_media_type(expected),
            Self::Offer(OfferError::NoUsableCodec { .. }) => {
                Problem::bad_request("no-usable-codec", detail)
            }
            Self::Offer(OfferError::NoMedia) => Problem::bad_request("no-media", detail),
            Self::Offer(_) | Self::NotUtf8 => Problem::bad_request("malformed-sdp", detail),
            Self::BadFragment(_) => Problem::bad_request("malformed-sdpfrag", detail),
            Self::Full => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "at-capacity",
                "service unavailable",
            )
            .with_detail(detail),
            Self::Negotiation(e) => {
                tracing::warn!(error = %e, "negotiation failed");
                Problem::bad_request("negotiation-failed", detail)
            }
            Self::Directory => Problem::internal(),
        };
        problem.into_response()
    }
}

/// Parses the `{stream}` path segment; an impossible id is simply an unknown stream.
pub fn stream_id(raw: &str) -> Result<StreamId, SignalingError> {
    StreamId::parse(raw).map_err(|_| SignalingError::UnknownStream)
}

/// Parses the `{session}` path segment.
pub fn session_id(raw: &str) -> Result<SessionId, SignalingError> {
    SessionId::parse(raw).map_err(|_| SignalingError::UnknownSession)
}

/// Checks the request's media type (parameters such as `charset` are ignored).
pub fn require_content_type(
    headers: &HeaderMap,
    expected: &'static str,
) -> Result<(), SignalingError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected));
    if ok {
        Ok(())
    } else {
        Err(SignalingError::ContentType(expected))
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The offer body as text, checked for size and syntax.
pub fn offer_text(body: &Bytes) -> Result<String, SignalingError> {
    let text = std::str::from_utf8(body).map_err(|_| SignalingError::NotUtf8)?;
    crate::offer::inspect_offer(text)?;
    Ok(text.to_owned())
}

/// `201 Created` with the answer and the session's `Location` (relative, per RFC 9725).
pub fn created(location: String, answer: String) -> Response {
    let mut response = (StatusCode::CREATED, answer).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    response
}

/// `OPTIONS` on an endpoint: what it accepts (CORS preflights are answered by the CORS layer).
pub fn options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert("accept-post", HeaderValue::from_static(SDP));
    response
}

/// `PATCH` on a session resource: trickle ICE candidates from the client.
pub async fn patch(
    sessions: &Sessions,
    stream: &StreamId,
    session: &SessionId,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, SignalingError> {
    let found = sessions
        .get(stream, session)
        .ok_or(SignalingError::UnknownSession)?;
    require_content_type(headers, SDPFRAG)?;
    let text = std::str::from_utf8(body).map_err(|_| SignalingError::NotUtf8)?;
    let frag = parse_sdpfrag(text).map_err(|e| SignalingError::BadFragment(e.to_string()))?;
    found
        .add_candidates(frag)
        .await
        .map_err(|e| SignalingError::BadFragment(format!("candidate refused: {e}")))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE` on a session resource: the client ends its session.
pub async fn delete(
    sessions: &Sessions,
    stream: &StreamId,
    session: &SessionId,
) -> Result<Response, SignalingError> {
    sessions
        .get(stream, session)
        .ok_or(SignalingError::UnknownSession)?;
    if let Some(s) = sessions.remove(session) {
        s.close().await;
    }
    Ok(StatusCode::OK.into_response())
}
