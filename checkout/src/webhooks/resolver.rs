//! Which addresses a webhook may reach, checked where the connection is made: the endpoint's
//! host is resolved here and every private, loopback, link-local or otherwise non-public
//! address is dropped, so a name that passed registration and later points inside the network
//! (DNS rebinding) reaches nothing.

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether `ip` is outside the public internet: private, shared (carrier NAT), loopback,
/// link-local (cloud metadata lives there), unspecified, broadcast, multicast, documentation,
/// benchmarking, protocol-assignment, IPv6 unique- and site-local, discard-only. IPv4 inside
/// IPv6 (mapped, compatible, NAT64) is judged as IPv4; 6to4 and Teredo, which tunnel to an
/// address of their own choosing, are refused outright.
pub fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            // Mapped (::ffff:a.b.c.d) and the old compatible form (::a.b.c.d).
            if let Some(v4) = v6.to_ipv4() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local, fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo, 2001::/32
                || s[0] == 0x2002 // 6to4, 2002::/16
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only, 100::/64
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64, 64:ff9b:1::/48
                || is_nat64_of_private(v6)
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // protocol assignments, 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved
}

/// `64:ff9b::/96` carrying a private IPv4 address.
fn is_nat64_of_private(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[..6] != [0x64, 0xff9b, 0, 0, 0, 0] {
        return false;
    }
    let [a, b] = s[6].to_be_bytes();
    let [c, d] = s[7].to_be_bytes();
    is_private_v4(Ipv4Addr::new(a, b, c, d))
}

/// A resolver for the webhook client that answers only public addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl PublicOnlyResolver {
    pub fn shared() -> Arc<Self> {
        Arc::new(Self)
    }
}

/// Keeps the public addresses of a lookup; none left is an error that names the host.
pub fn public_addresses(
    host: &str,
    found: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| !is_private_ip(a.ip()))
        .collect();
    if public.is_empty() {
        return Err(format!(
            "{host} resolves to no public address; private, loopback and link-local targets are not allowed"
        ));
    }
    Ok(public)
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public = public_addresses(&host, found)
                .map_err(|e| -> Box<dyn Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;
    use std::str::FromStr;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "192.0.0.192",
            "198.18.0.1",
            "::10.0.0.1",
            "::127.0.0.1",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378::1",
            "fec0::1",
            "100::1",
        ] {
            assert!(is_private_ip(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private_ip(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_lookup_keeps_only_public_addresses() {
        let found: Vec<SocketAddr> = vec![
            "10.0.0.5:0".parse().unwrap(),
            "93.184.216.34:0".parse().unwrap(),
        ];
        assert_eq!(
            public_addresses("hooks.example.com", found).unwrap(),
            vec!["93.184.216.34:0".parse::<SocketAddr>().unwrap()]
        );
        let err = public_addresses("rebind.example", vec!["127.0.0.1:0".parse().unwrap()]);
        assert!(err.unwrap_err().contains("rebind.example"));
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_not_reached() {
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let refused = PublicOnlyResolver.resolve(name).await;
        let err = refused
            .err()
            .expect("localhost must be refused")
            .to_string();
        assert!(err.contains("no public address"), "{err}");
    }
}
