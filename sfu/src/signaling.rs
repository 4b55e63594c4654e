//! The HTTP side shared by WHIP and WHEP (RFC 9725 resource semantics): content-type checks,
//! the `201 Created` answer with its `ETag` and ICE-server `Link`s, `PATCH` (trickle ICE and ICE
//! restart, guarded by `If-Match`), `DELETE`, `OPTIONS`, and the mapping of signaling errors to
//! problem responses.

use crate::admission::Refusal;
use crate::candidates::CandidatePolicy;
use crate::ice_servers::IceServers;
use crate::offer::OfferError;
use crate::peer::PeerError;
use crate::sdpfrag::{SdpFrag, parse_sdpfrag, restart_fragment, valid_ice_value};
use crate::session::{IceGeneration, Session, Sessions};
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
    #[error("{0}")]
    BadCaptureSize(String),
    #[error("server is at its session limit")]
    Full,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("negotiation failed: {0}")]
    Negotiation(#[from] PeerError),
    #[error("stream directory unavailable")]
    Directory,
    #[error("the session's ICE generation changed: If-Match does not match its ETag")]
    PreconditionFailed,
    #[error("an ICE restart needs If-Match: \"*\" or the session's ETag")]
    PreconditionRequired,
    #[error("the fragment's ice-ufrag is not the session's current one")]
    IceSessionMismatch,
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
            Self::BadCaptureSize(_) => Problem::bad_request("invalid-capture-size", detail),
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
            Self::PreconditionFailed => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "ice-generation-changed",
                "precondition failed",
            )
            .with_detail(detail),
            Self::PreconditionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if-match-required",
                "precondition required",
            )
            .with_detail(detail),
            Self::IceSessionMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ice-session-mismatch",
                "unprocessable content",
            )
            .with_detail(detail),
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

/// `201 Created` with the answer, the session's `Location` (relative, per RFC 9725), its `ETag`
/// (the ICE generation, for a later restart) and a `Link` per ICE server the client may use.
pub async fn created(
    sessions: &Sessions,
    servers: &IceServers,
    stream: &StreamId,
    session: &SessionId,
    location: String,
    answer: String,
) -> Response {
    let mut response = (StatusCode::CREATED, answer).into_response();
    let etag = match sessions.get(stream, session) {
        Some(s) => s.ice().await.map(|ice| ice.etag()),
        None => None,
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(header::ETAG, v);
    }
    link_ice_servers(headers, servers);
    response
}

/// Appends a `Link: <url>; rel="ice-server"; ...` per server (RFC 9725 §4.6), TURN credentials
/// made now.
pub fn link_ice_servers(headers: &mut HeaderMap, servers: &IceServers) {
    for server in servers.at(std::time::SystemTime::now()) {
        if let Ok(v) = HeaderValue::from_str(&server.link()) {
            headers.append(header::LINK, v);
        }
    }
}

/// `OPTIONS` on an endpoint: what it accepts and, to a client that may open a session there
/// (`servers`), the ICE servers to use (CORS preflights are answered by the CORS layer).
pub fn options(servers: Option<&IceServers>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("accept-post", HeaderValue::from_static(SDP));
    if let Some(servers) = servers {
        link_ice_servers(headers, servers);
    }
    response
}

/// What a `PATCH` asks of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchKind {
    /// More candidates for the current ICE generation.
    Trickle,
    /// An ICE restart with the client's new credentials.
    Restart { ufrag: String, pwd: String },
}

/// Whether `if_match` (an `If-Match` field value) matches `etag`: `*`, or one of its strong
/// entity-tags (If-Match compares strongly, so a weak `W/"..."` never matches).
fn if_match_matches(if_match: &str, etag: &str) -> bool {
    if_match.trim() == "*" || if_match.split(',').any(|tag| tag.trim() == etag)
}

/// Sorts a `PATCH` (RFC 9725 §4.4): new credentials in the fragment are a restart, which needs
/// `If-Match` (`*` or the current `ETag`); any `If-Match` must match; a fragment naming another
/// ufrag without a new password belongs to an ICE generation the session no longer has.
pub fn classify(
    if_match: Option<&str>,
    current: &IceGeneration,
    frag: &SdpFrag,
) -> Result<PatchKind, SignalingError> {
    if let Some(v) = if_match
        && !if_match_matches(v, &current.etag())
    {
        return Err(SignalingError::PreconditionFailed);
    }
    if let (Some(ufrag), Some(pwd)) = (&frag.ufrag, &frag.pwd)
        && (*ufrag != current.remote_ufrag || *pwd != current.remote_pwd)
    {
        if if_match.is_none() {
            return Err(SignalingError::PreconditionRequired);
        }
        if !valid_ice_value(ufrag, 4) || !valid_ice_value(pwd, 22) {
            return Err(SignalingError::BadFragment(
                "ice-ufrag or ice-pwd is not 4 or 22 to 256 ice-chars".into(),
            ));
        }
        return Ok(PatchKind::Restart {
            ufrag: ufrag.clone(),
            pwd: pwd.clone(),
        });
    }
    match &frag.ufrag {
        Some(ufrag) if *ufrag != current.remote_ufrag => Err(SignalingError::IceSessionMismatch),
        _ => Ok(PatchKind::Trickle),
    }
}

/// `PATCH` on a session resource: trickle ICE candidates from the client, or an ICE restart
/// (RFC 9725 §4.4), answered `200` with this side's new credentials and candidates as a
/// fragment and the new `ETag`. Candidates `policy` refuses (internal addresses on a public
/// deployment) are dropped without an error, as an ICE agent ignores a candidate it cannot use.
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
    let frag = parse_sdpfrag(text).map_err(|e| SignalingError::BadFragment(e.to_string()))?;
    let if_match = match headers.get(header::IF_MATCH) {
        Some(v) => Some(v.to_str().map_err(|_| SignalingError::PreconditionFailed)?),
        None => None,
    };
    let _patching = found.lock_ice().await;
    let current = found.ice().await.ok_or(SignalingError::UnknownSession)?;
    match classify(if_match, &current, &frag)? {
        PatchKind::Trickle => {
            add_candidates(&found, policy, frag).await?;
            let mut response = StatusCode::NO_CONTENT.into_response();
            set_etag(&mut response, &current.etag());
            Ok(response)
        }
        PatchKind::Restart { ufrag, pwd } => {
            let local = found.restart_ice(&ufrag, &pwd, policy).await?;
            add_candidates(&found, policy, frag).await?;
            let answer = restart_fragment(&local).ok_or(PeerError::NoLocalDescription)?;
            let etag = found.ice().await.map(|ice| ice.etag());
            tracing::debug!(%session, "ice restarted");
            let mut response = (StatusCode::OK, answer).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
            if let Some(etag) = etag {
                set_etag(&mut response, &etag);
            }
            Ok(response)
        }
    }
}

fn set_etag(response: &mut Response, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
}

/// Hands the fragment's candidates that `policy` allows to the session.
async fn add_candidates(
    session: &Session,
    policy: CandidatePolicy,
    mut frag: SdpFrag,
) -> Result<(), SignalingError> {
    let offered = frag.candidates.len();
    frag.candidates.retain(|c| policy.allows(&c.candidate));
    if frag.candidates.len() < offered {
        tracing::debug!(
            dropped = offered - frag.candidates.len(),
            "internal trickle candidates dropped"
        );
    }
    session
        .add_candidates(frag)
        .await
        .map_err(|e| SignalingError::BadFragment(format!("candidate refused: {e}")))
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

/// The header in which a publisher says the picture size it captures, `<width>x<height>`.
pub const CAPTURE_SIZE: &str = "vitrine-capture-size";

/// The capture size a WHIP offer declares (see [`CAPTURE_SIZE`]); `None` when absent. Sizes
/// from 16x16 to 7680x4320 (8K) are accepted.
pub fn capture_size(headers: &HeaderMap) -> Result<Option<(u32, u32)>, SignalingError> {
    let Some(raw) = headers.get(CAPTURE_SIZE) else {
        return Ok(None);
    };
    let bad = || {
        SignalingError::BadCaptureSize(format!(
            "{CAPTURE_SIZE} must be <width>x<height>, from 16x16 to 7680x4320"
        ))
    };
    let (w, h) = raw
        .to_str()
        .map_err(|_| bad())?
        .split_once('x')
        .ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) {
        return Err(bad());
    }
    Ok(Some((w, h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_capture_size_is_read_within_bounds() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CAPTURE_SIZE, HeaderValue::from_str(v).unwrap());
            capture_size(&h)
        };
        assert_eq!(capture_size(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with("1280x720").unwrap(), Some((1280, 720)));
        assert_eq!(with("7680x4320").unwrap(), Some((7680, 4320)));
        for bad in [
            "",
            "1280",
            "1280x",
            "x720",
            "1280x720x1",
            "-1x720",
            "15x720",
            "1280x4321",
            "1e3x720",
        ] {
            let e = with(bad).unwrap_err();
            assert!(matches!(e, SignalingError::BadCaptureSize(_)), "{bad:?}");
            let response = e.into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    fn current() -> IceGeneration {
        IceGeneration {
            local_ufrag: "srv1".into(),
            remote_ufrag: "cli1".into(),
            remote_pwd: "clientpasswordclientpw".into(),
        }
    }

    fn frag(ufrag: Option<&str>, pwd: Option<&str>) -> SdpFrag {
        SdpFrag {
            ufrag: ufrag.map(str::to_owned),
            pwd: pwd.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn new_credentials_with_if_match_are_a_restart() {
        let etag = current().etag();
        let new = frag(Some("cli2"), Some("newclientpasswordnewpw"));
        let restart = PatchKind::Restart {
            ufrag: "cli2".into(),
            pwd: "newclientpasswordnewpw".into(),
        };
        assert_eq!(classify(Some("*"), &current(), &new).unwrap(), restart);
        assert_eq!(classify(Some(&etag), &current(), &new).unwrap(), restart);
        let listed = format!("\"other\", {etag}");
        assert_eq!(classify(Some(&listed), &current(), &new).unwrap(), restart);
        assert!(matches!(
            classify(None, &current(), &new),
            Err(SignalingError::PreconditionRequired)
        ));
        assert!(matches!(
            classify(Some("\"stale\""), &current(), &new),
            Err(SignalingError::PreconditionFailed)
        ));
        let weak = format!("W/{etag}");
        assert!(matches!(
            classify(Some(&weak), &current(), &new),
            Err(SignalingError::PreconditionFailed)
        ));
        assert!(matches!(
            classify(Some("*"), &current(), &frag(Some("cli2"), Some("short"))),
            Err(SignalingError::BadFragment(_))
        ));
    }

    #[test]
    fn trickles_of_the_current_generation_pass_and_stale_ones_do_not() {
        let same = frag(Some("cli1"), Some("clientpasswordclientpw"));
        assert_eq!(
            classify(None, &current(), &same).unwrap(),
            PatchKind::Trickle
        );
        assert_eq!(
            classify(None, &current(), &frag(None, None)).unwrap(),
            PatchKind::Trickle
        );
        assert_eq!(
            classify(Some(&current().etag()), &current(), &same).unwrap(),
            PatchKind::Trickle
        );
        assert!(matches!(
            classify(None, &current(), &frag(Some("old0"), None)),
            Err(SignalingError::IceSessionMismatch)
        ));
        assert!(matches!(
            classify(Some("\"stale\""), &current(), &same),
            Err(SignalingError::PreconditionFailed)
        ));
        for (e, status) in [
            (SignalingError::PreconditionFailed, 412),
            (SignalingError::PreconditionRequired, 428),
            (SignalingError::IceSessionMismatch, 422),
        ] {
            assert_eq!(e.into_response().status().as_u16(), status);
        }
    }
}
