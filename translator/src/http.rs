//! The HTTP face: LibreTranslate's API shape (`POST /translate`, `GET /languages`), so the
//! Vitrine server (and any LibreTranslate client) uses the local model exactly as it would a
//! LibreTranslate service. Errors are problem JSON (RFC 9457) that also carry LibreTranslate's
//! `error` member. Plus `/healthz` and `/metrics`.

use crate::languages::{LANGUAGES, Language, language};
use crate::service::{ServiceError, Translator};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest text in one request item (the Vitrine client's own bound).
pub const MAX_TEXT: usize = 2_000;
/// Most texts in one request (`q` as an array).
pub const MAX_ITEMS: usize = 32;
/// Request bodies larger than this are refused before parsing.
const MAX_BODY: usize = 96 * 1024;

/// What requests must carry when the service is given an API key: only the key's SHA-256 is
/// kept in memory.
#[derive(Clone, Default)]
pub struct Access {
    key_hash: Option<[u8; 32]>,
}

impl Access {
    pub fn open() -> Self {
        Self::default()
    }

    pub fn with_key(key: &str) -> Self {
        Self {
            key_hash: Some(Sha256::digest(key.as_bytes()).into()),
        }
    }

    fn allows(&self, given: Option<&str>) -> bool {
        let Some(expected) = self.key_hash else {
            return true;
        };
        let given: [u8; 32] = Sha256::digest(given.unwrap_or_default().as_bytes()).into();
        // Compared without an early exit.
        expected
            .iter()
            .zip(given)
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
    }
}

struct Shared {
    translator: Translator,
    access: Access,
    registry: Registry,
}

pub fn router(translator: Translator, access: Access, registry: Registry) -> Router {
    let shared = Arc::new(Shared {
        translator,
        access,
        registry,
    });
    Router::new()
        .route("/translate", post(translate))
        .route("/languages", get(languages))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// `q` is one text or a list of texts; the reply mirrors it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct TranslateRequest {
    q: Texts,
    source: String,
    target: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
}

/// An error as problem JSON with LibreTranslate's `error` member beside RFC 9457's.
struct Problem {
    status: StatusCode,
    detail: String,
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Problem {
    Problem {
        status,
        detail: detail.into(),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "error": self.detail,
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

fn parse(headers: &HeaderMap, body: &Bytes) -> Result<TranslateRequest, Problem> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        #[derive(Deserialize)]
        struct Form {
            q: String,
            source: String,
            target: String,
            format: Option<String>,
            api_key: Option<String>,
        }
        let f: Form = serde_urlencoded::from_bytes(body)
            .map_err(|e| problem(StatusCode::BAD_REQUEST, format!("invalid form: {e}")))?;
        Ok(TranslateRequest {
            q: Texts::One(f.q),
            source: f.source,
            target: f.target,
            format: f.format,
            api_key: f.api_key,
        })
    } else {
        serde_json::from_slice(body).map_err(|e| {
            problem(
                StatusCode::BAD_REQUEST,
                format!("invalid request (q, source, target): {e}"),
            )
        })
    }
}

fn pair(source: &str, target: &str) -> Result<(&'static Language, &'static Language), Problem> {
    let known = |code: &str| {
        language(code).ok_or_else(|| {
            let offered: Vec<&str> = LANGUAGES.iter().map(|l| l.code).collect();
            problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "{code:?} is not supported (languages: {}; `auto` is not)",
                    offered.join(", ")
                ),
            )
        })
    };
    Ok((known(source)?, known(target)?))
}

async fn translate(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let request = parse(&headers, &body)?;
    if !shared.access.allows(request.api_key.as_deref()) {
        return Err(problem(StatusCode::FORBIDDEN, "invalid API key"));
    }
    if request.format.as_deref().is_some_and(|f| f != "text") {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "only format \"text\" is supported",
        ));
    }
    let (from, to) = pair(&request.source, &request.target)?;
    let texts = match &request.q {
        Texts::One(t) => std::slice::from_ref(t),
        Texts::Many(ts) => ts.as_slice(),
    };
    if texts.len() > MAX_ITEMS {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_ITEMS} texts per request"),
        ));
    }
    if let Some(long) = texts.iter().find(|t| t.len() > MAX_TEXT) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            format!(
                "a text of {} bytes is longer than {MAX_TEXT} bytes",
                long.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        if from.code == to.code || text.trim().is_empty() {
            out.push(text.clone());
            continue;
        }
        let translation =
            shared
                .translator
                .translate(text, from, to)
                .await
                .map_err(|e| match e {
                    ServiceError::Busy => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                    ServiceError::Engine(crate::engine::EngineError::TooLong(_)) => {
                        problem(StatusCode::BAD_REQUEST, e.to_string())
                    }
                    e => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                })?;
        out.push(translation.text);
    }
    let reply = match request.q {
        Texts::One(_) => serde_json::json!({ "translatedText": out.remove(0) }),
        Texts::Many(_) => serde_json::json!({ "translatedText": out }),
    };
    Ok(axum::Json(reply).into_response())
}

async fn languages() -> impl IntoResponse {
    let list: Vec<_> = LANGUAGES
        .iter()
        .map(|l| {
            let targets: Vec<&str> = LANGUAGES.iter().map(|t| t.code).collect();
            serde_json::json!({ "code": l.code, "name": l.name, "targets": targets })
        })
        .collect();
    axum::Json(list)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &shared.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
