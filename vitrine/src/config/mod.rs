//! Configuration: command-line flags, `VITRINE_*` environment variables and the TOML file, in
//! that order of precedence, over defaults that run on a laptop. `vitrine.toml` at the
//! repository root documents every key.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vitrine_chat::ChatConfig;
use vitrine_checkout::CheckoutConfig;
use vitrine_checkout::rates::RatesSource;
use vitrine_platform::ratelimit::{Tiers, TiersFile};
use vitrine_sfu::peer::IceConfig;
use vitrine_transcode::{EncoderChoice, HlsConfig, RenditionSpec};

mod ice;
#[cfg(test)]
use ice::parse_port_range;
use ice::{FileIce, FileTurn, FileWhep};

/// Flags of `vitrine serve`; each also reads its `VITRINE_*` variable.
/// The UDP port every WHIP and WHEP session of a node shares by default (LiveKit's choice
/// for its single-port mode: operators know to open it).
pub const DEFAULT_ICE_UDP_PORT: u16 = 7882;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for HTTP(S).
    #[arg(long, env = "VITRINE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database and media.
    #[arg(long, env = "VITRINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "VITRINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (sqlite://... or postgres://...); default: SQLite under the data dir.
    #[arg(long, env = "VITRINE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Most connections the node opens to its database (default 16 for PostgreSQL, 4 for
    /// SQLite). Fewer often serve more: about twice the database's cores.
    #[arg(long, env = "VITRINE_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// A deployment of several regions: the secret (at least 32 bytes) every region's nodes
    /// share, with which a node vouches for the callers whose calls it forwards.
    #[arg(long, env = "VITRINE_REGIONS_SECRET_FILE")]
    pub regions_secret_file: Option<PathBuf>,
    /// Base URL that links handed to users start with (default: derived from --listen).
    #[arg(long, env = "VITRINE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PEM certificate chain; with --tls-key, serves HTTPS.
    #[arg(long, env = "VITRINE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "VITRINE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Local IPs WebRTC binds, comma separated (0.0.0.0 = every non-loopback interface).
    #[arg(long, env = "VITRINE_ICE_BIND", value_delimiter = ',')]
    pub ice_bind: Option<Vec<IpAddr>>,
    /// UDP port range for WebRTC, e.g. 50000-50199.
    #[arg(long, env = "VITRINE_ICE_PORT_RANGE")]
    pub ice_port_range: Option<String>,
    /// One UDP port that every WHIP and WHEP session shares (per bind address); 0 takes any
    /// free one. Default 7882, unless --ice-port-range alone is given: then each session takes
    /// its own port from the range.
    #[arg(long, env = "VITRINE_ICE_UDP_PORT")]
    pub ice_udp_port: Option<u16>,
    /// One TCP port for ICE over TCP (passive candidates), for viewers whose network blocks
    /// UDP; every session on the shared UDP port shares it. Default: the shared UDP port's
    /// number (0: any free one).
    #[arg(long, env = "VITRINE_ICE_TCP_PORT")]
    pub ice_tcp_port: Option<u16>,
    /// No ICE over TCP: sessions answer on UDP only.
    #[arg(long, env = "VITRINE_NO_ICE_TCP", conflicts_with = "ice_tcp_port")]
    pub no_ice_tcp: bool,
    /// Public IPs announced in ICE candidates (behind 1:1 NAT), comma separated.
    #[arg(long, env = "VITRINE_ICE_ANNOUNCE", value_delimiter = ',')]
    pub ice_announce: Option<Vec<String>>,
    /// Ports at the top of --ice-port-range that only publishers use, so viewers can never take
    /// the last port a seller needs (default: a tenth of the range, at least 1).
    #[arg(long, env = "VITRINE_ICE_PUBLISHER_PORTS")]
    pub ice_publisher_ports: Option<u16>,
    /// The server faces the internet: ICE candidates into private, link-local and loopback
    /// networks are filtered (announcing a public IP implies it).
    #[arg(long, env = "VITRINE_ICE_PUBLIC")]
    pub ice_public: bool,
    /// A TURN server handed to WHIP/WHEP clients in `Link` headers (repeatable), e.g.
    /// turn:turn.example.com:3478?transport=udp; needs --turn-secret-file.
    #[arg(long = "turn-url", env = "VITRINE_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Option<Vec<String>>,
    /// File holding the TURN server's shared secret (coturn's static-auth-secret): clients get
    /// time-limited credentials made from it.
    #[arg(long, env = "VITRINE_TURN_SECRET_FILE")]
    pub turn_secret_file: Option<PathBuf>,
    /// A STUN server handed to WHIP/WHEP clients (repeatable), e.g. stun:stun.example.com:3478.
    #[arg(long = "stun-url", env = "VITRINE_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Option<Vec<String>>,
    /// Most WebRTC viewers of this server (default 10000); beyond it WHEP answers 503 and the
    /// watch page plays HLS.
    #[arg(long, env = "VITRINE_WHEP_MAX_VIEWERS")]
    pub whep_max_viewers: Option<usize>,
    /// Most WebRTC viewers of one stream (default 10000).
    #[arg(long, env = "VITRINE_WHEP_MAX_VIEWERS_PER_STREAM")]
    pub whep_max_viewers_per_stream: Option<usize>,
    /// Most not-yet-connected WebRTC viewers per client address (default 8); beyond it WHEP
    /// answers 429.
    #[arg(long, env = "VITRINE_WHEP_PENDING_PER_IP")]
    pub whep_pending_per_ip: Option<usize>,
    /// Redis URL (redis://host:port): chat rooms span every server sharing it. Without it, an
    /// in-process bus serves one server.
    #[arg(long = "redis", env = "VITRINE_REDIS")]
    pub redis_url: Option<String>,
    /// Seconds a stock reservation waits for its payment before it is released.
    #[arg(long, env = "VITRINE_RESERVATION_WINDOW")]
    pub reservation_window_secs: Option<u64>,
    /// Do not transcode live streams to HLS (WebRTC viewers only, no recordings).
    #[arg(long, env = "VITRINE_NO_HLS")]
    pub no_hls: bool,
    /// What this process does: `api` (API, pages, chat), `media` (WHIP, WHEP, SFU, live
    /// captions), `hls` (HLS packaging, recordings), `web` (all three) and `subtitles` (replay
    /// subtitle jobs; with --redis, taken from a queue every process shares; in a cluster,
    /// also live captions of streams whose media node does not caption them). Comma separated;
    /// default web and subtitles. `api` or `hls` without `media` needs a cluster.
    #[arg(long, env = "VITRINE_ROLES", value_delimiter = ',')]
    pub roles: Option<Vec<Role>>,
    /// Do not caption live streams or subtitle replays (no Whisper model loaded).
    #[arg(long, env = "VITRINE_NO_SUBTITLES")]
    pub no_subtitles: bool,
    /// Create a demo seller and stream and print the studio and watch URLs.
    #[arg(long, env = "VITRINE_DEMO")]
    pub demo: bool,
    /// Trusted proxies, per-address limits, /metrics.
    #[command(flatten)]
    pub edge: crate::edge::EdgeArgs,
    /// Membership of a media cluster.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    regions_secret_file: Option<PathBuf>,
    public_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    redis_url: Option<String>,
    #[serde(default)]
    ice: FileIce,
    #[serde(default)]
    whep: FileWhep,
    #[serde(default)]
    turn: FileTurn,
    #[serde(default)]
    checkout: FileCheckout,
    #[serde(default)]
    chat: FileChat,
    #[serde(default)]
    hls: FileHls,
    #[serde(default)]
    subtitles: FileSubtitles,
    #[serde(default)]
    rate_limits: TiersFile,
    #[serde(default)]
    webhooks: FileWebhooks,
    #[serde(default)]
    payouts: FilePayouts,
    #[serde(default)]
    currency: FileCurrency,
    roles: Option<Vec<Role>>,
    #[serde(default)]
    proxy: crate::edge::FileProxy,
    #[serde(default)]
    ip_limits: crate::edge::FileIpLimits,
    #[serde(default)]
    metrics: crate::edge::FileMetrics,
    #[serde(default)]
    cluster: crate::cluster::FileCluster,
    /// `[regions.<name>]`: a deployment of several regions, a database each.
    #[serde(default)]
    regions: std::collections::BTreeMap<String, crate::regions::FileRegion>,
}

pub use crate::roles::{Role, Roles};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCurrency {
    /// A JSON rates table on disk (`{"base", "source", "as_of", "rates": {"EUR": "0.92"}}`).
    rates_file: Option<PathBuf>,
    /// The same document from the operator's HTTP endpoint.
    rates_url: Option<String>,
    /// How often the source is read again (default an hour).
    refresh_secs: Option<u64>,
    /// Oldest table used, counted from when it was last loaded (default a day): past it,
    /// conversions and orders in another currency answer 503.
    max_age_secs: Option<u64>,
}

impl FileCurrency {
    fn source(&self) -> anyhow::Result<Option<(RatesSource, Duration)>> {
        let every = Duration::from_secs(self.refresh_secs.unwrap_or(3600).max(1));
        Ok(match (&self.rates_file, &self.rates_url) {
            (Some(_), Some(_)) => bail!("currency: give rates_file or rates_url, not both"),
            (Some(f), None) => Some((RatesSource::File(f.clone()), every)),
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                Some((RatesSource::Http(u.clone()), every))
            }
            (None, Some(u)) => bail!("currency.rates_url {u:?} is not an http(s) URL"),
            (None, None) => None,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePayouts {
    sale_fee_bps: Option<u32>,
    sale_fee_fixed: Option<i64>,
    instant_fee_bps: Option<u32>,
    instant_fee_min: Option<i64>,
    scheduled_every_secs: Option<u64>,
    minimum: Option<i64>,
}

/// Sellers' payouts: the scheduled run and the reconciliation with the payout rail (the fees
/// live in the checkout configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutsConfig {
    /// How often each seller's whole available balance is paid out; `None`: never.
    pub scheduled_every: Option<Duration>,
    /// Smallest balance (minor units) a scheduled run pays out.
    pub minimum: i64,
    /// How often payouts in transit are checked with the rail.
    pub reconcile_every: Duration,
}

impl Default for PayoutsConfig {
    fn default() -> Self {
        Self {
            scheduled_every: Some(Duration::from_secs(86_400)),
            minimum: 100,
            reconcile_every: Duration::from_secs(10),
        }
    }
}

impl PayoutsConfig {
    fn from_file(f: &FilePayouts) -> anyhow::Result<Self> {
        let d = Self::default();
        Ok(Self {
            scheduled_every: match f.scheduled_every_secs {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s.max(60))),
                None => d.scheduled_every,
            },
            minimum: match f.minimum {
                Some(m) if m < 1 => bail!("payouts.minimum: at least 1 minor unit"),
                Some(m) => m,
                None => d.minimum,
            },
            ..d
        })
    }

    fn fees_from_file(f: &FilePayouts) -> anyhow::Result<vitrine_checkout::fees::FeePolicy> {
        let d = vitrine_checkout::fees::FeePolicy::default();
        let fees = vitrine_checkout::fees::FeePolicy {
            sale_bps: f.sale_fee_bps.unwrap_or(d.sale_bps),
            sale_fixed: f.sale_fee_fixed.unwrap_or(d.sale_fixed),
            instant_bps: f.instant_fee_bps.unwrap_or(d.instant_bps),
            instant_min: f.instant_fee_min.unwrap_or(d.instant_min),
        };
        if fees.sale_bps > 10_000
            || fees.instant_bps > 10_000
            || fees.sale_fixed < 0
            || fees.instant_min < 0
        {
            bail!("payouts: fees are 0 to 10000 basis points and non-negative fixed amounts");
        }
        Ok(fees)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    allow_private_targets: Option<bool>,
    retry_schedule_secs: Option<Vec<f64>>,
    timeout_secs: Option<f64>,
    secrets_key_file: Option<PathBuf>,
    delivered_retention_secs: Option<u64>,
}

/// Webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhooksConfig {
    /// Allow `http://` and private or loopback endpoint hosts (development and tests only:
    /// otherwise a seller could make the server call into its own network).
    pub allow_private_targets: bool,
    /// Delays before the second, third, ... attempt; about three days in all by default.
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    /// The key sealing signing secrets; default `<data dir>/webhook-secrets.key`. Every node of
    /// a deployment needs the same file.
    pub secrets_key_file: Option<PathBuf>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            retry_schedule: vitrine_checkout::webhooks::schedule::DEFAULT_SCHEDULE_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            timeout: Duration::from_secs(15),
            secrets_key_file: None,
        }
    }
}

impl WebhooksConfig {
    fn from_file(f: FileWebhooks) -> anyhow::Result<Self> {
        let d = Self::default();
        let secs = |v: f64, what: &str| -> anyhow::Result<Duration> {
            if !(v.is_finite() && (0.0..=7.0 * 86_400.0).contains(&v)) {
                bail!("webhooks.{what}: seconds from 0 to a week");
            }
            Ok(Duration::from_secs_f64(v))
        };
        let retry_schedule = match f.retry_schedule_secs {
            Some(list) if list.len() > 30 => {
                bail!("webhooks.retry_schedule_secs: at most 30 retries")
            }
            Some(list) => list
                .into_iter()
                .map(|v| secs(v, "retry_schedule_secs"))
                .collect::<anyhow::Result<_>>()?,
            None => d.retry_schedule,
        };
        let timeout = match f.timeout_secs {
            Some(t) if t < 1.0 => bail!("webhooks.timeout_secs: at least 1"),
            Some(t) => secs(t, "timeout_secs")?,
            None => d.timeout,
        };
        Ok(Self {
            allow_private_targets: f.allow_private_targets.unwrap_or(false),
            retry_schedule,
            timeout,
            secrets_key_file: f.secrets_key_file,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSubtitles {
    enabled: Option<bool>,
    model: Option<PathBuf>,
    language: Option<String>,
    workers: Option<usize>,
    threads: Option<usize>,
    step_seconds: Option<f64>,
    translate: Option<Vec<String>>,
    libretranslate_url: Option<String>,
    libretranslate_api_key: Option<String>,
}

/// Live captions and their translations.
#[derive(Debug, Clone, PartialEq)]
pub struct SubtitlesConfig {
    pub enabled: bool,
    /// A ggml Whisper model; default: tiny.en under the data dir, converted on first use.
    pub model: Option<PathBuf>,
    /// What sellers speak (ISO 639-1).
    pub language: String,
    /// Decodes at once, and CPU threads each.
    pub workers: usize,
    pub threads: usize,
    /// Time between decodes of live speech.
    pub step: Duration,
    /// Languages finals are translated into.
    pub translate: Vec<String>,
    /// The LibreTranslate-compatible service that translates them.
    pub libretranslate_url: Option<String>,
    pub libretranslate_api_key: Option<String>,
}

impl Default for SubtitlesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model: None,
            language: "en".into(),
            workers: 1,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            step: Duration::from_secs(1),
            translate: Vec::new(),
            libretranslate_url: None,
            libretranslate_api_key: None,
        }
    }
}

/// An ISO 639-1 code: two lowercase letters.
fn language_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_lowercase())
}

impl FileSubtitles {
    fn resolve(self, disabled_by_flag: bool) -> anyhow::Result<SubtitlesConfig> {
        let d = SubtitlesConfig::default();
        let language = self.language.unwrap_or(d.language);
        let translate = self.translate.unwrap_or_default();
        if let Some(bad) = std::iter::once(&language)
            .chain(&translate)
            .find(|l| !language_code(l))
        {
            bail!("subtitles: {bad:?} is not a two-letter language code");
        }
        if translate.len() > 8 {
            bail!("subtitles: at most 8 translation languages");
        }
        if !translate.is_empty() && self.libretranslate_url.is_none() {
            bail!("subtitles: translate needs libretranslate_url (the service that translates)");
        }
        let step = match self.step_seconds {
            None => d.step,
            Some(s) if (0.3..=10.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => bail!("subtitles: step_seconds {s} is not 0.3 to 10"),
        };
        Ok(SubtitlesConfig {
            enabled: self.enabled.unwrap_or(true) && !disabled_by_flag,
            model: self.model,
            language,
            workers: self.workers.unwrap_or(d.workers).clamp(1, 64),
            threads: self.threads.unwrap_or(d.threads).clamp(1, 64),
            step,
            translate,
            libretranslate_url: self.libretranslate_url,
            libretranslate_api_key: self.libretranslate_api_key,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHls {
    enabled: Option<bool>,
    segment_seconds: Option<f64>,
    part_seconds: Option<f64>,
    window_segments: Option<usize>,
    encoder: Option<EncoderChoice>,
    x264_preset: Option<String>,
    audio_bitrate_kbps: Option<u32>,
    finalize_after_secs: Option<u64>,
    renditions: Option<Vec<RenditionSpec>>,
    storage: Option<String>,
    #[serde(default)]
    pathways: Vec<vitrine_transcode::steering::Pathway>,
}

impl FileHls {
    fn resolve(self, disabled_by_flag: bool) -> anyhow::Result<HlsConfig> {
        let d = HlsConfig::default();
        let seconds = |v: Option<f64>, default: Duration| -> anyhow::Result<Duration> {
            match v {
                None => Ok(default),
                Some(s) if s.is_finite() && s > 0.0 && s <= 60.0 => Ok(Duration::from_secs_f64(s)),
                Some(s) => bail!("hls: {s} is not a duration in seconds"),
            }
        };
        const PRESETS: [&str; 10] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
            "placebo",
        ];
        let preset = self.x264_preset.unwrap_or(d.x264_preset);
        if !PRESETS.contains(&preset.as_str()) {
            bail!("hls: x264_preset {preset:?} is not one of {PRESETS:?}");
        }
        let config = HlsConfig {
            enabled: self.enabled.unwrap_or(true) && !disabled_by_flag,
            renditions: self.renditions.unwrap_or(d.renditions),
            segment: seconds(self.segment_seconds, d.segment)?,
            part: seconds(self.part_seconds, d.part)?,
            window_segments: self.window_segments.unwrap_or(d.window_segments),
            encoder: self.encoder.unwrap_or(d.encoder),
            x264_preset: preset,
            audio_bitrate_kbps: self
                .audio_bitrate_kbps
                .unwrap_or(d.audio_bitrate_kbps)
                .clamp(32, 512),
            finalize_after: self
                .finalize_after_secs
                .map_or(d.finalize_after, Duration::from_secs),
            storage: self.storage,
            pathways: self.pathways,
            subtitle_languages: Vec::new(),
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChat {
    history: Option<usize>,
    member_queue: Option<usize>,
    chat_burst: Option<u32>,
    chat_per_second: Option<f64>,
    frame_burst: Option<u32>,
    frame_per_second: Option<f64>,
    max_connections_per_ip: Option<usize>,
    max_members_per_room: Option<usize>,
    write_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheckout {
    reservation_window_secs: Option<u64>,
    payment_timeout_secs: Option<u64>,
    payment_pending_window_secs: Option<u64>,
    sandbox_latency_ms: Option<u64>,
    sandbox_debit_latency_secs: Option<u64>,
    idempotency_ttl_secs: Option<u64>,
    card_key_file: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// The pool's size; `None`: the driver's default.
    pub database_max_connections: Option<u32>,
    /// `None`: derived from the bound address once listening.
    pub public_url: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub ice: IceConfig,
    pub redis_url: Option<String>,
    pub checkout: CheckoutConfig,
    pub chat: ChatConfig,
    pub hls: HlsConfig,
    pub subtitles: SubtitlesConfig,
    pub roles: Roles,
    /// Rate-limit tiers of the seller API (per app, and for sellers' own credentials).
    pub rate_limits: Tiers,
    pub webhooks: WebhooksConfig,
    pub payouts: PayoutsConfig,
    /// Where exchange rates come from and how often they are read again; none by default.
    pub rates: Option<(RatesSource, Duration)>,
    /// How long the sandbox card processor takes to confirm a payment.
    pub sandbox_latency: Duration,
    /// How long the sandbox processor takes to confirm a debit (its asynchronous method).
    pub sandbox_debit_latency: Duration,
    pub demo: bool,
    /// Trusted proxies, per-address limits of anonymous traffic, where /metrics is served.
    pub edge: crate::edge::EdgeConfig,
    /// Membership of a media cluster (needs Redis); `None` runs the node alone.
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// The deployment's regions when it has several; `None` for one.
    pub regions: Option<std::sync::Arc<crate::regions::Regions>>,
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let mut file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // The media plane's addresses, ports, servers and viewer limits.
        let ice = ice::resolve(
            &args,
            std::mem::take(&mut file.ice),
            std::mem::take(&mut file.whep),
            std::mem::take(&mut file.turn),
        )?;
        let mut checkout = checkout_config(args.reservation_window_secs, &file)?;
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let here = args.cluster.region.clone().or(file.cluster.region());
        let regions_secret = args.regions_secret_file.or(file.regions_secret_file);
        let regions = crate::regions::Regions::resolve(here, file.regions, regions_secret)?
            .map(std::sync::Arc::new);
        let database_url = match (&regions, args.database_url.or(file.database_url)) {
            (Some(_), Some(_)) => {
                bail!(
                    "with [regions], the database is the node's region's regions.<name>.database_url"
                )
            }
            (Some(regions), None) => regions.local().database_url.clone(),
            (None, Some(url)) => url,
            (None, None) => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("vitrine.db").display()
            ),
        };
        checkout.home = regions.as_ref().map(|r| r.here.clone());
        let database_max_connections = args
            .database_max_connections
            .or(file.database_max_connections);
        if database_max_connections.is_some_and(|n| !(1..=1000).contains(&n)) {
            bail!("database_max_connections must be 1 to 1000");
        }
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("HTTPS needs both a certificate and a key"),
        };
        let redis_url = args.redis_url.or(file.redis_url);
        let cluster = crate::cluster::ClusterSettings::resolve(args.cluster, file.cluster)?;
        if cluster.is_some() && redis_url.is_none() {
            bail!("a cluster member needs Redis (--redis): the cluster's directory is there");
        }
        let roles = match args.roles.or(file.roles) {
            Some(list) => Roles::of(&list)?,
            None => Roles::default(),
        };
        if roles.need_a_cluster() && cluster.is_none() {
            bail!(
                "api or hls without media works only in a cluster \
                 (--cluster-secret-file and --redis)"
            );
        }
        let sandbox_debit_latency =
            Duration::from_secs(file.checkout.sandbox_debit_latency_secs.unwrap_or(30));
        if sandbox_debit_latency >= checkout.payment_pending_window {
            bail!(
                "checkout.sandbox_debit_latency_secs must be shorter than \
                 checkout.payment_pending_window_secs: a debit confirmed after its hold has ended \
                 is always cancelled"
            );
        }
        Ok(Self {
            cluster,
            regions,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database_url,
            database_max_connections,
            public_url: args.public_url.or(file.public_url),
            tls,
            ice,
            redis_url,
            rate_limits: Tiers::from_file(file.rate_limits)?,
            checkout,
            webhooks: WebhooksConfig::from_file(file.webhooks)?,
            payouts: PayoutsConfig::from_file(&file.payouts)?,
            rates: file.currency.source()?,
            chat: {
                let d = ChatConfig::default();
                let f = file.chat;
                let rates = [f.chat_per_second, f.frame_per_second];
                if rates.iter().flatten().any(|r| !(r.is_finite() && *r > 0.0)) {
                    bail!("chat rates must be positive numbers");
                }
                ChatConfig {
                    history: f.history.unwrap_or(d.history).min(200),
                    member_queue: f.member_queue.unwrap_or(d.member_queue).clamp(16, 65536),
                    chat_burst: f.chat_burst.unwrap_or(d.chat_burst).max(1),
                    chat_per_second: f.chat_per_second.unwrap_or(d.chat_per_second),
                    frame_burst: f.frame_burst.unwrap_or(d.frame_burst).max(1),
                    frame_per_second: f.frame_per_second.unwrap_or(d.frame_per_second),
                    // `--no-ip-limits` (load tests from one machine) lifts this one too.
                    max_connections_per_ip: if args.edge.no_ip_limits {
                        0
                    } else {
                        f.max_connections_per_ip.unwrap_or(d.max_connections_per_ip)
                    },
                    max_members_per_room: f.max_members_per_room.unwrap_or(d.max_members_per_room),
                    write_timeout: match f.write_timeout_secs {
                        Some(0) => bail!("chat.write_timeout_secs: at least 1 second"),
                        Some(s) => Duration::from_secs(s),
                        None => d.write_timeout,
                    },
                    ..d
                }
            },
            hls: file.hls.resolve(args.no_hls)?,
            subtitles: file.subtitles.resolve(args.no_subtitles)?,
            roles,
            sandbox_latency: Duration::from_millis(file.checkout.sandbox_latency_ms.unwrap_or(150)),
            sandbox_debit_latency,
            demo: args.demo,
            edge: crate::edge::EdgeConfig::resolve(
                args.edge,
                file.proxy,
                file.ip_limits,
                file.metrics,
            )?,
        })
    }
}

/// The order path's settings: flags over the `[checkout]`, `[currency]`, `[payouts]` and
/// `[webhooks]` keys that shape it.
fn checkout_config(window_flag: Option<u64>, file: &FileConfig) -> anyhow::Result<CheckoutConfig> {
    let defaults = CheckoutConfig::default();
    let window = window_flag.or(file.checkout.reservation_window_secs);
    let timeout = file.checkout.payment_timeout_secs;
    if window == Some(0) || timeout == Some(0) {
        bail!("reservation window and payment timeout must be at least 1 second");
    }
    let secs = |v: Option<u64>, what: &str, default: Duration| match v {
        Some(0) => bail!("{what}: at least 1 second"),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    };
    Ok(CheckoutConfig {
        reservation_window: window.map_or(defaults.reservation_window, Duration::from_secs),
        payment_timeout: timeout.map_or(defaults.payment_timeout, Duration::from_secs),
        payment_pending_window: secs(
            file.checkout.payment_pending_window_secs,
            "checkout.payment_pending_window_secs",
            defaults.payment_pending_window,
        )?,
        idempotency_ttl: secs(
            file.checkout.idempotency_ttl_secs,
            "checkout.idempotency_ttl_secs",
            defaults.idempotency_ttl,
        )?,
        webhook_retention: secs(
            file.webhooks.delivered_retention_secs,
            "webhooks.delivered_retention_secs",
            defaults.webhook_retention,
        )?,
        rates_max_age: secs(
            file.currency.max_age_secs,
            "currency.max_age_secs",
            defaults.rates_max_age,
        )?,
        fees: PayoutsConfig::fees_from_file(&file.payouts)?,
        card_key_file: file.checkout.card_key_file.clone(),
        // Set once the regions are known (see `Config::resolve`).
        home: None,
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_node_opens_its_regions_database_and_tags_what_it_makes() {
        let dir = std::env::temp_dir().join(format!("vitrine-regions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.toml");
        let secret = dir.join("regions.secret");
        std::fs::write(&secret, [3u8; 32]).unwrap();
        let regions = format!("regions_secret_file = {secret:?}\n");
        let regions = regions
            + "[regions.eu]\ndatabase_url = \"sqlite:///eu.db\"\npublic_url = \"https://eu.example\"\n\
                       [regions.us]\ndatabase_url = \"sqlite:///us.db\"\npublic_url = \"https://us.example\"\n";
        std::fs::write(&path, format!("{regions}[cluster]\nregion = \"us\"\n")).unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.database_url, "sqlite:///us.db");
        assert_eq!(c.checkout.home.as_ref().map(|r| r.as_str()), Some("us"));
        // The flag names the region over the file.
        let mut args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        args.cluster.region = Some("eu".into());
        assert_eq!(
            Config::resolve(args).unwrap().database_url,
            "sqlite:///eu.db"
        );
        // A database beside the regions' would leave the node's data ambiguous.
        let both = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            database_url: Some("sqlite:///other.db".into()),
            ..Default::default()
        });
        assert!(format!("{:#}", both.unwrap_err()).contains("regions.<name>.database_url"));
        // A node outside every region named.
        std::fs::write(&path, format!("{regions}[cluster]\nregion = \"mars\"\n")).unwrap();
        let outside = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        });
        assert!(format!("{:#}", outside.unwrap_err()).contains("mars"));
    }

    #[test]
    fn the_shared_ice_port_comes_from_the_flag_over_the_file() {
        let dir = std::env::temp_dir().join(format!("vitrine-udp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.toml");
        std::fs::write(&path, "[ice]\nudp_port = 50000\n").unwrap();
        let file = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(file.ice.udp_port, Some(50000));
        let flag = Config::resolve(ServeArgs {
            config: Some(path),
            ice_udp_port: Some(40000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flag.ice.udp_port, Some(40000));
        let neither = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(
            neither.ice.udp_port,
            Some(DEFAULT_ICE_UDP_PORT),
            "one shared port unless asked otherwise"
        );
        assert_eq!(neither.ice.port_range, None);
        assert_eq!(
            (flag.ice.tcp_port, neither.ice.tcp_port),
            (Some(40000), Some(DEFAULT_ICE_UDP_PORT)),
            "ICE over TCP on the UDP port's number"
        );
        let tcp = Config::resolve(ServeArgs {
            ice_tcp_port: Some(443),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(tcp.ice.tcp_port, Some(443));
        let off = Config::resolve(ServeArgs {
            no_ice_tcp: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (off.ice.udp_port, off.ice.tcp_port),
            (Some(DEFAULT_ICE_UDP_PORT), None)
        );
        let range = Config::resolve(ServeArgs {
            ice_port_range: Some("50000-50010".into()),
            ice_tcp_port: Some(7881),
            ..Default::default()
        });
        assert!(
            format!("{:#}", range.unwrap_err()).contains("--ice-udp-port"),
            "TCP needs the shared UDP port"
        );
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("vitrine-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n[ice]\nport_range = \"50000-50010\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            data_dir: Some("/tmp/y".into()),
            ..Default::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.ice.port_range, Some((50000, 50010)));
        assert_eq!(c.ice.udp_port, None, "a range alone: a port per session");
        assert_eq!(c.ice.tcp_port, None, "and no ICE over TCP");
        assert!(c.database_url.starts_with("sqlite:///tmp/y/vitrine.db"));
        std::fs::write(&path, "lisen = 1\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        });
        assert!(format!("{:#}", err.unwrap_err()).contains("lisen"));
        assert!(parse_port_range("10-5").is_err());
        std::fs::write(
            &path,
            "[checkout]\npayment_pending_window_secs = 60\nsandbox_debit_latency_secs = 60\n",
        )
        .unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        });
        assert!(
            format!("{:#}", err.unwrap_err()).contains("sandbox_debit_latency_secs"),
            "a debit must be confirmed within its hold"
        );
    }

    #[test]
    fn the_sample_file_parses_and_sets_what_it_says() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vitrine.toml");
        let c = Config::resolve(ServeArgs {
            config: Some(sample),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.checkout.reservation_window, Duration::from_secs(900));
        assert_eq!(c.chat.member_queue, 512);
        assert_eq!(
            (
                c.chat.max_connections_per_ip,
                c.chat.max_members_per_room,
                c.chat.write_timeout
            ),
            (20, 10_000, Duration::from_secs(10))
        );
        assert_eq!(c.sandbox_latency, Duration::from_millis(150));
        let d = CheckoutConfig::default();
        assert_eq!(
            (
                c.checkout.idempotency_ttl,
                c.checkout.webhook_retention,
                c.checkout.rates_max_age
            ),
            (d.idempotency_ttl, d.webhook_retention, d.rates_max_age),
            "the sample documents the defaults"
        );
        assert!(c.redis_url.is_none());
        assert_eq!(
            c.hls,
            HlsConfig::default(),
            "the sample documents the defaults"
        );
        let ice = IceConfig::default();
        assert_eq!(
            c.ice.viewers, ice.viewers,
            "the sample documents the defaults"
        );
        assert_eq!(c.ice.connect_timeout, ice.connect_timeout);
        assert!(!c.ice.public && !c.ice.allow_private_candidates);
    }

    #[test]
    fn hls_settings_are_checked() {
        let dir = std::env::temp_dir().join(format!("vitrine-hls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let c = resolve(
            "[hls]\nsegment_seconds = 4\npart_seconds = 1\nencoder = \"x264\"\n\
             [[hls.renditions]]\nheight = 540\nbitrate_kbps = 1800\nfps = 25\n",
        )
        .unwrap();
        assert_eq!(c.hls.segment, Duration::from_secs(4));
        assert_eq!(
            c.hls.renditions,
            vec![RenditionSpec {
                height: 540,
                bitrate_kbps: 1800,
                fps: 25
            }]
        );
        assert_eq!(c.hls.encoder, EncoderChoice::X264);
        let c = resolve("[hls]\nstorage = \"s3://media/live\"\n").unwrap();
        assert_eq!(c.hls.storage.as_deref(), Some("s3://media/live"));
        let c = resolve(
            "[[hls.pathways]]\nid = \"cdn-a\"\nbase = \"https://a.example\"\n\
             [[hls.pathways]]\nid = \"cdn-b\"\nbase = \"https://b.example/\"\n",
        )
        .unwrap();
        let ids: Vec<_> = c.hls.pathways.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["cdn-a", "cdn-b"]);
        for bad in [
            "[[hls.pathways]]\nid = \"a b\"\nbase = \"https://a.example\"\n",
            "[[hls.pathways]]\nid = \"a\"\nbase = \"a.example\"\n",
            "[[hls.pathways]]\nid = \"a\"\n",
            "[hls]\nsegment_seconds = 2\npart_seconds = 0.3\n",
            "[hls]\nx264_preset = \"warp\"\n",
            "[hls]\nrenditions = []\n",
            "[hls]\nencoder = \"quantum\"\n",
            "[hls]\nstorage = \"ftp://media\"\n",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_admission_settings_are_checked() {
        let dir = std::env::temp_dir().join(format!("vitrine-ice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("i.toml");
        let resolve = |text: &str, args: ServeArgs| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(ServeArgs {
                config: Some(path.clone()),
                ..args
            })
        };
        let c = resolve(
            "[ice]\nport_range = \"50000-50199\"\npublisher_ports = 30\nconnect_timeout_secs = 5\n\
             [whep]\npending_per_ip = 3\nmax_viewers = 500\n",
            ServeArgs {
                whep_max_viewers: Some(400),
                ice_public: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.ice.publisher_ports, Some(30));
        assert_eq!(c.ice.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.ice.viewers.pending_per_ip, 3);
        assert_eq!(c.ice.viewers.max_per_node, 400, "the flag wins");
        assert!(c.ice.public);
        for bad in [
            "[ice]\nport_range = \"50000-50009\"\npublisher_ports = 10\n",
            "[ice]\nconnect_timeout_secs = 0\n",
            "[whep]\nmax_viewers_per_stream = 0\n",
            "[whep]\npending_per_ip = 0\n",
        ] {
            assert!(resolve(bad, ServeArgs::default()).is_err(), "{bad}");
        }
    }

    #[test]
    fn turn_servers_come_from_flags_over_the_file_with_a_secret_file() {
        let dir = std::env::temp_dir().join(format!("vitrine-turn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, secret) = (dir.join("t.toml"), dir.join("turn-secret"));
        std::fs::write(&secret, "north\n").unwrap();
        let resolve = |text: String, args: ServeArgs| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(ServeArgs {
                config: Some(path.clone()),
                ..args
            })
        };
        let file = format!(
            "[ice]\nstun_urls = [\"stun:stun.example.com\"]\n[turn]\n\
             urls = [\"turn:file.example.com\"]\nsecret_file = {:?}\nttl_secs = 600\n",
            secret.display().to_string()
        );
        let c = resolve(file.clone(), ServeArgs::default()).unwrap();
        let servers = &c.ice.ice_servers;
        assert_eq!(servers.stun_urls, ["stun:stun.example.com"]);
        assert_eq!(servers.turn_urls, ["turn:file.example.com"]);
        assert_eq!(servers.turn_ttl, Duration::from_secs(600));
        let flagged = ServeArgs {
            turn_urls: Some(vec!["turn:flag.example.com?transport=udp".into()]),
            ..Default::default()
        };
        let c = resolve(file, flagged).unwrap();
        assert_eq!(
            c.ice.ice_servers.turn_urls,
            ["turn:flag.example.com?transport=udp"]
        );
        assert!(
            resolve(String::new(), ServeArgs::default())
                .unwrap()
                .ice
                .ice_servers
                .is_empty()
        );
        // Each refused for its own reason: no secret, not a TURN URL, no secret file.
        for (bad, why) in [
            (
                "[turn]\nurls = [\"turn:a.example.com\"]\n".to_owned(),
                "secret",
            ),
            (
                format!(
                    "[turn]\nurls = [\"http://a.example.com\"]\nsecret_file = {:?}\n",
                    secret.display().to_string()
                ),
                "not a turn:",
            ),
            (
                format!(
                    "[turn]\nurls = [\"turn:a\"]\nsecret_file = \"{}/none\"\n",
                    dir.display()
                ),
                "reading the TURN secret",
            ),
        ] {
            let error = format!(
                "{:#}",
                resolve(bad.clone(), ServeArgs::default()).unwrap_err()
            );
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
