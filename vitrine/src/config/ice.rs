//! The media plane's settings: the `[ice]`, `[whep]` and `[turn]` tables and their flags
//! (addresses, the shared UDP and TCP ports or a port range, STUN and TURN servers handed to
//! clients, the viewers' admission limits).

use super::{DEFAULT_ICE_UDP_PORT, ServeArgs};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use vitrine_sfu::peer::IceConfig;

/// The ICE settings from the flags over the file's tables.
pub(super) fn resolve(
    args: &ServeArgs,
    ice: FileIce,
    whep: FileWhep,
    turn: FileTurn,
) -> anyhow::Result<IceConfig> {
    let port_range = args
        .ice_port_range
        .clone()
        .or(ice.port_range)
        .map(|r| parse_port_range(&r))
        .transpose()?;
    let admission = ice_admission(
        port_range,
        args.ice_publisher_ports.or(ice.publisher_ports),
        ice.connect_timeout_secs,
        args.ice_public || ice.public.unwrap_or(false),
        ice.allow_private_candidates.unwrap_or(false),
        FileWhep {
            pending_per_ip: args.whep_pending_per_ip.or(whep.pending_per_ip),
            max_viewers: args.whep_max_viewers.or(whep.max_viewers),
            max_viewers_per_stream: args
                .whep_max_viewers_per_stream
                .or(whep.max_viewers_per_stream),
            ..whep
        },
    )?;
    let ice_servers = ice_servers(
        args.stun_urls.clone().or(ice.stun_urls),
        FileTurn {
            urls: args.turn_urls.clone().or(turn.urls),
            secret_file: args.turn_secret_file.clone().or(turn.secret_file),
            ttl_secs: turn.ttl_secs,
        },
    )?;
    let udp_port = args
        .ice_udp_port
        .or(ice.udp_port)
        .or(port_range.is_none().then_some(DEFAULT_ICE_UDP_PORT));
    let tcp_on = !args.no_ice_tcp && ice.tcp != Some(false);
    let tcp_port = args.ice_tcp_port.or(ice.tcp_port);
    if tcp_port.is_some() && udp_port.is_none() {
        bail!("--ice-tcp-port serves the sessions of the shared UDP port: give --ice-udp-port");
    }
    Ok(IceConfig {
        bind_ips: args
            .ice_bind
            .clone()
            .or(ice.bind)
            .unwrap_or_else(|| vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([0, 0, 0, 0])]),
        udp_port,
        tcp_port: udp_port.and_then(|udp| tcp_on.then_some(tcp_port.unwrap_or(udp))),
        port_range,
        announced_ips: args
            .ice_announce
            .clone()
            .or(ice.announce)
            .unwrap_or_default(),
        ice_servers,
        ..admission
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIce {
    bind: Option<Vec<IpAddr>>,
    port_range: Option<String>,
    udp_port: Option<u16>,
    tcp_port: Option<u16>,
    /// `false`: no ICE over TCP.
    tcp: Option<bool>,
    announce: Option<Vec<String>>,
    publisher_ports: Option<u16>,
    connect_timeout_secs: Option<f64>,
    public: Option<bool>,
    allow_private_candidates: Option<bool>,
    stun_urls: Option<Vec<String>>,
}

/// The TURN server clients are handed (coturn with `use-auth-secret`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTurn {
    urls: Option<Vec<String>>,
    secret_file: Option<PathBuf>,
    ttl_secs: Option<u64>,
}

/// The STUN and TURN servers handed to clients (flags already over the file); the secret is
/// read from its file now, so a missing file stops the start rather than the first viewer.
fn ice_servers(
    stun_urls: Option<Vec<String>>,
    turn: FileTurn,
) -> anyhow::Result<vitrine_sfu::ice_servers::IceServers> {
    let secret = match &turn.secret_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the TURN secret {}", path.display()))?,
        ),
        None => None,
    };
    vitrine_sfu::ice_servers::IceServers::new(
        stun_urls.unwrap_or_default(),
        turn.urls.unwrap_or_default(),
        secret.as_deref(),
        turn.ttl_secs,
    )
    .context("turn")
}

/// What anonymous WebRTC viewers may hold (see `vitrine_sfu::admission`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWhep {
    pending_per_ip: Option<usize>,
    pending_per_stream: Option<usize>,
    max_viewers_per_stream: Option<usize>,
    max_viewers: Option<usize>,
}

/// The admission half of the ICE settings: the publishers' share of the port range, the
/// connect timeout, candidate filtering and the viewer limits (the other fields default).
fn ice_admission(
    port_range: Option<(u16, u16)>,
    publisher_ports: Option<u16>,
    connect_timeout_secs: Option<f64>,
    public: bool,
    allow_private_candidates: bool,
    whep: FileWhep,
) -> anyhow::Result<IceConfig> {
    let d = IceConfig::default();
    if let (Some((lo, hi)), Some(p)) = (port_range, publisher_ports) {
        let size = u32::from(hi - lo) + 1;
        if u32::from(p) >= size {
            bail!(
                "ice.publisher_ports {p}: the range has {size} ports; leave viewers at least one"
            );
        }
    }
    let connect_timeout = match connect_timeout_secs {
        None => d.connect_timeout,
        Some(s) if s.is_finite() && (1.0..=120.0).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => bail!("ice.connect_timeout_secs {s} is not 1 to 120"),
    };
    let dv = d.viewers.clone();
    let at_least_one = |v: Option<usize>, default: usize, key: &str| match v {
        Some(0) => bail!("whep.{key}: at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let viewers = vitrine_sfu::admission::ViewerLimits {
        pending_per_ip: at_least_one(whep.pending_per_ip, dv.pending_per_ip, "pending_per_ip")?,
        pending_per_stream: at_least_one(
            whep.pending_per_stream,
            dv.pending_per_stream,
            "pending_per_stream",
        )?,
        max_per_stream: at_least_one(
            whep.max_viewers_per_stream,
            dv.max_per_stream,
            "max_viewers_per_stream",
        )?,
        max_per_node: at_least_one(whep.max_viewers, dv.max_per_node, "max_viewers")?,
    };
    Ok(IceConfig {
        publisher_ports,
        connect_timeout,
        public,
        allow_private_candidates,
        viewers,
        ..d
    })
}

pub(super) fn parse_port_range(raw: &str) -> anyhow::Result<(u16, u16)> {
    let (lo, hi) = raw
        .split_once('-')
        .with_context(|| format!("port range {raw:?} is not LOW-HIGH"))?;
    let (lo, hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
    if lo == 0 || lo > hi {
        bail!("port range {raw:?} is empty or starts at 0");
    }
    Ok((lo, hi))
}
