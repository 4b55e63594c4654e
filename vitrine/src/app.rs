//! Composition of the roles behind one HTTP listener, and the server's life: start on a
//! configured or ephemeral port, serve HTTP or HTTPS, drain on shutdown.

use crate::api;
use crate::api::metrics::ApiMetrics;
use crate::captions;
use crate::config::{Config, PayoutsConfig};
use crate::edge::{Edge, EdgeConfig};
use crate::sale_shares::{ChatPurchases, SaleShares};
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
use tower_http::trace::TraceLayer;
use vitrine_chat::Chat;
use vitrine_chat::metrics::ChatMetrics;
use vitrine_chat::moderation::Moderation;
use vitrine_chat::redis_bus::RedisBus;
use vitrine_checkout::reaper::spawn_reaper;
use vitrine_checkout::webhooks::TargetPolicy;
use vitrine_checkout::webhooks::dispatcher::{DispatchConfig, DispatchMetrics};
use vitrine_checkout::webhooks::schedule::RetrySchedule;
use vitrine_checkout::webhooks::sealing::SecretBox;
use vitrine_checkout::{Checkout, SandboxProvider};
use vitrine_core::{Bus, CommerceError, EventRelay, Identities, Identity, MemoryBus, Secret};
use vitrine_ingest::Ingest;
use vitrine_platform::Platform;
use vitrine_platform::ratelimit::{LimitStore, MemoryLimits, RateLimiter, RedisLimits};
use vitrine_sfu::Sfu;
use vitrine_sfu::metrics::SfuMetrics;
use vitrine_subtitles::live::LiveCaptions;
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
    /// Apps, API keys, OAuth2 grants and tokens, browser sessions.
    pub platform: Platform,
    /// Per-app rate limits of the seller API.
    pub limiter: RateLimiter,
    pub api_metrics: Arc<ApiMetrics>,
    pub chat: Chat,
    pub sfu: Arc<Sfu>,
    pub ingest: Arc<Ingest>,
    /// The HLS role; `None` when turned off.
    pub hls: Option<Arc<Hls>>,
    pub captions: Option<Arc<LiveCaptions>>,
    /// Trusted proxies, per-address limits, who may read `/metrics`.
    pub edge: Arc<EdgeConfig>,
    /// What this node serves.
    pub roles: crate::roles::Roles,
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
    /// Where `/metrics` is served when it has a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: CancellationToken,
    reaper: tokio::task::JoinHandle<()>,
    /// Delivers the webhook outbox.
    dispatcher: tokio::task::JoinHandle<()>,
    /// Reconciles payouts in transit and runs the scheduled payouts.
    payouts: tokio::task::JoinHandle<()>,
    /// This node's membership of a media cluster.
    pub cluster: Option<vitrine_cluster::Cluster>,
    /// Cancelled when an operator asks this node to drain (`vitrine drain`).
    pub drain_requested: CancellationToken,
}

impl Running {
    /// Stops accepting, closes media sessions, waits for requests in flight. A cluster member
    /// drains first: its clients are sent to other nodes.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(cluster) = &self.cluster {
            crate::cluster::hand_over(&self.state, cluster).await;
        }
        self.state.chat.shutdown();
        self.handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
        self.state.ingest.close_all().await;
        self.state.sfu.close_all().await;
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        if let Some(captions) = &self.state.captions {
            captions.shutdown().await;
        }
        if let Some(hls) = &self.state.hls {
            hls.shutdown().await;
        }
        self.task.await.context("server task")??;
        self.state.chat.drain(DRAIN_TIMEOUT).await;
        self.background.cancel();
        let _ = self.reaper.await;
        let _ = self.dispatcher.await;
        let _ = self.payouts.await;
        self.state.store.close().await;
        Ok(())
    }
}

/// Liveness (the database and the rate limiter's store answer)
#[utoipa::path(
    get,
    path = "/healthz",
    responses(
        (status = 200, description = "ok", body = String, content_type = "text/plain"),
        (status = 503, description = "database unavailable, or rate limiter unavailable (writes are refused meanwhile)", body = String, content_type = "text/plain")
    )
)]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.store.ping().await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    match state.limiter.ping().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "rate limiter unavailable: writes are refused, reads go through",
        ),
    }
}

/// Prometheus metrics (OpenMetrics text)
#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (
            status = 200,
            description = "Metrics",
            body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"
        ),
        (status = 401, description = "A metrics token is configured and the request does not carry it"),
        (status = 500, description = "The metrics could not be encoded")
    )
)]
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    if let Some(token) = &state.edge.metrics.token {
        let presented = vitrine_sfu::signaling::bearer(&headers).unwrap_or_default();
        if !vitrine_core::constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            let mut r = vitrine_core::Problem::unauthorized("/metrics needs its bearer token")
                .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
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

/// CORS for the media endpoints and session resources, so that a page on another origin (a
/// seller's own site embedding the player) can publish, play, trickle, restart ICE with
/// `If-Match` and end a session, and read `Location`, `ETag`, the ICE servers' `Link`s and a
/// 429's or 503's `Retry-After` (none is CORS-safelisted). Any origin: the endpoints take no
/// cookies, only a bearer stream key.
///
/// Written out rather than tower-http's `CorsLayer`, which answers every `OPTIONS` as a
/// preflight: RFC 9725 clients send a plain `OPTIONS` (no `Access-Control-Request-Method`) for
/// the ICE servers, and it must reach the endpoint.
async fn media_cors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let cross_origin = request.headers().contains_key(header::ORIGIN);
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    "POST, PATCH, DELETE, OPTIONS",
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "authorization, content-type, if-match",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if cross_origin {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("location, etag, link, retry-after, accept-post"),
        );
    }
    response
}

/// `/metrics` alone, for a listener of its own.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub fn router(state: AppState, edge: Arc<Edge>, admin: Router) -> Router {
    // WHIP and WHEP on every node: one without the media role sends clients to a media node.
    let media = vitrine_ingest::whip::routes(Arc::clone(&state.ingest))
        .merge(vitrine_sfu::whep::routes(Arc::clone(&state.sfu)))
        .layer(axum::middleware::from_fn(media_cors));
    let mut app = Router::new().route("/healthz", get(healthz));
    if state.edge.metrics.listen.is_none() {
        app = app.route("/metrics", get(metrics));
    }
    let mut app = app.with_state(state.clone()).merge(media).merge(admin);
    if state.roles.api {
        app = app.merge(api_role_routes(&state));
    }
    if state.roles.hls
        && let Some(hls) = state.hls.clone()
    {
        app = app.merge(vitrine_transcode::routes::routes(hls));
    }
    app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            edge,
            crate::edge::edge,
        ))
        .layer(TraceLayer::new_for_http())
}

/// What the `api` role serves: the API and its OpenAPI document, OAuth2, sign-in and the
/// portal, the chat, and the pages.
fn api_role_routes(state: &AppState) -> Router {
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

/// Payouts in the background: payouts in transit are checked with the rail, and on schedule
/// each seller's available balance is paid out.
async fn run_payouts(checkout: Checkout, config: PayoutsConfig, stop: CancellationToken) {
    let mut reconcile = tokio::time::interval(config.reconcile_every);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let schedule = config
        .scheduled_every
        .unwrap_or(Duration::from_secs(365 * 86_400));
    let mut scheduled = tokio::time::interval_at(tokio::time::Instant::now() + schedule, schedule);
    scheduled.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = reconcile.tick() => {
                if let Err(e) = checkout.reconcile_payouts().await {
                    tracing::warn!(error = %e, "payout reconciliation failed");
                }
            }
            _ = scheduled.tick(), if config.scheduled_every.is_some() => {
                match checkout.run_scheduled_payouts(config.minimum).await {
                    Ok(made) => tracing::info!(payouts = made.len(), "scheduled payouts"),
                    Err(e) => tracing::warn!(error = %e, "scheduled payouts failed"),
                }
            }
        }
    }
}

/// Replay subtitles: the web role queues every recording that becomes a replay; the
/// subtitles role works the queue. Without Redis both happen in this process (or not at all
/// when it has no model); with Redis any process may queue and any subtitles worker take.
async fn spawn_replay_subtitles(
    config: &Config,
    hls: &Arc<Hls>,
    pool: Option<&Arc<vitrine_subtitles::pool::Pool>>,
    background: &CancellationToken,
) -> anyhow::Result<()> {
    use vitrine_subtitles::jobs::{self, JobQueue, MemoryQueue, RedisQueue};
    let worker = pool.filter(|_| config.roles.subtitles);
    let queue: Arc<dyn JobQueue> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisQueue::connect(url)
                .await
                .context("connecting to the subtitle job queue")?,
        ),
        None if worker.is_some() => Arc::new(MemoryQueue::default()),
        None => return Ok(()),
    };
    if config.roles.hls {
        let mut replays = hls.replays.subscribe();
        let queue = Arc::clone(&queue);
        let stop = background.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = replays.recv() => match r {
                        Ok(s) => s,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "replays missed by the subtitle queue");
                            continue;
                        }
                        Err(_) => return,
                    },
                    _ = stop.cancelled() => return,
                };
                if let Err(e) = queue.push(&stream).await {
                    tracing::warn!(%stream, error = %e, "queueing replay subtitles");
                }
            }
        });
    }
    if let Some(pool) = worker {
        let replays = captions::replays(&config.subtitles, Arc::clone(pool), Arc::clone(hls))?;
        let consumer = format!("{}-{}", hostname(), std::process::id());
        tokio::spawn(jobs::work(
            queue,
            replays,
            consumer,
            background.clone(),
            Arc::clone(pool.metrics()),
        ));
    }
    Ok(())
}

/// This machine's name, for naming a queue consumer or a cluster node.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vitrine".into())
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
    // Captions and replay subtitles need the model; without it the server runs uncaptioned.
    let transcriber = if config.subtitles.enabled {
        match captions::load_model(&config.subtitles, &config.data_dir).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "subtitles are off (turn them off explicitly with --no-subtitles)");
                None
            }
        }
    } else {
        None
    };
    let pool = transcriber.map(|t| captions::pool(&config.subtitles, t, &mut registry));
    let hls = if config.hls.enabled {
        let hls_metrics = Arc::new(HlsMetrics::default());
        hls_metrics.register(&mut registry);
        let media: Arc<dyn MediaStore> = match &config.hls.storage {
            Some(url) => Arc::new(ObjectMedia::s3(url).context("opening the HLS bucket")?),
            None => Arc::new(LocalDisk::new(config.data_dir.join("hls"))),
        };
        let mut hls_config = config.hls.clone();
        if pool.is_some() && config.roles.media {
            hls_config.subtitle_languages = captions::languages(&config.subtitles);
        }
        let hls = Hls::new(hls_config, media, hls_metrics)
            .context("starting HLS (turn it off with --no-hls)")?;
        if config.roles.hls {
            hls.spawn(sfu.went_live.subscribe());
        }
        Some(hls)
    } else {
        None
    };
    let events = Arc::new(EventRelay::default());
    let payments = Arc::new(SandboxProvider::new(
        store.pool().clone(),
        config.sandbox_latency,
    ));
    let key_file = config
        .webhooks
        .secrets_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("webhook-secrets.key"));
    let sealing = SecretBox::load_or_create(&key_file)?;
    let card_key_file = config
        .checkout
        .card_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("card-fingerprint.key"));
    let card_key = vitrine_checkout::card::CardKey::load_or_create(&card_key_file)?;
    let checkout = Checkout::new(
        store.pool().clone(),
        payments,
        events.clone(),
        config.checkout.clone(),
    )
    .with_webhooks(
        sealing,
        TargetPolicy {
            allow_private: config.webhooks.allow_private_targets,
        },
    )
    .with_card_key(card_key);
    checkout.job_metrics().register(&mut registry);
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
        Arc::new(ChatPurchases {
            shares: SaleShares::new(
                store.clone(),
                config.edge.ip_limits.flash_sale_buyers_per_address,
            ),
            checkout: checkout.clone(),
        }),
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
    let captions = match (&pool, config.roles.media) {
        (Some(pool), true) => {
            let live = captions::live(&config.subtitles, Arc::clone(pool), &chat, hls.as_ref())?;
            live.spawn(sfu.went_live.subscribe());
            Some(live)
        }
        _ => None,
    };
    if let Some(hls) = &hls {
        spawn_replay_subtitles(config, hls, pool.as_ref(), &background).await?;
    }
    let reaper = spawn_reaper(checkout.clone(), REAPER_INTERVAL, background.clone());
    let dispatch_metrics = DispatchMetrics::default();
    dispatch_metrics.register(&mut registry);
    let dispatcher = checkout.webhook_dispatcher(
        DispatchConfig {
            schedule: RetrySchedule::new(config.webhooks.retry_schedule.clone()),
            timeout: config.webhooks.timeout,
            ..Default::default()
        },
        dispatch_metrics,
    )?;
    let dispatcher = tokio::spawn(dispatcher.run(background.clone()));
    if let Some((source, every)) = &config.rates {
        tokio::spawn(
            checkout
                .rates()
                .clone()
                .follow(source.clone(), *every, background.clone()),
        );
    }
    let payouts = tokio::spawn(run_payouts(
        checkout.clone(),
        config.payouts.clone(),
        background.clone(),
    ));
    let platform = Platform::new(store.pool().clone());
    let limits: Arc<dyn LimitStore> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisLimits::connect(url, "vitrine:rl")
                .await
                .context("connecting the rate limiter to Redis")?,
        ),
        None => Arc::new(MemoryLimits::default()),
    };
    let limiter = RateLimiter::new(config.rate_limits.clone(), limits);
    let api_metrics = Arc::new(ApiMetrics::default());
    api_metrics.register(&mut registry);
    let cluster_metrics = vitrine_cluster::ClusterMetrics::default();
    if config.cluster.is_some() {
        cluster_metrics.register(&mut registry);
    }
    let state = AppState {
        store,
        checkout,
        platform,
        limiter,
        api_metrics,
        chat,
        sfu,
        ingest,
        hls,
        captions,
        edge: Arc::new(config.edge.clone()),
        roles: config.roles,
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
    let edge = Arc::new(Edge {
        trusted: config.edge.trusted_proxies.clone(),
        https: config.tls.is_some() || base.to_ascii_lowercase().starts_with("https://"),
    });
    let cluster = match &config.cluster {
        Some(settings) => {
            let url = settings
                .advertise_url
                .clone()
                .unwrap_or_else(|| base.clone());
            Some(
                crate::cluster::join(config, settings, url, &base, &state.sfu, cluster_metrics)
                    .await?,
            )
        }
        None => None,
    };
    let metrics_addr = match config.edge.metrics.listen {
        Some(at) => Some(serve_metrics(at, state.clone(), background.clone()).await?),
        None => None,
    };

    // The peer's address reaches the edge middleware, which decides the client's.
    let drain_requested = CancellationToken::new();
    let admin = cluster.clone().map_or_else(Router::new, |c| {
        crate::cluster::admin_routes(c, state.store.clone(), drain_requested.clone())
    });
    let app =
        router(state.clone(), edge, admin).into_make_service_with_connect_info::<SocketAddr>();
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
        metrics_addr,
        state,
        handle,
        task,
        background,
        reaper,
        dispatcher,
        payouts,
        cluster,
        drain_requested,
    })
}

/// Serves `/metrics` alone on `at` (an address operators keep off the public network) until
/// `stop`; returns the bound address.
async fn serve_metrics(
    at: SocketAddr,
    state: AppState,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("binding the metrics listener {at}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, metrics_router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(%addr, "metrics listening");
    Ok(addr)
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
