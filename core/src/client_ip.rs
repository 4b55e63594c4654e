//! The client's address, as every per-address limit counts it.
//!
//! Behind a CDN or a load balancer every request arrives from the proxy's address, so limits
//! counted by the TCP peer would lump all clients together; trusting `Forwarded` or
//! `X-Forwarded-For` from anyone would let every client name any address it likes. So the
//! headers are read only when the peer is one of the operator's trusted proxies, and then from
//! the right (the hop nearest us) leftwards, past the trusted proxies, to the first address
//! that is not one: the address the outermost trusted proxy saw. Only the one header the
//! operator's proxies write is read ([`ForwardedHeader`]): a proxy passes the other one on as
//! the client sent it, so reading it would let the client name any address.
//!
//! **Contract:** [`client_ip`] is pure (a peer, headers and the trusted list in, an address
//! out); it performs no I/O and never fails. The server puts its answer into every request as
//! a [`ClientIp`] extension; handlers in any crate take `ClientIp` as an extractor.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One CIDR block, e.g. `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block (like 10.0.0.0/8 or 2001:db8::/32)")]
pub struct CidrError(pub String);

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(raw: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(raw.to_owned());
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (raw.trim(), None),
        };
        let net = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The header the trusted proxies write the client's address into; the other one is never
/// read (a proxy that writes one passes the other through from the client untouched).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (and `X-Forwarded-Proto`): what nearly every proxy and CDN writes.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=`, `proto=`).
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(format!(
                "{raw:?} is not a forwarding header (x-forwarded-for or forwarded)"
            )),
        }
    }
}

/// The proxies whose forwarding header is believed (none by default), and which header that is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub blocks: Vec<Cidr>,
    pub header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses a list of blocks, e.g. from `--trusted-proxies 10.0.0.0/8,192.168.1.7`; their
    /// header is `X-Forwarded-For` (see [`Self::with_header`]).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, CidrError> {
        list.iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_, _>>()
            .map(|blocks| Self {
                blocks,
                header: ForwardedHeader::default(),
            })
    }

    /// The same proxies, writing `header`.
    pub fn with_header(self, header: ForwardedHeader) -> Self {
        Self { header, ..self }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|c| c.contains(ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack socket reports) as the
/// IPv4 address it is, so one client has one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The address in one `Forwarded` `for=` value or one `X-Forwarded-For` item: quotes,
/// brackets and a port stripped. `None` for `unknown`, obfuscated names and garbage.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // `1.2.3.4:5678` (a bare IPv6 address with a port is ambiguous, hence the brackets above).
    raw.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// The `for=` values of every `Forwarded` line, left to right (`None` for a hop that hides its
/// address); empty when the header is absent.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| parse_node(v))
        })
        .collect()
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(parse_node)
        .collect()
}

/// The client's address: the TCP `peer` unless it is a trusted proxy; then the rightmost
/// address of the forwarding chain (of the proxies' header only, see [`ForwardedHeader`]) that
/// is not itself a trusted proxy. A hop that hides its address ends the walk at the last address
/// known (the proxy that received from it); a chain of trusted proxies only ends at its
/// leftmost address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let chain = match trusted.header {
        ForwardedHeader::Forwarded => forwarded_for(headers),
        ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
    };
    let mut known = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if trusted.contains(*ip) => known = *ip,
            Some(ip) => return *ip,
            None => return known,
        }
    }
    known
}

/// Whether the request reached the outermost trusted proxy over HTTPS, as that proxy says
/// (`Forwarded: proto=https` or `X-Forwarded-Proto: https`, by the proxies' header); always
/// false from a peer that is not a trusted proxy.
pub fn forwarded_https(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> bool {
    if !trusted.contains(canonical(peer)) {
        return false;
    }
    let value = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .collect::<Vec<_>>()
    };
    let proto = match trusted.header {
        ForwardedHeader::Forwarded => value("forwarded").iter().find_map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        }),
        ForwardedHeader::XForwardedFor => value("x-forwarded-proto").into_iter().next(),
    };
    proto.is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The client's address of a request (see [`client_ip`]), put into its extensions by the
/// server. As an extractor it never fails: without the extension it is the TCP peer, and
/// without that (a router driven without a socket, in tests) the unspecified address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// What per-address limits count by: an IPv4 address, or the /64 of an IPv6 address (one
    /// subscriber usually holds a whole /64 and can pick any address in it).
    pub fn limit_key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & (u128::MAX << 64);
                format!("{}/64", Ipv6Addr::from(net))
            }
        }
    }
}

impl ClientIp {
    /// The client's address of a request, as the extractor finds it (for code that holds the
    /// request's parts rather than extracting).
    pub fn of(parts: &Parts) -> Self {
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return *ip;
        }
        Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| canonical(c.0.ip())),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self::of(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap()
    }

    /// Proxies that write RFC 7239 `Forwarded`.
    fn trusted_forwarded() -> TrustedProxies {
        trusted().with_header(ForwardedHeader::Forwarded)
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &TrustedProxies::default()),
            ip("10.0.0.1"),
            "nothing is trusted by default"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        // The client prepended a lie; the proxies appended what they saw.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.9.9.9",
            ),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted_forwarded()),
            ip("2001:db8:cafe::17")
        );
        // Only the proxies' own header is read: the other one is the client's to forge.
        let h = headers(&[
            ("forwarded", "for=192.0.2.60:80"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted_forwarded()),
            ip("192.0.2.60")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted()), ip("6.6.6.6"));
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("10.0.0.1"),
            "a forged Forwarded through a proxy that writes X-Forwarded-For"
        );
    }

    #[test]
    fn odd_chains_end_at_the_last_address_known() {
        let t = trusted();
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &t),
            ip("10.0.0.1")
        );
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.7"));
        let h = headers(&[("forwarded", "for=198.51.100.1, for=unknown, for=10.0.0.9")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted_forwarded()),
            ip("10.0.0.9")
        );
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
        // A dual-stack socket's IPv4-mapped peer is its IPv4 address.
        let h = headers(&[("x-forwarded-for", "198.51.100.2")]);
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), &h, &t), ip("198.51.100.2"));
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        let c: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(c.contains(ip("192.168.44.1")) && !c.contains(ip("192.169.0.1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("::1".parse::<Cidr>().unwrap().contains(ip("::1")));
        assert!(!"::1".parse::<Cidr>().unwrap().contains(ip("127.0.0.1")));
        for bad in ["10.0.0.0/33", "nope", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn https_is_believed_only_from_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert!(forwarded_https(ip("10.0.0.1"), &h, &trusted()));
        assert!(!forwarded_https(ip("203.0.113.9"), &h, &trusted()));
        let h = headers(&[("forwarded", "for=1.2.3.4;proto=HTTPS")]);
        assert!(forwarded_https(ip("10.0.0.1"), &h, &trusted_forwarded()));
        assert!(
            !forwarded_https(ip("10.0.0.1"), &h, &trusted()),
            "not the proxies' header"
        );
        assert!(!forwarded_https(
            ip("10.0.0.1"),
            &HeaderMap::new(),
            &trusted()
        ));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            ClientIp(ip("2001:db8:1:2:aaaa::1")).limit_key(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(ClientIp(ip("198.51.100.7")).limit_key(), "198.51.100.7");
    }
}
