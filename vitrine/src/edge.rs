//! The server's edge, where every request enters: who the client is (its address, through
//! trusted proxies only, and whether it came over HTTPS), the per-address limits anonymous
//! traffic is held to, where `/metrics` is served and who may read it, and the
//! Content-Security-Policy every HTML page carries.
//!
//! This module owns those settings and the outermost middleware; it never decides a limit
//! itself (that is `api::ip_limits`, through the shared limiter) and never trusts a forwarding
//! header from a peer the operator did not list.

use anyhow::Context;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use vitrine_core::client_ip::{client_ip, forwarded_https};
use vitrine_core::{ClientIp, TrustedProxies};
use vitrine_platform::ratelimit::Limit;

/// Defaults of the per-address limits, in the spelling of the flags and the TOML file.
pub const DEFAULT_SIGNUP: &str = "6/min burst 10";
pub const DEFAULT_AUTH: &str = "30/min burst 20";
pub const DEFAULT_SIGNIN_FAILURES: &str = "1/min burst 5";
pub const DEFAULT_SIGNIN_ACCOUNT: &str = "1/min burst 10";
pub const DEFAULT_ORDERS: &str = "60/min burst 30";
pub const DEFAULT_PUBLIC: &str = "30/s burst 150";
pub const DEFAULT_BIDS: &str = "5/s burst 10";
pub const DEFAULT_FLASH_SALE_BUYERS_PER_ADDRESS: u32 = 4;

/// The policy of every HTML page that does not set a stricter one of its own: scripts, styles
/// and frames from our origin only, media and hls.js's worker from blobs it makes, product
/// images from any HTTPS origin, no plugins, no `<base>` rewriting, never framed.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' https: data: blob:; media-src 'self' blob:; worker-src 'self' blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Flags of the edge (flattened into `vitrine serve`); each also reads its `VITRINE_*` variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EdgeArgs {
    /// Proxies whose Forwarded / X-Forwarded-For headers name the client (CIDR blocks, comma
    /// separated). Default: none; the TCP peer is the client.
    #[arg(long, env = "VITRINE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// The header those proxies write the client's address into: "x-forwarded-for" (default)
    /// or "forwarded". The other one is never read: a client could forge it.
    #[arg(long, env = "VITRINE_FORWARDED_HEADER")]
    pub forwarded_header: Option<String>,
    /// Per-address limit on creating guest buyers (default "6/min burst 10"; "off").
    #[arg(long, env = "VITRINE_LIMIT_SIGNUP")]
    pub limit_signup: Option<String>,
    /// Per-address limit on sign-in, sign-out and the OAuth2 token, revoke and consent posts
    /// (default "30/min burst 20").
    #[arg(long, env = "VITRINE_LIMIT_AUTH")]
    pub limit_auth: Option<String>,
    /// Failed sign-ins an address may make before every sign-in from it waits (default
    /// "1/min burst 5").
    #[arg(long, env = "VITRINE_LIMIT_SIGNIN_FAILURES")]
    pub limit_signin_failures: Option<String>,
    /// Sign-ins per account (default "1/min burst 10").
    #[arg(long, env = "VITRINE_LIMIT_SIGNIN_ACCOUNT")]
    pub limit_signin_account: Option<String>,
    /// Per-address limit on buyers' orders (default "60/min burst 30").
    #[arg(long, env = "VITRINE_LIMIT_ORDERS")]
    pub limit_orders: Option<String>,
    /// Per-buyer limit on auction bids, in the chat and through the API together (default
    /// "5/s burst 10").
    #[arg(long, env = "VITRINE_LIMIT_BIDS")]
    pub limit_bids: Option<String>,
    /// Per-address limit on every other request without a seller credential: public reads,
    /// buyers polling their orders (default "30/s burst 150").
    #[arg(long, env = "VITRINE_LIMIT_PUBLIC")]
    pub limit_public: Option<String>,
    /// A flash sale's per-buyer limit holds per client address too, times this (default 4;
    /// 0: off).
    #[arg(long, env = "VITRINE_FLASH_SALE_BUYERS_PER_ADDRESS")]
    pub flash_sale_buyers_per_address: Option<u32>,
    /// Turn every per-address limit off (load tests from one machine).
    #[arg(long, env = "VITRINE_NO_IP_LIMITS")]
    pub no_ip_limits: bool,
    /// Serve /metrics on this address only, not on --listen.
    #[arg(long, env = "VITRINE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` to read /metrics.
    #[arg(long, env = "VITRINE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// `[proxy]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProxy {
    trusted: Option<Vec<String>>,
    header: Option<String>,
}

/// `[ip_limits]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIpLimits {
    enabled: Option<bool>,
    signup: Option<String>,
    auth: Option<String>,
    signin_failures: Option<String>,
    signin_account: Option<String>,
    orders: Option<String>,
    public: Option<String>,
    bids: Option<String>,
    flash_sale_buyers_per_address: Option<u32>,
}

/// `[metrics]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetrics {
    listen: Option<SocketAddr>,
    token: Option<String>,
}

/// Limits per client address; `None` is off.
#[derive(Debug, Clone, PartialEq)]
pub struct IpLimits {
    pub signup: Option<Limit>,
    pub auth: Option<Limit>,
    pub signin_failures: Option<Limit>,
    pub signin_account: Option<Limit>,
    pub orders: Option<Limit>,
    pub public: Option<Limit>,
    /// Per buyer (not per address): a buyer's auction bids.
    pub bids: Option<Limit>,
    /// A flash sale's per-buyer limit times this is what one address may buy in it; 0: off.
    pub flash_sale_buyers_per_address: u32,
}

fn spec(raw: &str) -> Option<Limit> {
    Limit::parse(raw).expect("the default limits parse")
}

impl Default for IpLimits {
    fn default() -> Self {
        Self {
            signup: spec(DEFAULT_SIGNUP),
            auth: spec(DEFAULT_AUTH),
            signin_failures: spec(DEFAULT_SIGNIN_FAILURES),
            signin_account: spec(DEFAULT_SIGNIN_ACCOUNT),
            orders: spec(DEFAULT_ORDERS),
            public: spec(DEFAULT_PUBLIC),
            bids: spec(DEFAULT_BIDS),
            flash_sale_buyers_per_address: DEFAULT_FLASH_SALE_BUYERS_PER_ADDRESS,
        }
    }
}

impl IpLimits {
    /// Every per-address limit off.
    pub fn off() -> Self {
        Self {
            signup: None,
            auth: None,
            signin_failures: None,
            signin_account: None,
            orders: None,
            public: None,
            bids: None,
            flash_sale_buyers_per_address: 0,
        }
    }
}

/// `/metrics`: where it is served and whether it needs a token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsConfig {
    /// A listener of its own; `None`: the main listener.
    pub listen: Option<SocketAddr>,
    /// The bearer token readers must present; `None`: open.
    pub token: Option<String>,
}

/// The edge's resolved settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeConfig {
    pub trusted_proxies: TrustedProxies,
    pub ip_limits: IpLimits,
    pub metrics: MetricsConfig,
}

impl EdgeConfig {
    /// Flags over the file over the defaults.
    pub fn resolve(
        args: EdgeArgs,
        proxy: FileProxy,
        limits: FileIpLimits,
        metrics: FileMetrics,
    ) -> anyhow::Result<Self> {
        let trusted = args.trusted_proxies.or(proxy.trusted).unwrap_or_default();
        let header = match args.forwarded_header.or(proxy.header) {
            Some(raw) => raw
                .parse()
                .map_err(anyhow::Error::msg)
                .context("proxy.header")?,
            None => Default::default(),
        };
        let trusted_proxies = TrustedProxies::parse(&trusted)
            .context("trusted proxies")?
            .with_header(header);
        let one = |flag: Option<String>, file: Option<String>, default: &str, key: &str| {
            let raw = flag.or(file).unwrap_or_else(|| default.to_owned());
            Limit::parse(&raw).with_context(|| format!("ip_limits.{key}"))
        };
        let ip_limits = if args.no_ip_limits || limits.enabled == Some(false) {
            IpLimits::off()
        } else {
            IpLimits {
                signup: one(args.limit_signup, limits.signup, DEFAULT_SIGNUP, "signup")?,
                auth: one(args.limit_auth, limits.auth, DEFAULT_AUTH, "auth")?,
                signin_failures: one(
                    args.limit_signin_failures,
                    limits.signin_failures,
                    DEFAULT_SIGNIN_FAILURES,
                    "signin_failures",
                )?,
                signin_account: one(
                    args.limit_signin_account,
                    limits.signin_account,
                    DEFAULT_SIGNIN_ACCOUNT,
                    "signin_account",
                )?,
                orders: one(args.limit_orders, limits.orders, DEFAULT_ORDERS, "orders")?,
                public: one(args.limit_public, limits.public, DEFAULT_PUBLIC, "public")?,
                bids: one(args.limit_bids, limits.bids, DEFAULT_BIDS, "bids")?,
                flash_sale_buyers_per_address: args
                    .flash_sale_buyers_per_address
                    .or(limits.flash_sale_buyers_per_address)
                    .unwrap_or(DEFAULT_FLASH_SALE_BUYERS_PER_ADDRESS),
            }
        };
        let token = args.metrics_token.or(metrics.token);
        if token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            anyhow::bail!("metrics.token: at least 16 characters");
        }
        Ok(Self {
            trusted_proxies,
            ip_limits,
            metrics: MetricsConfig {
                listen: args.metrics_listen.or(metrics.listen),
                token,
            },
        })
    }
}

/// What the outermost middleware knows of every request.
#[derive(Clone)]
pub struct Edge {
    pub trusted: TrustedProxies,
    /// The server itself speaks HTTPS, or its public URL is `https://`.
    pub https: bool,
    /// The media cluster this node is a member of: its media nodes join the pages' policy.
    pub cluster: Option<vitrine_cluster::Cluster>,
    /// The deployment's regions: a call another region's node forwards names its caller.
    pub regions: Option<Arc<crate::regions::Regions>>,
    /// Origins of the CDNs players reach HLS through (`[[hls.pathways]]`): a steered master
    /// playlist sends the page's player to them.
    pub cdn_origins: Vec<String>,
}

/// The origin (`scheme://host[:port]`) of an http(s) URL; `None` for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

/// [`PAGE_CSP`] whose `connect-src` also names `origins` (a cluster's media nodes, where a
/// WHIP or WHEP request may be redirected). Origins that are not plain `scheme://host[:port]`
/// serialisations are left out.
pub fn page_csp(origins: &[String]) -> HeaderValue {
    let plain = |o: &&String| {
        (o.starts_with("http://") || o.starts_with("https://"))
            && o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/.-[]".contains(&b))
    };
    let sources: Vec<&str> = origins.iter().filter(plain).map(String::as_str).collect();
    if sources.is_empty() {
        return HeaderValue::from_static(PAGE_CSP);
    }
    let policy = PAGE_CSP.replacen(
        "connect-src 'self'",
        &format!("connect-src 'self' {}", sources.join(" ")),
        1,
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(PAGE_CSP))
}

/// Whether the request came over HTTPS (our TLS, an `https://` public URL, or a trusted
/// proxy's say-so): what decides the session cookie's `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Https(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Https {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts.extensions.get::<Https>().copied().unwrap_or_default())
    }
}

/// The outermost middleware: puts the client's address and the request's HTTPS-ness into
/// the request, and the pages' Content-Security-Policy on every HTML answer without one.
pub async fn edge(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let mut ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| {
        client_ip(p, req.headers(), &edge.trusted)
    });
    // Forwarded by another region's node, which vouches for its caller's address.
    let forwarded = crate::regions::proxy::FORWARDED;
    if let Some(regions) = &edge.regions
        && req.headers().contains_key(forwarded)
    {
        let now = crate::regions::vouch::now_secs();
        let (method, path) = (req.method(), req.uri().path());
        if let Some(vouched) = regions
            .key
            .vouched(req.headers(), forwarded, method, path, now)
        {
            ip = vouched.ip;
            req.extensions_mut().insert(vouched);
        }
    }
    let https =
        edge.https || peer.is_some_and(|p| forwarded_https(p, req.headers(), &edge.trusted));
    req.extensions_mut().insert(ClientIp(ip));
    req.extensions_mut().insert(Https(https));
    let mut response = next.run(req).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if html
        && !response
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY)
    {
        let h = response.headers_mut();
        let mut origins = edge
            .cluster
            .as_ref()
            .map(vitrine_cluster::Cluster::media_origins)
            .unwrap_or_default();
        origins.extend(edge.cdn_origins.iter().cloned());
        h.insert(header::CONTENT_SECURITY_POLICY, page_csp(&origins));
        h.entry(header::X_CONTENT_TYPE_OPTIONS)
            .or_insert(HeaderValue::from_static("nosniff"));
        h.entry(header::REFERRER_POLICY)
            .or_insert(HeaderValue::from_static("same-origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_may_connect_to_the_clusters_media_nodes_and_nothing_else() {
        assert_eq!(page_csp(&[]), PAGE_CSP);
        assert_eq!(
            origin_of("https://cdn-a.example.com/live/").as_deref(),
            Some("https://cdn-a.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8081").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(origin_of("ftp://cdn.example.com"), None);
        let csp = page_csp(&[
            "https://media-1.live.example".into(),
            "http://10.0.0.5:8080".into(),
            "http://[2001:db8::7]:8080".into(),
            // Never in a serialised origin: a second directive, a wildcard, another scheme.
            "https://x.example; script-src *".into(),
            "https://*".into(),
            "javascript:alert(1)".into(),
        ]);
        let csp = csp.to_str().unwrap();
        assert!(csp.contains(
            "connect-src 'self' https://media-1.live.example http://10.0.0.5:8080 \
             http://[2001:db8::7]:8080; object-src"
        ));
        assert!(!csp.contains('*') && !csp.contains("javascript"), "{csp}");
        assert_eq!(csp.matches("script-src").count(), 1, "{csp}");
    }

    /// The configuration from `args` alone, the file saying nothing.
    fn resolve_args(args: EdgeArgs) -> anyhow::Result<EdgeConfig> {
        EdgeConfig::resolve(
            args,
            FileProxy::default(),
            FileIpLimits::default(),
            FileMetrics::default(),
        )
    }

    #[test]
    fn flags_override_the_file_and_off_turns_all_off() {
        let file = FileIpLimits {
            signup: Some("1/min burst 2".into()),
            public: Some("off".into()),
            ..Default::default()
        };
        let args = EdgeArgs {
            limit_signup: Some("3/min burst 3".into()),
            trusted_proxies: Some(vec!["10.0.0.0/8".into()]),
            forwarded_header: Some("Forwarded".into()),
            ..Default::default()
        };
        let c =
            EdgeConfig::resolve(args, FileProxy::default(), file, FileMetrics::default()).unwrap();
        assert_eq!(c.ip_limits.signup.unwrap().to_string(), "3/min burst 3");
        assert_eq!(c.ip_limits.public, None);
        assert_eq!(c.ip_limits.auth, IpLimits::default().auth);
        assert!(c.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert_eq!(
            c.trusted_proxies.header,
            vitrine_core::client_ip::ForwardedHeader::Forwarded
        );
        let off = EdgeArgs {
            no_ip_limits: true,
            ..Default::default()
        };
        let c = resolve_args(off).unwrap();
        assert_eq!(c.ip_limits, IpLimits::off());
        let bad = EdgeArgs {
            limit_orders: Some("lots".into()),
            ..Default::default()
        };
        let e = resolve_args(bad).unwrap_err();
        assert!(format!("{e:#}").contains("ip_limits.orders"), "{e:#}");
        let bad = EdgeArgs {
            forwarded_header: Some("x-real-ip".into()),
            ..Default::default()
        };
        let e = resolve_args(bad).unwrap_err();
        assert!(format!("{e:#}").contains("proxy.header"), "{e:#}");
    }
}
