//! What anyone may see of a product (`/api/v1/public/products/{id}`): a replay's card shows its
//! price and stock now, not the show's.

use super::{ApiError, path_id};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use vitrine_core::{Money, Problem, ProductId};

#[derive(utoipa::OpenApi)]
#[openapi(paths(public_product))]
pub struct Doc;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/public/products/{id}", get(public_product))
}

/// A product as buyers see it (no seller id, no SKU).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PublicProduct {
    pub id: ProductId,
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The catalog price now.
    pub price: Money,
    /// Units that can be bought now.
    #[schema(minimum = 0)]
    pub available: i64,
}

/// A product's price and stock now, for anyone (a replay's product card)
#[utoipa::path(
    get,
    path = "/api/v1/public/products/{id}",
    params(("id" = String, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = PublicProduct),
        (status = 404, description = "No such product (or archived)", body = Problem)
    )
)]
async fn public_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PublicProduct>, ApiError> {
    let id = path_id(&id, ProductId::parse, "no such product")?;
    let p = state
        .checkout
        .catalog()
        .public_product(&id)
        .await?
        .ok_or_else(|| Problem::not_found("no such product"))?;
    Ok(Json(PublicProduct {
        id: p.id,
        title: p.title,
        description: p.description,
        image_url: p.image_url,
        price: p.price,
        available: p.stock.max(0),
    }))
}
