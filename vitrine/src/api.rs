//! The REST API under `/api/v1`: streams of the authenticated seller, and the public view of a
//! stream that the watch page reads. Every seller route is scoped to the caller's own streams; a
//! stream of another seller answers 404, exactly as a stream that does not exist.

use crate::app::AppState;
use crate::store::{MAX_TITLE_CHARS, Seller, StoreError, StreamRow};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_core::{Problem, Secret, StreamId, StreamState};
use vitrine_sfu::signaling::bearer;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streams", get(list_streams).post(create_stream))
        .route("/api/v1/streams/{id}", get(get_stream))
        .route("/api/v1/public/streams/{id}", get(public_stream))
}

/// API errors, mapped to problem responses in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.title)]
    Problem(Box<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(Box::new(p))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(p) => p.into_response(),
            Self::Store(e) => {
                tracing::error!(error = %e, "store error");
                Problem::internal().into_response()
            }
        }
    }
}

/// The seller authenticated by `Authorization: Bearer <api token>`.
pub struct AuthSeller(pub Seller);

impl FromRequestParts<AppState> for AuthSeller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| Problem::unauthorized("missing bearer api token"))?;
        state
            .store
            .seller_by_token(&Secret::from_presented(token))
            .await?
            .map(AuthSeller)
            .ok_or_else(|| Problem::unauthorized("invalid api token").into())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    pub title: String,
}

/// A stream as its owner sees it.
#[derive(Debug, Serialize)]
pub struct StreamView {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub viewers: usize,
    pub whip_url: String,
    pub whep_url: String,
    pub studio_url: String,
    pub watch_url: String,
    pub created_at: i64,
    /// Only in the response that creates the stream: it is stored hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
}

/// What anyone may know about a stream (the watch page).
#[derive(Debug, Serialize)]
pub struct PublicStreamView {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub viewers: usize,
    pub whep_url: String,
}

impl AppState {
    fn view(&self, row: StreamRow, key: Option<&Secret>) -> StreamView {
        let base = self.public_url();
        let id = row.id;
        let studio_url = match key {
            Some(k) => format!("{base}/studio?stream={id}#key={}", k.expose()),
            None => format!("{base}/studio?stream={id}"),
        };
        StreamView {
            viewers: self.sfu.routers.viewers(&id),
            whip_url: format!("{base}/whip/{id}"),
            whep_url: format!("{base}/whep/{id}"),
            watch_url: format!("{base}/watch/{id}"),
            studio_url,
            title: row.title,
            state: row.state,
            created_at: row.created_at,
            stream_key: key.map(|k| k.expose().to_owned()),
            id,
        }
    }
}

fn parse_id(raw: &str) -> Result<StreamId, ApiError> {
    StreamId::parse(raw).map_err(|_| Problem::not_found("no such stream").into())
}

#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn create_stream(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
    body: Result<Json<CreateStream>, JsonRejection>,
) -> Result<(StatusCode, Json<StreamView>), ApiError> {
    let Json(body) = body.map_err(|e| Problem::bad_request("invalid-body", e.body_text()))?;
    let title = body.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(Problem::bad_request(
            "invalid-title",
            format!("title must be 1 to {MAX_TITLE_CHARS} characters"),
        )
        .into());
    }
    let (row, key) = state.store.create_stream(&seller.id, title).await?;
    tracing::info!(stream = %row.id, "stream created");
    Ok((StatusCode::CREATED, Json(state.view(row, Some(&key)))))
}

async fn list_streams(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.store.streams_of(&seller.id).await?;
    let streams: Vec<StreamView> = rows.into_iter().map(|r| state.view(r, None)).collect();
    Ok(Json(serde_json::json!({ "streams": streams })))
}

async fn get_stream(
    State(state): State<AppState>,
    AuthSeller(seller): AuthSeller,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .stream(&id)
        .await?
        .filter(|r| r.seller_id == seller.id)
        .ok_or_else(|| Problem::not_found("no such stream"))?;
    Ok(Json(state.view(row, None)))
}

async fn public_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PublicStreamView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .stream(&id)
        .await?
        .ok_or_else(|| Problem::not_found("no such stream"))?;
    let view = state.view(row, None);
    Ok(Json(PublicStreamView {
        id: view.id,
        title: view.title,
        state: view.state,
        viewers: view.viewers,
        whep_url: view.whep_url,
    }))
}
