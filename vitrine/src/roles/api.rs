//! The `api` role: the seller and buyer API, OAuth2, sign-in and the portal, the pages and the
//! chat (with its bus, moderation and buyers' purchases), and the rate limiter in front of the
//! API.

use crate::api;
use crate::config::Config;
use crate::sale_shares::{ChatPurchases, SaleShares};
use crate::state::AppState;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use vitrine_chat::Chat;
use vitrine_chat::metrics::ChatMetrics;
use vitrine_chat::moderation::Moderation;
use vitrine_chat::redis_bus::RedisBus;
use vitrine_chat::timeline::{RecordingBus, Timeline};
use vitrine_checkout::Checkout;
use vitrine_core::{Bus, CommerceError, Identities, Identity, MemoryBus, Secret};
use vitrine_platform::ratelimit::{LimitStore, MemoryLimits, RateLimiter, RedisLimits};

/// What the `api` role serves: the API and its OpenAPI document, OAuth2, sign-in and the
/// portal, the chat, and the pages.
pub fn routes(state: &AppState) -> Router {
    let per_address =
        axum::middleware::from_fn_with_state(state.clone(), api::ip_limits::per_address);
    Router::new()
        .merge(api::routes(state))
        .merge(crate::oauth::routes().route_layer(per_address.clone()))
        .merge(crate::portal::routes().route_layer(per_address))
        .route(
            "/api/openapi.json",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    crate::openapi::document(),
                )
            }),
        )
        .with_state(state.clone())
        .merge(vitrine_chat::routes::routes(state.chat.clone()))
        .merge(vitrine_web_demo::routes())
}

/// The chat: rooms on Redis when configured (every node sees every room), else in memory;
/// buyers' purchases through checkout with the flash sale's per-address share.
pub async fn chat(
    config: &Config,
    store: &Store,
    checkout: &Checkout,
    buyers: &crate::regions::Buyers,
    bids: &crate::bids::BidLimit,
    registry: &mut Registry,
) -> anyhow::Result<(Chat, Timeline)> {
    let bus: Arc<dyn Bus> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisBus::connect(url)
                .await
                .context("connecting to Redis")?,
        ),
        None => Arc::new(MemoryBus::new()),
    };
    Moderation::migrate(store.pool(), config.database_url.starts_with("sqlite:"))
        .await
        .context("chat migrations")?;
    let chat_metrics = Arc::new(ChatMetrics::default());
    chat_metrics.register(registry);
    // Every public room event is also kept on the stream's timeline (replays show it again).
    let timeline = Timeline::start(store.pool().clone());
    registry.register(
        "vitrine_timeline_dropped",
        "Room events not kept on their stream's timeline (queue or timeline full)",
        timeline.dropped.clone(),
    );
    let bus: Arc<dyn Bus> = Arc::new(RecordingBus::new(bus, timeline.clone()));
    let chat = Chat::new(
        bus,
        Arc::new(ChatPurchases {
            shares: SaleShares::new(
                store.clone(),
                config.edge.ip_limits.flash_sale_buyers_per_address,
            ),
            bids: bids.clone(),
            checkout: checkout.clone(),
        }),
        Arc::new(Tokens {
            store: store.clone(),
            buyers: buyers.clone(),
        }),
        Arc::new(store.clone()),
        Moderation::new(store.pool().clone()),
        config.chat.clone(),
        chat_metrics,
    );
    Ok((chat, timeline))
}

/// The API's rate limiter: state in Redis when configured (shared by every node), else here.
pub async fn limiter(config: &Config) -> anyhow::Result<RateLimiter> {
    let limits: Arc<dyn LimitStore> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisLimits::connect(url, "vitrine:rl")
                .await
                .context("connecting the rate limiter to Redis")?,
        ),
        None => Arc::new(MemoryLimits::default()),
    };
    Ok(RateLimiter::new(config.rate_limits.clone(), limits))
}

/// Token resolution for the chat: seller API tokens from the store, buyer tokens from checkout.
struct Tokens {
    store: Store,
    /// This region's buyers, and other regions' asked of their home.
    buyers: crate::regions::Buyers,
}

#[async_trait::async_trait]
impl Identities for Tokens {
    async fn identify(
        &self,
        token: &str,
        caller: vitrine_core::ClientIp,
    ) -> Result<Option<Identity>, CommerceError> {
        let secret = Secret::from_presented(token);
        let unavailable = |e: String| CommerceError::Unavailable(e);
        if let Some(seller) = self
            .store
            .seller_by_token(&secret)
            .await
            .map_err(|e| unavailable(e.to_string()))?
        {
            return Ok(Some(Identity::Seller {
                id: seller.id,
                name: seller.name,
            }));
        }
        Ok(self
            .buyers
            .by_token(&secret, caller.0)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map(|b| Identity::Buyer {
                id: b.id,
                display_name: b.display_name,
            }))
    }
}
