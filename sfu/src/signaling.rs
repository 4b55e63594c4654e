//! The HTTP side shared by WHIP and WHEP (RFC 9725 resource semantics): content-type checks,
//! the `201 Created` answer, trickle-ICE `PATCH`, `DELETE`, `OPTIONS`, and the mapping of
//! signaling errors to problem responses.

use crate::admission::Refusal;
use crate::candidates::CandidatePolicy;
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
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("negotiation failed: {0}")]
    Negotiation(#[from] PeerError),
    #[error("stream directory unavailable")]
    Directory,
}

/// How long a client is asked to wait when every session or port of the node is taken.
pub const AT_CAPACITY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

impl SignalingError {
    /// The `Retry-After` of a refusal that a later attempt may overcome.
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Refused(r) => Some(r.retry_after()),
            Self::Full | Self::Negotiation(PeerError::NoPort) => Some(AT_CAPACITY_RETRY_AFTER),
            _ => None,
        }
    }
}

impl IntoResponse for SignalingError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let retry_after = self.retry_after();
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
            Self::Full | Self::Negotiation(PeerError::NoPort) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "at-capacity",
                "service unavailable",
            )
            .with_detail(detail),
            Self::Refused(r) if r.is_rate_limit() => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-pending-sessions",
                "too many requests",
            )
            .with_detail(detail),
            Self::Refused(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "viewer-limit",
                "service unavailable",
            )
            .with_detail(detail),
            Self::Negotiation(e) => {
                tracing::warn!(error = %e, "negotiation failed");
                Problem::bad_request("negotiation-failed", detail)
            }
            Self::Directory => Problem::internal(),
        };
        let mut response = problem.into_response();
        if let Some(wait) = retry_after {
            let secs = wait.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
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

/// `PATCH` on a session resource: trickle ICE candidates from the client. Candidates `policy`
/// refuses (internal addresses on a public deployment) are dropped without an error, as an
/// ICE agent ignores a candidate it cannot use.
pub async fn patch(
    sessions: &Sessions,
    policy: CandidatePolicy,
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
    let mut frag = parse_sdpfrag(text).map_err(|e| SignalingError::BadFragment(e.to_string()))?;
    let offered = frag.candidates.len();
    frag.candidates.retain(|c| policy.allows(&c.candidate));
    if frag.candidates.len() < offered {
        tracing::debug!(
            dropped = offered - frag.candidates.len(),
            "internal trickle candidates dropped"
        );
    }
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
