//! Composition of the roles behind one HTTP listener, and the server's life: start on a
//! configured or ephemeral port, serve HTTP or HTTPS, drain on shutdown. Each role wires its
//! own parts in `crate::roles` (media, hls, api, commerce); this module puts them together.

use crate::api::metrics::ApiMetrics;
use crate::captions;
use crate::config::Config;
use crate::edge::Edge;
use crate::roles;
pub use crate::state::AppState;
use crate::state::MAX_BODY_BYTES;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::accept::NoDelayAcceptor;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use vitrine_platform::Platform;
use vitrine_subtitles::live::LiveCaptions;

/// How long in-flight requests may take to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when it has a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: CancellationToken,
    /// The commerce role's background jobs.
    jobs: roles::commerce::Jobs,
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
        // What the last purchases committed still reaches the rooms (their members on other
        // nodes) before the pump stops.
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.state.checkout.facts().flush()).await;
        self.background.cancel();
        self.jobs.join().await;
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

/// `/metrics` alone, for a listener of its own.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub fn router(state: AppState, edge: Arc<Edge>, admin: Router) -> Router {
    // WHIP and WHEP on every node: one without the media role sends clients to a media node.
    let media = roles::media::routes(&state.sfu, &state.ingest).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), crate::api::ip_limits::media_options),
    );
    let mut app = Router::new().route("/healthz", get(healthz));
    if state.edge.metrics.listen.is_none() {
        app = app.route("/metrics", get(metrics));
    }
    let mut app = app.with_state(state.clone()).merge(media).merge(admin);
    if state.roles.api {
        app = app.merge(roles::api::routes(&state));
    }
    // Players may ask any node serving the API or HLS: a stream produced on another node is
    // read from the shared store or asked of its producer.
    if (state.roles.hls || state.roles.api)
        && let Some(hls) = state.hls.clone()
    {
        app = app.merge(vitrine_transcode::routes::routes(hls));
    }
    app.layer(axum::middleware::from_fn_with_state(
        state.homes.clone(),
        crate::regions::route_home,
    ))
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(axum::middleware::from_fn_with_state(
        edge,
        crate::edge::edge,
    ))
    .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// A request's span: its method and path, never its query, where credentials may travel (a
/// WHIP redirect's placement token, an OAuth2 code).
fn request_span(request: &axum::extract::Request) -> tracing::Span {
    let mut path = request.uri().path();
    // A sandbox payment check's address is a capability: logged without it.
    if path.starts_with(vitrine_checkout::sandbox::ACTION_PATH) {
        path = vitrine_checkout::sandbox::ACTION_PATH;
    }
    tracing::debug_span!("request", method = %request.method(), path)
}

/// Opens the store, builds the roles and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let homes = config.regions.clone().map(crate::regions::Homes::new);
    let home = config.regions.as_ref().map(|r| r.here.clone());
    let store = Store::connect_with(&config.database_url, config.database_max_connections)
        .await
        .context("opening the database")?
        .with_home(home.clone());
    let mut registry = Registry::default();
    let media = roles::media::build(config, &store, &mut registry)?;
    let pool = captions::load_pool(config, &mut registry).await;
    let work = roles::ClusterWork::default();
    let hls = roles::hls::build(config, pool.as_ref(), &media.sfu, &work, &mut registry)?;
    let background = CancellationToken::new();
    let commerce = roles::commerce::start(config, &store, &mut registry, &background).await?;
    let buyers = crate::regions::Buyers::new(commerce.checkout.clone(), homes.clone());
    let limiter = roles::api::limiter(config).await?;
    let api_metrics = Arc::new(ApiMetrics::default());
    api_metrics.register(&mut registry);
    // One per-buyer bid limit for the chat's bids and the API's.
    let bids = crate::bids::BidLimit::new(
        limiter.clone(),
        config.edge.ip_limits.bids,
        api_metrics.limiter_errors.clone(),
    );
    let (chat, timeline) = roles::api::chat(
        config,
        &store,
        &commerce.checkout,
        &buyers,
        &bids,
        &mut registry,
    )
    .await?;
    // What this node's transactions commit reaches the rooms, in commit order. The pump holds
    // the chat, which holds checkout; checkout holds no way back.
    let facts_pump = commerce
        .checkout
        .spawn_fact_pump(Arc::new(chat.clone()), background.clone());
    let captions = captions::start(
        config,
        pool.as_ref(),
        &chat,
        hls.as_ref(),
        &media.sfu,
        &work,
    )?;
    if let Some(hls) = &hls {
        roles::hls::spawn_replay_subtitles(config, hls, pool.as_ref(), &background).await?;
        if roles::hls::places_remote_captions(config) {
            for packaged in [media.sfu.went_live.subscribe(), work.hls.subscribe()] {
                captions::follow_remote(&chat, hls, captions.clone(), packaged, background.clone());
            }
        }
    }
    let cluster_metrics = vitrine_cluster::ClusterMetrics::default();
    if config.cluster.is_some() {
        cluster_metrics.register(&mut registry);
    }
    let state = AppState {
        timeline,
        platform: Platform::new(store.pool().clone()).with_home(home),
        buyers,
        homes,
        store,
        checkout: commerce.checkout.clone(),
        sandbox: commerce.sandbox.clone(),
        bids,
        limiter,
        api_metrics,
        chat,
        sfu: media.sfu,
        ingest: media.ingest,
        hls,
        caption_languages: caption_languages(config, captions.as_deref()).into(),
        captions,
        edge: Arc::new(config.edge.clone()),
        roles: config.roles,
        registry: Arc::new(registry),
        public_url: Arc::new(OnceLock::new()),
    };
    let started = Started {
        jobs: commerce.jobs.with_fact_pump(facts_pump),
        cluster_metrics,
        work,
        background,
    };
    serve(config, state, started).await
}

/// The languages streams list as captioned: this node's captions', else in a cluster with
/// subtitles on, the configured ones (a subtitles node captions what no media node does).
fn caption_languages(config: &Config, captions: Option<&LiveCaptions>) -> Vec<String> {
    match captions {
        Some(live) => live.languages(),
        None if config.cluster.is_some() && config.subtitles.enabled => {
            captions::languages(&config.subtitles)
        }
        None => Vec::new(),
    }
}

/// What [`start`] hands to [`serve`] beside the state.
struct Started {
    jobs: roles::commerce::Jobs,
    cluster_metrics: vitrine_cluster::ClusterMetrics,
    work: roles::ClusterWork,
    background: CancellationToken,
}

/// Binds the listener, joins the cluster if configured, and serves HTTP or HTTPS.
async fn serve(config: &Config, state: AppState, started: Started) -> anyhow::Result<Running> {
    let Started {
        jobs,
        cluster_metrics,
        work,
        background,
    } = started;
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
    let cluster = match &config.cluster {
        Some(settings) => {
            let url = settings
                .advertise_url
                .clone()
                .unwrap_or_else(|| base.clone());
            Some(
                crate::cluster::join(config, settings, url, &base, &state, work, cluster_metrics)
                    .await?,
            )
        }
        None => None,
    };
    let edge = Arc::new(Edge {
        trusted: config.edge.trusted_proxies.clone(),
        https: config.tls.is_some() || base.to_ascii_lowercase().starts_with("https://"),
        cluster: cluster.clone(),
        regions: config.regions.clone(),
        cdn_origins: config
            .hls
            .pathways
            .iter()
            .filter_map(|p| crate::edge::origin_of(&p.base))
            .collect(),
    });
    let metrics_addr = match config.edge.metrics.listen {
        Some(at) => Some(serve_metrics(at, state.clone(), background.clone()).await?),
        None => None,
    };

    // The peer's address reaches the edge middleware, which decides the client's.
    let drain_requested = CancellationToken::new();
    // The operator's routes are limited per address like sign-in: a token can be guessed.
    let per_address =
        axum::middleware::from_fn_with_state(state.clone(), crate::api::ip_limits::per_address);
    let admin = cluster.clone().map_or_else(Router::new, |c| {
        crate::cluster::admin_routes(c, state.store.clone(), drain_requested.clone())
            .route_layer(per_address)
    });
    let app =
        router(state.clone(), edge, admin).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let task = spawn_server(config, listener, app, handle.clone()).await?;
    tracing::info!(%addr, url = state.public_url(), "listening");
    Ok(Running {
        addr,
        metrics_addr,
        state,
        handle,
        task,
        background,
        jobs,
        cluster,
        drain_requested,
    })
}

/// Serves `app` on `listener`, over TLS when configured, until `handle` shuts it down.
async fn spawn_server(
    config: &Config,
    listener: std::net::TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    handle: axum_server::Handle<SocketAddr>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    Ok(match &config.tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            // TCP_NODELAY: chat frames and API answers are small and latency-bound; Nagle's
            // algorithm would hold a second frame back until the peer's delayed ACK (40 ms).
            let server = axum_server::from_tcp_rustls(listener, tls)?
                .map(|tls| tls.acceptor(NoDelayAcceptor::new()))
                .handle(handle);
            tokio::spawn(async move { server.serve(app).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)?
                .acceptor(NoDelayAcceptor::new())
                .handle(handle);
            tokio::spawn(async move { server.serve(app).await })
        }
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
