//! Which ICE candidates a public deployment exchanges: none that point into a private network.
//!
//! A server on the internet that announced its private, link-local or loopback addresses
//! would tell every viewer about its internal network; a server that accepted such candidates
//! from a client would send connectivity checks wherever the client points it (its own LAN,
//! a cloud metadata address). So, when the deployment is public (see [`CandidatePolicy`]),
//! internal candidates are removed from the answers the server gives and dropped from the
//! offers and trickle fragments it receives. Connectivity does not suffer: a public server is
//! reached on its public address, and it learns each client's address from the client's checks.
//!
//! With a shared ICE port (see [`crate::udpmux`]), the same policy also moves the candidates of
//! the server's own descriptions onto that port: the connection only knows the ephemeral
//! address that labels its path. With ICE over TCP on the shared TCP port, each UDP host
//! candidate gets a passive TCP twin on that port (RFC 6544), at a lower priority, so a client
//! that can reach the address only over TCP still can; its address is the UDP candidate's,
//! announced address included.
//!
//! Pure text processing, tested at the SDP level; it must never resolve a host name.

use crate::peer::IceConfig;
use std::net::IpAddr;

/// Whether internal candidates are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CandidatePolicy {
    filter_internal: bool,
    /// The node's shared ICE ports, which the candidates of its own descriptions carry.
    shared_port: Option<SharedPorts>,
}

/// A node's shared ICE ports: UDP, and TCP when ICE over TCP is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPorts {
    pub udp: u16,
    pub tcp: Option<u16>,
}

/// RFC 6544 §4.2 asks TCP candidates to rank below UDP ones: the type preference a host TCP
/// candidate gets in place of 126 (the value browsers use).
const TCP_HOST_TYPE_PREFERENCE: u32 = 90;

/// Whether `ip` is not reachable from the internet: loopback, private (RFC 1918, IPv6 unique
/// local), shared address space (RFC 6598, carrier-grade NAT), link-local, unspecified,
/// broadcast or multicast. IPv4-mapped IPv6 addresses are judged as their IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
                    || v6.is_multicast()
            }
        },
    }
}

/// The connection address of a candidate line (`candidate:<foundation> <component> <transport>
/// <priority> <address> <port> typ ...`, with or without the `a=` prefix).
fn candidate_address(line: &str) -> Option<&str> {
    let line = line.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    let rest = line.strip_prefix("candidate:")?;
    rest.split_ascii_whitespace().nth(4)
}

impl CandidatePolicy {
    /// Filters internal candidates or not, as told.
    pub fn new(filter_internal: bool) -> Self {
        Self {
            filter_internal,
            shared_port: None,
        }
    }

    /// This policy for a node whose sessions all answer on `port` (`None`: their own ports).
    pub fn with_shared_port(self, port: Option<SharedPorts>) -> Self {
        Self {
            shared_port: port.or(self.shared_port),
            ..self
        }
    }

    pub fn shared_port(&self) -> Option<SharedPorts> {
        self.shared_port
    }

    /// This server's own description (an answer, a restart's new local description) as the
    /// client gets it: filtered as [`Self::filter_sdp`] does, and with every UDP candidate and
    /// media port moved to the shared port when there is one, and the TCP candidates those of
    /// the shared TCP port (see [`with_tcp_twins`]). Never apply it to what a client sent: the
    /// client's ports are its own.
    pub fn local_sdp(&self, sdp: &str) -> String {
        let filtered = self.filter_sdp(sdp);
        match self.shared_port {
            Some(ports) => with_tcp_twins(&with_candidate_port(&filtered, ports.udp), ports.tcp),
            None => filtered,
        }
    }

    /// The policy of a deployment: public when it says so (`ice.public`) or when it announces
    /// an address reachable from the internet; internal candidates are then filtered unless
    /// `ice.allow_private_candidates` keeps them (a deployment serving a LAN and the internet).
    pub fn of(ice: &IceConfig) -> Self {
        let announces_public = ice
            .announced_ips
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .any(|ip| !is_internal(ip));
        Self::new((ice.public || announces_public) && !ice.allow_private_candidates)
    }

    pub fn filters(&self) -> bool {
        self.filter_internal
    }

    /// Whether a candidate line may be exchanged. Under filtering, only candidates whose
    /// address is a public IP literal pass: a host name (an mDNS `.local` name or any other)
    /// could resolve into a private network, and a line that does not parse is not used.
    pub fn allows(&self, candidate: &str) -> bool {
        if !self.filter_internal {
            return true;
        }
        candidate_address(candidate)
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|ip| !is_internal(ip))
    }

    /// `sdp` without the candidate lines [`Self::allows`] refuses; every other line, and the
    /// line endings, unchanged.
    pub fn filter_sdp(&self, sdp: &str) -> String {
        if !self.filter_internal {
            return sdp.to_owned();
        }
        sdp.split_inclusive('\n')
            .filter(|line| {
                let l = line.trim_end();
                !l.starts_with("a=candidate:") || self.allows(l)
            })
            .collect()
    }
}

/// `sdp` with the port of every UDP `a=candidate` line set to `port`, and of every `m=` line
/// that has one (neither 0, a rejected section, nor 9, the discard port of trickle ICE).
pub fn with_candidate_port(sdp: &str, port: u16) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let mut fields: Vec<&str> = body.split(' ').collect();
        let port_text = port.to_string();
        let at = if body.starts_with("a=candidate:")
            && fields.len() > 5
            && fields[2].eq_ignore_ascii_case("udp")
        {
            Some(5)
        } else if body.starts_with("m=") && fields.len() > 1 && !matches!(fields[1], "0" | "9") {
            Some(1)
        } else {
            None
        };
        match at {
            Some(i) => {
                fields[i] = &port_text;
                out.push_str(&fields.join(" "));
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// `sdp` (a server's own description on the shared port) without the TCP candidates its
/// connection gathered (their ports are the connection's own listeners', and an ICE-lite
/// server never dials out), and, with a shared TCP port, with a passive TCP twin on that
/// port after each UDP host candidate.
pub fn with_tcp_twins(sdp: &str, tcp_port: Option<u16>) -> String {
    let mut out = String::with_capacity(sdp.len() * 2);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let fields: Vec<&str> = body.split(' ').collect();
        let candidate = body.starts_with("a=candidate:") && fields.len() >= 8;
        if candidate && fields[2].eq_ignore_ascii_case("tcp") {
            continue;
        }
        out.push_str(line);
        let host_udp = candidate && fields[2].eq_ignore_ascii_case("udp") && fields[7] == "host";
        if let (true, Some(port)) = (host_udp, tcp_port) {
            let foundation = &fields[0]["a=candidate:".len()..];
            let local = fields[3].parse::<u32>().unwrap_or(0) & 0x00ff_ffff;
            let priority = (TCP_HOST_TYPE_PREFERENCE << 24) | local;
            out.push_str(&format!(
                "a=candidate:{foundation}t {} tcp {priority} {} {port} typ host tcptype passive{ending}",
                fields[1], fields[4]
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host\r\n\
        a=candidate:2 1 udp 2130706431 10.0.0.5 50000 typ host\r\n\
        a=candidate:3 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
        a=candidate:4 1 udp 2130706431 169.254.1.1 50000 typ host\r\n\
        a=candidate:5 1 udp 2130706431 fe80::1 50000 typ host\r\n\
        a=candidate:6 1 udp 2130706431 2001:db8::7 50000 typ host\r\n\
        a=candidate:7 1 udp 2130706431 3f2c1a4e-0b3d.local 50000 typ host\r\n\
        a=candidate:8 1 udp 1694498815 198.51.100.9 61000 typ srflx raddr 192.168.1.4 rport 61000\r\n\
        a=end-of-candidates\r\n";

    fn ice(public: bool, announce: &[&str], allow: bool) -> IceConfig {
        IceConfig {
            public,
            announced_ips: announce.iter().map(|s| (*s).to_owned()).collect(),
            allow_private_candidates: allow,
            ..IceConfig::default()
        }
    }

    fn kept(sdp: &str) -> Vec<u32> {
        sdp.lines()
            .filter_map(|l| l.strip_prefix("a=candidate:"))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_public_deployment_exchanges_only_public_candidates() {
        let policy = CandidatePolicy::of(&ice(true, &[], false));
        assert!(policy.filters());
        let filtered = policy.filter_sdp(ANSWER);
        assert_eq!(kept(&filtered), vec![1, 6, 8]);
        assert!(filtered.contains("a=end-of-candidates\r\n"));
        assert!(filtered.starts_with("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"));
        assert!(
            !policy.allows("candidate:9 1 udp 1 100.64.0.1 1 typ host"),
            "shared space"
        );
        assert!(!policy.allows("candidate:9 1 udp 1 ::ffff:10.1.2.3 1 typ host"));
        assert!(
            !policy.allows("candidate:9 1 udp 1 fd00::1 1 typ host"),
            "unique local"
        );
        assert!(!policy.allows("candidate:broken"));
        assert!(!policy.allows("candidate:9 1 udp 1 metadata.internal 1 typ host"));
        assert!(policy.allows("a=candidate:9 1 udp 1 203.0.113.9 1 typ host"));
    }

    #[test]
    fn announcing_a_public_address_makes_a_deployment_public() {
        assert!(CandidatePolicy::of(&ice(false, &["203.0.113.7"], false)).filters());
        // A LAN deployment announcing its private address, and a laptop, filter nothing.
        assert!(!CandidatePolicy::of(&ice(false, &["192.168.1.10"], false)).filters());
        let laptop = CandidatePolicy::of(&IceConfig::default());
        assert!(!laptop.filters());
        assert_eq!(laptop.filter_sdp(ANSWER), ANSWER);
    }

    #[test]
    fn a_shared_port_moves_the_servers_own_candidates_only() {
        let policy =
            CandidatePolicy::of(&ice(true, &[], false)).with_shared_port(Some(SharedPorts {
                udp: 40_000,
                tcp: None,
            }));
        let local = policy.local_sdp(ANSWER);
        assert_eq!(kept(&local), vec![1, 6, 8], "still filtered");
        assert!(local.contains("a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host\r\n"));
        assert!(local.contains("a=candidate:6 1 udp 2130706431 2001:db8::7 40000 typ host\r\n"));
        assert!(
            local.contains("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"),
            "the discard port stays"
        );
        assert!(!local.contains(" 50000 "));
        // What a client sends is never rewritten, and without a shared port nothing moves.
        assert_eq!(
            policy.filter_sdp(ANSWER),
            CandidatePolicy::of(&ice(true, &[], false)).filter_sdp(ANSWER)
        );
        let laptop = CandidatePolicy::of(&IceConfig::default());
        assert_eq!(laptop.local_sdp(ANSWER), ANSWER);
        let moved = with_candidate_port(
            "m=audio 50123 UDP/TLS/RTP/SAVPF 111\nm=video 0 UDP/TLS/RTP/SAVPF 96\na=candidate:1 1 tcp 1 10.0.0.1 9 typ host tcptype active\n",
            7,
        );
        assert_eq!(
            moved,
            "m=audio 7 UDP/TLS/RTP/SAVPF 111\nm=video 0 UDP/TLS/RTP/SAVPF 96\na=candidate:1 1 tcp 1 10.0.0.1 9 typ host tcptype active\n"
        );
    }

    #[test]
    fn a_shared_tcp_port_gives_each_host_candidate_a_passive_twin() {
        let gathered = ANSWER.replace(
            "a=end-of-candidates",
            "a=candidate:9 1 tcp 2128609279 10.0.0.5 41234 typ host tcptype passive\r\n\
             a=candidate:10 1 tcp 2124414975 10.0.0.5 9 typ host tcptype active\r\n\
             a=end-of-candidates",
        );
        let policy =
            CandidatePolicy::of(&ice(true, &[], false)).with_shared_port(Some(SharedPorts {
                udp: 7882,
                tcp: Some(7881),
            }));
        let local = policy.local_sdp(&gathered);
        let tcp: Vec<&str> = local.lines().filter(|l| l.contains(" tcp ")).collect();
        assert_eq!(
            tcp,
            vec![
                "a=candidate:1t 1 tcp 1526726655 203.0.113.7 7881 typ host tcptype passive",
                "a=candidate:6t 1 tcp 1526726655 2001:db8::7 7881 typ host tcptype passive",
            ],
            "public host candidates only, none of the connection's own listeners"
        );
        assert!(
            local.contains(
                "a=candidate:1 1 udp 2130706431 203.0.113.7 7882 typ host\r\na=candidate:1t "
            ),
            "each twin follows its UDP candidate"
        );
        // The priority (fourth field) of the first candidate line of `transport` offered.
        let priority = |transport: &str| -> u32 {
            local
                .lines()
                .filter_map(|l| l.strip_prefix("a=candidate:"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f[2] == transport)
                .and_then(|f| f[3].parse().ok())
                .unwrap()
        };
        assert!(priority("tcp") < priority("udp"), "TCP ranks below UDP");
        // Without a TCP port, the gathered TCP candidates still go.
        let udp_only = CandidatePolicy::new(false).with_shared_port(Some(SharedPorts {
            udp: 7882,
            tcp: None,
        }));
        assert!(!udp_only.local_sdp(&gathered).contains(" tcp "));
    }

    #[test]
    fn the_operator_can_keep_private_candidates() {
        let policy = CandidatePolicy::of(&ice(true, &["203.0.113.7"], true));
        assert!(!policy.filters());
        assert_eq!(
            kept(&policy.filter_sdp(ANSWER)),
            (1..=8).collect::<Vec<_>>()
        );
    }
}
