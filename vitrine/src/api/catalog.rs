//! Products (`/api/v1/products`) and pins (`/api/v1/streams/{id}/pins`), seller-scoped.

use super::auth::{ProductsRead, ProductsWrite, StreamsRead, StreamsWrite};
use super::{ApiError, AuthSeller, body, owned_stream, path_id};
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use vitrine_checkout::{NewPin, NewProduct, Pin, Product, ProductPatch};
use vitrine_core::{PinId, Problem, ProductId};

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_products,
    create_product,
    get_product,
    update_product,
    archive_product,
    list_pins,
    create_pin,
    unpin
))]
pub struct Doc;

/// A seller's products.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProductList {
    pub products: Vec<Product>,
}

/// A stream's pins.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PinList {
    pub pins: Vec<Pin>,
}

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

/// Create a product
#[utoipa::path(
    post,
    path = "/api/v1/products",
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 409, description = "A product with this SKU exists", body = Problem)
    ),
    security(("oauth2" = ["products:write"]))
)]
#[tracing::instrument(skip_all, fields(seller = %seller.id))]
async fn create_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsWrite>,
    new: Result<Json<NewProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let product = state
        .checkout
        .catalog()
        .create_product(&seller.id, body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// The seller's products, newest first (up to 200)
#[utoipa::path(
    get,
    path = "/api/v1/products",
    responses((status = 200, description = "Products", body = ProductList)),
    security(("oauth2" = ["products:read"]))
)]
async fn list_products(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsRead>,
) -> Result<Json<ProductList>, ApiError> {
    let products = state.checkout.catalog().products_of(&seller.id).await?;
    Ok(Json(ProductList { products }))
}

/// One product
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    params(("id" = String, Path, description = "The product's id")),
    responses((status = 200, description = "The product", body = Product)),
    security(("oauth2" = ["products:read"]))
)]
async fn get_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsRead>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(
        state
            .checkout
            .catalog()
            .product(&seller.id, &product_id(&id)?)
            .await?,
    ))
}

/// Change a product: title, description, image, price, or stock (set, or moved atomically)
#[utoipa::path(
    patch,
    path = "/api/v1/products/{id}",
    params(("id" = String, Path, description = "The product's id")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The product as it is now", body = Product),
        (status = 409, description = "stock_delta would take the stock below zero", body = Problem)
    ),
    security(("oauth2" = ["products:write"]))
)]
async fn update_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsWrite>,
    Path(id): Path<String>,
    patch: Result<Json<ProductPatch>, JsonRejection>,
) -> Result<Json<Product>, ApiError> {
    let product = state
        .checkout
        .catalog()
        .update_product(&seller.id, &product_id(&id)?, body(patch)?)
        .await?;
    Ok(Json(product))
}

/// Archive a product: it leaves the catalog and can no longer be pinned or bought; its orders stay
#[utoipa::path(
    delete,
    path = "/api/v1/products/{id}",
    params(("id" = String, Path, description = "The product's id")),
    responses((status = 204, description = "Archived")),
    security(("oauth2" = ["products:write"]))
)]
async fn archive_product(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<ProductsWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .checkout
        .catalog()
        .archive_product(&seller.id, &product_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pin a product to the stream (optionally as a flash sale); the room sees it at once
#[utoipa::path(
    post,
    path = "/api/v1/streams/{id}/pins",
    params(("id" = String, Path, description = "The stream's id")),
    request_body = NewPin,
    responses((status = 201, description = "Pinned; it replaces the stream's previous pin", body = Pin)),
    security(("oauth2" = ["streams:write"]))
)]
async fn create_pin(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path(id): Path<String>,
    new: Result<Json<NewPin>, JsonRejection>,
) -> Result<(StatusCode, Json<Pin>), ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let pin = state
        .checkout
        .catalog()
        .pin(&seller.id, &stream.id, body(new)?)
        .await?;
    Ok((StatusCode::CREATED, Json(pin)))
}

/// The stream's pins, newest first
#[utoipa::path(
    get,
    path = "/api/v1/streams/{id}/pins",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 200, description = "Pins", body = PinList)),
    security(("oauth2" = ["streams:read"]))
)]
async fn list_pins(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsRead>,
    Path(id): Path<String>,
) -> Result<Json<PinList>, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let pins = state.checkout.catalog().pins_of(&stream.id).await?;
    Ok(Json(PinList { pins }))
}

/// Unpin: the sale ends and the room sees it
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{id}/pins/{pin}",
    params(
        ("id" = String, Path, description = "The stream's id"),
        ("pin" = String, Path, description = "The pin's id")
    ),
    responses((status = 204, description = "Unpinned")),
    security(("oauth2" = ["streams:write"]))
)]
async fn unpin(
    State(state): State<AppState>,
    AuthSeller(seller, _): AuthSeller<StreamsWrite>,
    Path((id, pin)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let stream = owned_stream(&state, &seller, &id).await?;
    let pin = path_id(&pin, PinId::parse, "no such pin")?;
    state.checkout.catalog().unpin(&stream.id, &pin).await?;
    Ok(StatusCode::NO_CONTENT)
}
