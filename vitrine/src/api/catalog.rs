//! Products (`/api/v1/products`) and pins (`/api/v1/streams/{id}/pins`), seller-scoped.

use super::auth::{ProductsRead, ProductsWrite, StreamsRead, StreamsWrite};
use super::{ApiError, AuthSeller, body, owned_stream, path_id};
use crate::app::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use vitrine_checkout::{NewPin, NewProduct, Pin, Product, ProductPatch};
use vitrine_core::{PinId, ProductId};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products", get(list_products).post(create_product))
        .route(
            "/api/v1/products/{id}",
            get(get_product)
                .patch(update_product)
                .delete(archive_product),
        )
        .route("/api/v1/streams/{id}/pins", get(list_pins).post(create_pin))
        .route("/api/v1/streams/{id}/pins/{pin}", delete(unpin))
}

fn product_id(raw: &str) -> Result<ProductId, ApiError> {
    path_id(raw, ProductId::parse, "no such product")
}

#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn create_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsWrite>,
    new: Result<Json<NewProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let product = state
        .checkout
        .create_product(&seller.id, body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

async fn list_products(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsRead>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let products = state.checkout.products_of(&seller.id).await?;
    Ok(Json(serde_json::json!({ "products": products })))
}

async fn get_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsRead>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(
        state
            .checkout
            .product(&seller.id, &product_id(&id)?)
            .await?,
    ))
}

async fn update_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsWrite>,
    Path(id): Path<String>,
    patch: Result<Json<ProductPatch>, JsonRejection>,
) -> Result<Json<Product>, ApiError> {
    let product = state
        .checkout
        .update_product(&seller.id, &product_id(&id)?, body(patch)?)
        .await?;
    Ok(Json(product))
}

async fn archive_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .checkout
        .archive_product(&seller.id, &product_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_pin(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path(id): Path<String>,
    new: Result<Json<NewPin>, JsonRejection>,
) -> Result<(StatusCode, Json<Pin>), ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let pin = state
        .checkout
        .pin(&seller.id, &stream.id, body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(pin)))
}

async fn list_pins(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsRead>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let pins = state.checkout.pins_of(&stream.id).await?;
    Ok(Json(serde_json::json!({ "pins": pins })))
}

async fn unpin(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path((id, pin)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let pin = path_id(&pin, PinId::parse, "no such pin")?;
    state.checkout.unpin(&stream.id, &pin).await?;
    Ok(StatusCode::NO_CONTENT)
}
