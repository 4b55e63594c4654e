//! Just enough STUN (RFC 5389) to demultiplex ICE on a shared socket: recognise a Binding
//! request, read the server's half of its USERNAME, and check its MESSAGE-INTEGRITY against a
//! session's password (HMAC-SHA1, §15.4).
//!
//! Pure functions over a datagram; they never allocate and never answer: the session's own ICE
//! agent answers the request once the demultiplexer has handed it over.

use ring::hmac;

const HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const INTEGRITY_LEN: usize = 20;

/// What RFC 7983 says a datagram on an ICE/DTLS/SRTP port is, from its first byte.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| *b < 4)
}

/// A STUN Binding request carrying a USERNAME and a MESSAGE-INTEGRITY (every ICE
/// connectivity check does, RFC 8445 §7.2.2), borrowed from its datagram.
#[derive(Debug, Clone, Copy)]
pub struct BindingRequest<'a> {
    message: &'a [u8],
    username: &'a [u8],
    /// Where the MESSAGE-INTEGRITY attribute starts (its header), and its value.
    integrity_at: usize,
    integrity: &'a [u8],
}

impl<'a> BindingRequest<'a> {
    /// `None` unless `datagram` is a well-formed Binding request with both attributes (and
    /// the USERNAME before the MESSAGE-INTEGRITY, as §15.4 requires of covered attributes).
    pub fn parse(datagram: &'a [u8]) -> Option<Self> {
        if datagram.len() < HEADER || !is_stun(datagram) || datagram[4..8] != MAGIC_COOKIE {
            return None;
        }
        if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if length % 4 != 0 || HEADER + length != datagram.len() {
            return None;
        }
        let mut username = None;
        let mut at = HEADER;
        while at + 4 <= datagram.len() {
            let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
            let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
            let value = datagram.get(at + 4..at + 4 + len)?;
            match kind {
                ATTR_USERNAME => username = Some(value),
                ATTR_MESSAGE_INTEGRITY if len == INTEGRITY_LEN => {
                    return Some(Self {
                        message: datagram,
                        username: username?,
                        integrity_at: at,
                        integrity: value,
                    });
                }
                _ => {}
            }
            at += 4 + len.next_multiple_of(4);
        }
        None
    }

    /// The server's ufrag: the USERNAME before its `:` (`"<server>:<client>"` in a check a
    /// client sends to a server, RFC 8445 §7.2.2). `None` when it is not UTF-8 or has no `:`.
    pub fn server_ufrag(&self) -> Option<&'a str> {
        let username = std::str::from_utf8(self.username).ok()?;
        username.split_once(':').map(|(server, _)| server)
    }

    /// Whether the MESSAGE-INTEGRITY was made with `password` (the short-term credential of
    /// ICE: the key is the password itself). The HMAC covers the message up to the attribute,
    /// with the header's length counting up to the end of the attribute (FINGERPRINT excluded).
    pub fn verify(&self, password: &str) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
        let covered_len = self.integrity_at + 4 + INTEGRITY_LEN - HEADER;
        let Ok(covered_len) = u16::try_from(covered_len) else {
            return false;
        };
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&self.message[..2]);
        ctx.update(&covered_len.to_be_bytes());
        ctx.update(&self.message[4..self.integrity_at]);
        let tag = ctx.sign();
        // Constant time: the comparison must not tell a prober how many bytes it got right.
        vitrine_core::constant_time_eq(tag.as_ref(), self.integrity)
    }
}

/// A Binding request from `username` signed with `password`, as an ICE agent sends it (no
/// FINGERPRINT): for tests of the demultiplexer and of the server.
pub fn signed_binding_request(username: &str, password: &str, transaction: [u8; 12]) -> Vec<u8> {
    let mut m = Vec::with_capacity(96);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(&transaction);
    m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
    m.extend_from_slice(&(username.len() as u16).to_be_bytes());
    m.extend_from_slice(username.as_bytes());
    m.resize(m.len().next_multiple_of(4), 0);
    let length = (m.len() - HEADER + 4 + INTEGRITY_LEN) as u16;
    m[2..4].copy_from_slice(&length.to_be_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    let tag = hmac::sign(&key, &m);
    m.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
    m.extend_from_slice(&(INTEGRITY_LEN as u16).to_be_bytes());
    m.extend_from_slice(tag.as_ref());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample request of RFC 5769 §2.1 (USERNAME "evtj:h6vY", with FINGERPRINT).
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn the_rfc_5769_sample_request_verifies_with_its_password_only() {
        let request = BindingRequest::parse(&RFC5769_REQUEST).expect("a binding request");
        assert_eq!(request.server_ufrag(), Some("evtj"));
        assert!(request.verify("VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!request.verify("VOkJxbRl1RmTxUk/WvJxBu"));
        // Any covered byte changed (here the transaction id) breaks the integrity.
        let mut tampered = RFC5769_REQUEST;
        tampered[10] ^= 1;
        let tampered = BindingRequest::parse(&tampered).unwrap();
        assert!(!tampered.verify("VOkJxbRl1RmTxUk/WvJxBt"));
    }

    #[test]
    fn what_is_not_a_signed_binding_request_is_refused() {
        let signed = signed_binding_request("srv:cli", "passwordpassword", [7; 12]);
        let parsed = BindingRequest::parse(&signed).unwrap();
        assert_eq!(parsed.server_ufrag(), Some("srv"));
        assert!(parsed.verify("passwordpassword"));
        // Truncated, a wrong length, a response type, no cookie, DTLS and RTP.
        assert!(BindingRequest::parse(&signed[..signed.len() - 4]).is_none());
        let mut bad = signed.clone();
        bad[3] += 4;
        assert!(BindingRequest::parse(&bad).is_none());
        let mut response = signed.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        assert!(BindingRequest::parse(&response).is_none());
        let mut cookie = signed.clone();
        cookie[5] = 0;
        assert!(BindingRequest::parse(&cookie).is_none());
        assert!(!is_stun(&[22, 254, 253]) && !is_stun(&[0x80, 96]) && is_stun(&signed));
        // Without a MESSAGE-INTEGRITY there is nothing to verify.
        let mut unsigned = signed[..HEADER + 4 + 8].to_vec();
        unsigned[3] = 12;
        assert!(BindingRequest::parse(&unsigned).is_none());
        // A USERNAME without the server:client form names no session.
        let anonymous = signed_binding_request("nocolon", "passwordpassword", [1; 12]);
        assert_eq!(
            BindingRequest::parse(&anonymous).unwrap().server_ufrag(),
            None
        );
        assert!(BindingRequest::parse(&[]).is_none());
    }
}
