//! The seller's side of chat moderation: making and removing moderators, and reading the log
//! of every moderation act in a stream's chat. Acts go through the chat's one moderation path
//! (the same as a `moderate` frame: the policy decides, the act is stored with its log entry
//! and announced to the room); this module never writes moderation state itself.

use super::auth::{StreamsRead, StreamsWrite};
use super::{ApiError, AuthSeller, body, owned_stream};
use crate::state::AppState;
use crate::store::StreamRow;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vitrine_chat::moderate::{Actor, ModerateError, Request};
use vitrine_chat::moderation::LoggedAct;
use vitrine_chat::protocol::{ModerationAction, Role};
use vitrine_core::{BuyerId, Problem, SellerId, Timestamp};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(add_moderator, remove_moderator, moderation_log))]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/streams/{id}/moderators", post(add_moderator))
        .route(
            "/api/v1/streams/{id}/moderators/{buyer}",
            delete(remove_moderator),
        )
        .route("/api/v1/streams/{id}/moderation-log", get(moderation_log))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModerator {
    pub buyer_id: BuyerId,
}

/// One moderation act, as the seller reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ModerationAct)]
pub struct ActView {
    /// The entry's id; `before` pages past it.
    pub id: i64,
    /// `delete`, `ban`, `unban`, `slow_mode`, `add_moderator` or `remove_moderator`.
    pub action: String,
    /// Who did it.
    pub actor: ActorView,
    /// The member acted on (ban, unban, moderators).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// The chat line deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Slow mode's interval (0: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    pub at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActorView {
    /// The seller's id, or the moderator's buyer id.
    pub member_id: String,
    /// `seller` or `moderator`.
    pub role: String,
}

/// A stream's moderation log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModerationLog {
    pub actions: Vec<ActView>,
}

impl From<LoggedAct> for ActView {
    fn from(a: LoggedAct) -> Self {
        Self {
            id: a.id,
            action: a.action.as_str().to_owned(),
            actor: ActorView {
                member_id: a.actor_id,
                role: a.actor_role.as_str().to_owned(),
            },
            member_id: a.member_id,
            message_id: a.message_id,
            seconds: a.seconds,
            at: Timestamp(a.created_at),
        }
    }
}

/// Acts on the stream's moderators as its seller, through the chat.
async fn as_seller(
    state: &AppState,
    seller: &SellerId,
    stream: &StreamRow,
    action: ModerationAction,
    buyer: &str,
) -> Result<(), ApiError> {
    let actor = Actor {
        id: seller.as_str(),
        role: Role::Seller,
    };
    let request = Request {
        action,
        message_id: None,
        member_id: Some(buyer.to_owned()),
        seconds: None,
    };
    match state
        .chat
        .moderate(&stream.id, seller, actor, request)
        .await
    {
        Ok(()) => Ok(()),
        Err(ModerateError::NotAModerator) => {
            Err(Problem::not_found("not a moderator of this stream").into())
        }
        Err(e @ (ModerateError::Denied(_) | ModerateError::Invalid(_))) => {
            Err(Problem::bad_request("invalid-request", e.to_string()).into())
        }
        Err(e) => {
            tracing::error!(error = %e, action = action.as_str(), "moderating");
            Err(Problem::internal().into())
        }
    }
}

/// Make a buyer a moderator of the stream's chat (delete lines, ban buyers, slow mode); a connection of theirs is closed (4010) to join again as one
#[utoipa::path(
    post,
    path = "/api/v1/streams/{id}/moderators",
    params(("id" = String, Path, description = "The stream's id")),
    request_body = NewModerator,
    responses((status = 204, description = "Added")),
    security(("oauth2" = ["streams:write"]))
)]
async fn add_moderator(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path(id): Path<String>,
    new: Result<Json<NewModerator>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let new = body(new)?;
    let buyer = new.buyer_id.as_str();
    as_seller(
        &state,
        &seller.id,
        &stream,
        ModerationAction::AddModerator,
        buyer,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a moderator of the stream's chat: their powers end at once, and a connection of theirs is closed (4010) to join again as a buyer
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{id}/moderators/{buyer}",
    params(
        ("id" = String, Path, description = "The stream's id"),
        ("buyer" = String, Path, description = "The moderator's buyer id")
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such stream, or the buyer is not one of its moderators", body = Problem)
    ),
    security(("oauth2" = ["streams:write"]))
)]
async fn remove_moderator(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path((id, buyer)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let buyer =
        BuyerId::parse(&buyer).map_err(|_| Problem::not_found("not a moderator of this stream"))?;
    let action = ModerationAction::RemoveModerator;
    as_seller(&state, &seller.id, &stream, action, buyer.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// How many acts, newest first
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<u32>,
    /// Only acts older than this entry id (the last `id` of the previous page)
    before: Option<i64>,
}

/// Every moderation act in the stream's chat, newest first: who did it (seller or moderator), what, to whom, when
#[utoipa::path(
    get,
    path = "/api/v1/streams/{id}/moderation-log",
    params(("id" = String, Path, description = "The stream's id"), LogQuery),
    responses((status = 200, description = "The log", body = ModerationLog)),
    security(("oauth2" = ["streams:read"]))
)]
async fn moderation_log(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsRead>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<ModerationLog>, ApiError> {
    let Query(q) = q.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    if q.limit.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(Problem::bad_request("invalid-query", "limit must be 1 to 100").into());
    }
    let stream = owned_stream(&state, &seller, &id).await?;
    let log = state
        .chat
        .moderation()
        .log(&stream.id, q.limit.unwrap_or(50), q.before)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the moderation log");
            Problem::internal()
        })?;
    Ok(Json(ModerationLog {
        actions: log.into_iter().map(ActView::from).collect(),
    }))
}
