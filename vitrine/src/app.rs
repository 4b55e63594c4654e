//! Composition of the roles behind one HTTP listener, and the server's life: start on a
//! configured or ephemeral port, serve HTTP or HTTPS, drain on shutdown.

use crate::api;
use crate::config::Config;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::accept::NoDelayAcceptor;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;
use vitrine_chat::Chat;
use vitrine_chat::metrics::ChatMetrics;
use vitrine_chat::moderation::Moderation;
use vitrine_chat::redis_bus::RedisBus;
use vitrine_checkout::reaper::spawn_reaper;
use vitrine_checkout::{Checkout, SandboxProvider};
use vitrine_core::{Bus, CommerceError, EventRelay, Identities, Identity, MemoryBus, Secret};
use vitrine_ingest::Ingest;
use vitrine_sfu::Sfu;
use vitrine_sfu::metrics::SfuMetrics;
use vitrine_transcode::metrics::HlsMetrics;
use vitrine_transcode::object_media::ObjectMedia;
use vitrine_transcode::{Hls, LocalDisk, MediaStore};

/// Largest request body any route accepts (SDP offers are the largest legitimate bodies).
const MAX_BODY_BYTES: usize = 128 * 1024;
/// How often expired stock reservations are looked for.
const REAPER_INTERVAL: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub checkout: Checkout,
    pub chat: Chat,
    pub sfu: Arc<Sfu>,
    pub ingest: Arc<Ingest>,
    /// The HLS role; `None` when turned off.
    pub hls: Option<Arc<Hls>>,
    registry: Arc<Registry>,
    public_url: Arc<OnceLock<String>>,
}

impl AppState {
    /// Base of the URLs handed out (configured, or derived from the bound address).
    pub fn public_url(&self) -> &str {
        self.public_url.get().map_or("", String::as_str)
    }
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: CancellationToken,
    reaper: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, closes media sessions, waits for requests in flight.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.chat.shutdown();
        self.handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
        self.state.ingest.close_all().await;
        self.state.sfu.close_all().await;
        if let Some(hls) = &self.state.hls {
            hls.shutdown().await;
        }
        self.task.await.context("server task")??;
        self.state.chat.drain(DRAIN_TIMEOUT).await;
        self.background.cancel();
        let _ = self.reaper.await;
        self.state.store.close().await;
        Ok(())
    }
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &state.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// CORS for the media endpoints, so that a page on another origin can publish and play.
fn media_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::ETAG, header::LINK])
}

pub fn router(state: AppState) -> Router {
    let media = vitrine_ingest::whip::routes(Arc::clone(&state.ingest))
        .merge(vitrine_sfu::whep::routes(Arc::clone(&state.sfu)))
        .layer(media_cors());
    Router::new()
        .merge(api::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/api/openapi.json",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    include_str!("openapi.json"),
                )
            }),
        )
        .with_state(state.clone())
        .merge(media)
        .merge(vitrine_chat::routes::routes(state.chat.clone()))
        .merge(vitrine_web_demo::routes())
        .merge(
            state
                .hls
                .clone()
                .map(vitrine_transcode::routes::routes)
                .unwrap_or_default(),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
}

/// Opens the store, builds the roles and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let store = Store::connect(&config.database_url)
        .await
        .context("opening the database")?;
    let metrics = Arc::new(SfuMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let sfu = Sfu::new(Arc::new(store.clone()), config.ice.clone(), metrics);
    let ingest = Ingest::new(Arc::clone(&sfu));
    let hls = if config.hls.enabled {
        let hls_metrics = Arc::new(HlsMetrics::default());
        hls_metrics.register(&mut registry);
        let media: Arc<dyn MediaStore> = match &config.hls.storage {
            Some(url) => Arc::new(ObjectMedia::s3(url).context("opening the HLS bucket")?),
            None => Arc::new(LocalDisk::new(config.data_dir.join("hls"))),
        };
        let hls = Hls::new(config.hls.clone(), media, hls_metrics)
            .context("starting HLS (turn it off with --no-hls)")?;
        hls.spawn(sfu.went_live.subscribe());
        Some(hls)
    } else {
        None
    };
    let events = Arc::new(EventRelay::default());
    let payments = Arc::new(SandboxProvider::new(
        store.pool().clone(),
        config.sandbox_latency,
    ));
    let checkout = Checkout::new(
        store.pool().clone(),
        payments,
        events.clone(),
        config.checkout.clone(),
    );
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
    chat_metrics.register(&mut registry);
    let chat = Chat::new(
        bus,
        Arc::new(checkout.clone()),
        Arc::new(Tokens {
            store: store.clone(),
            checkout: checkout.clone(),
        }),
        Arc::new(store.clone()),
        Moderation::new(store.pool().clone()),
        config.chat.clone(),
        chat_metrics,
    );
    events.connect(Arc::new(chat.clone()));
    let background = CancellationToken::new();
    let reaper = spawn_reaper(checkout.clone(), REAPER_INTERVAL, background.clone());
    let state = AppState {
        store,
        checkout,
        chat,
        sfu,
        ingest,
        hls,
        registry: Arc::new(registry),
        public_url: Arc::new(OnceLock::new()),
    };

    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let _ = state.public_url.set(base.trim_end_matches('/').to_owned());

    let app = router(state.clone()).into_make_service();
    let handle = axum_server::Handle::new();
    let task = match &config.tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            // TCP_NODELAY: chat frames and API answers are small and latency-bound; Nagle's
            // algorithm would hold a second frame back until the peer's delayed ACK (40 ms).
            let server = axum_server::from_tcp_rustls(listener, tls)?
                .map(|tls| tls.acceptor(NoDelayAcceptor::new()))
                .handle(handle.clone());
            tokio::spawn(async move { server.serve(app).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)?
                .acceptor(NoDelayAcceptor::new())
                .handle(handle.clone());
            tokio::spawn(async move { server.serve(app).await })
        }
    };
    tracing::info!(%addr, url = state.public_url(), "listening");
    Ok(Running {
        addr,
        state,
        handle,
        task,
        background,
        reaper,
    })
}

/// Token resolution for the chat: seller API tokens from the store, buyer tokens from checkout.
struct Tokens {
    store: Store,
    checkout: Checkout,
}

#[async_trait::async_trait]
impl Identities for Tokens {
    async fn identify(&self, token: &str) -> Result<Option<Identity>, CommerceError> {
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
            .checkout
            .buyer_by_token(&secret)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map(|b| Identity::Buyer {
                id: b.id,
                display_name: b.display_name,
            }))
    }
}
