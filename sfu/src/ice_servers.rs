//! The STUN and TURN servers a WHIP or WHEP client is handed (RFC 9725 §4.6), with TURN
//! credentials made by the TURN REST API scheme that coturn's `static-auth-secret` checks: the
//! username is `<expiry unix seconds>:<label>`, the password base64(HMAC-SHA1(secret, username)).
//! Sans-IO: the time is an argument, and nothing here touches a socket or the clock.
//!
//! **Never** logs or formats the shared secret (its `Debug` is redacted): whoever holds it can
//! mint credentials for any time.

use base64::Engine;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long handed-out TURN credentials stay valid unless configured: a day, so that a
/// long live sale never outlives its relay.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(86_400);

/// What follows the expiry in every TURN username; coturn ignores it, its logs show it.
const USERNAME_LABEL: &str = "vitrine";

/// The shared secret a TURN server checks credentials against.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(Vec<u8>);

impl TurnSecret {
    /// A secret as the operator wrote it (in a file; surrounding white space is not part of it).
    /// `None` for an empty secret, which would let anyone mint credentials.
    pub fn new(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        (!trimmed.is_empty()).then(|| Self(trimmed.as_bytes().to_vec()))
    }
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(redacted)")
    }
}

/// The operator's ICE servers: handed to every client that may open a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServers {
    /// `stun:` URLs, handed out without credentials.
    pub stun_urls: Vec<String>,
    /// `turn:`/`turns:` URLs sharing [`IceServers::turn_secret`].
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`; without it TURN URLs are not handed out (a TURN server
    /// without credentials is an open relay nobody should run).
    pub turn_secret: Option<TurnSecret>,
    /// Lifetime of the credentials made per answer ([`DEFAULT_TURN_TTL`] when zero).
    pub turn_ttl: Duration,
}

/// One server a client may use, as RFC 9725's `Link` header and `RTCIceServer` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    /// Username and password for TURN; `None` for STUN.
    pub credentials: Option<(String, String)>,
}

/// The TURN REST API password for `username`: base64(HMAC-SHA1(secret, username)). SHA-1 is what
/// coturn checks; it is an HMAC here, where SHA-1's collisions do not matter.
pub fn turn_password(secret: &TurnSecret, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret.0);
    let tag = ring::hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// Why the operator's ICE servers cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceServersError {
    #[error("{0:?} is not a stun: or stuns: URL")]
    BadStunUrl(String),
    #[error("{0:?} is not a turn: or turns: URL")]
    BadTurnUrl(String),
    #[error("TURN URLs need the TURN server's shared secret (turn.secret_file)")]
    NoSecret,
    #[error("a TURN secret without TURN URLs hands out nothing (turn.urls)")]
    NoTurnUrls,
    #[error("the TURN secret is empty")]
    EmptySecret,
    #[error("turn.ttl_secs {0} is not {MIN_TTL_SECS} to {MAX_TTL_SECS}")]
    Ttl(u64),
}

/// Shortest credential lifetime accepted: a client must connect (and restart) within it.
pub const MIN_TTL_SECS: u64 = 60;
/// Longest: a week; a leaked credential relays for no longer.
pub const MAX_TTL_SECS: u64 = 7 * 86_400;

impl IceServers {
    /// The operator's settings, checked: URLs a browser takes, a non-empty secret exactly when
    /// there are TURN URLs, and a lifetime in bounds.
    pub fn new(
        stun_urls: Vec<String>,
        turn_urls: Vec<String>,
        secret: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<Self, IceServersError> {
        if let Some(bad) = stun_urls.iter().find(|u| !valid_url(u, false)) {
            return Err(IceServersError::BadStunUrl(bad.clone()));
        }
        if let Some(bad) = turn_urls.iter().find(|u| !valid_url(u, true)) {
            return Err(IceServersError::BadTurnUrl(bad.clone()));
        }
        let turn_secret = match secret {
            Some(raw) => Some(TurnSecret::new(raw).ok_or(IceServersError::EmptySecret)?),
            None => None,
        };
        match (turn_urls.is_empty(), turn_secret.is_some()) {
            (false, false) => return Err(IceServersError::NoSecret),
            (true, true) => return Err(IceServersError::NoTurnUrls),
            _ => {}
        }
        let turn_ttl = match ttl_secs {
            None => DEFAULT_TURN_TTL,
            Some(s) if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&s) => Duration::from_secs(s),
            Some(s) => return Err(IceServersError::Ttl(s)),
        };
        Ok(Self {
            stun_urls,
            turn_urls,
            turn_secret,
            turn_ttl,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.stun_urls.is_empty() && (self.turn_urls.is_empty() || self.turn_secret.is_none())
    }

    /// The servers to hand a client at `now`, TURN credentials expiring a TTL later.
    pub fn at(&self, now: SystemTime) -> Vec<IceServer> {
        let stun = self.stun_urls.iter().map(|url| IceServer {
            url: url.clone(),
            credentials: None,
        });
        let turn = self.turn_secret.iter().flat_map(|secret| {
            let ttl = if self.turn_ttl.is_zero() {
                DEFAULT_TURN_TTL
            } else {
                self.turn_ttl
            };
            let expiry = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(ttl)
                .as_secs();
            let username = format!("{expiry}:{USERNAME_LABEL}");
            let password = turn_password(secret, &username);
            self.turn_urls.iter().map(move |url| IceServer {
                url: url.clone(),
                credentials: Some((username.clone(), password.clone())),
            })
        });
        stun.chain(turn).collect()
    }
}

impl IceServer {
    /// The value of the `Link` header announcing this server (RFC 9725 §4.6).
    pub fn link(&self) -> String {
        match &self.credentials {
            None => format!("<{}>; rel=\"ice-server\"", self.url),
            Some((username, password)) => format!(
                "<{}>; rel=\"ice-server\"; username=\"{username}\"; credential=\"{password}\"; \
                 credential-type=\"password\"",
                self.url
            ),
        }
    }
}

/// Whether `url` is a STUN or TURN URI a browser takes (RFC 7064, RFC 7065), and so safe to put
/// between `<` and `>` in a header.
pub fn valid_url(url: &str, turn: bool) -> bool {
    let schemes: &[&str] = if turn {
        &["turn:", "turns:"]
    } else {
        &["stun:", "stuns:"]
    };
    schemes
        .iter()
        .any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()))
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b','))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers() -> IceServers {
        IceServers {
            stun_urls: vec!["stun:stun.example.com:3478".into()],
            turn_urls: vec![
                "turn:turn.example.com:3478?transport=udp".into(),
                "turns:turn.example.com:5349?transport=tcp".into(),
            ],
            turn_secret: TurnSecret::new("north\n"),
            turn_ttl: Duration::ZERO,
        }
    }

    #[test]
    fn turn_credentials_follow_the_rest_api_scheme() {
        // python3: base64.b64encode(hmac.new(b'north', b'1700086400:vitrine',
        //                                    hashlib.sha1).digest())
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let handed = servers().at(now);
        assert_eq!(handed.len(), 3);
        assert_eq!(handed[0].credentials, None, "stun needs no credentials");
        let (user, pass) = handed[1].credentials.clone().unwrap();
        assert_eq!(user, "1700086400:vitrine", "expires a day later by default");
        assert_eq!(pass, "/M1Yl6kycmVCbU4PQlGq0aGdqFU=");
        assert_eq!(handed[2].credentials, handed[1].credentials);
    }

    #[test]
    fn links_carry_the_credentials_and_stun_none() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let links: Vec<String> = servers().at(now).iter().map(IceServer::link).collect();
        assert_eq!(links[0], "<stun:stun.example.com:3478>; rel=\"ice-server\"");
        assert_eq!(
            links[1],
            "<turn:turn.example.com:3478?transport=udp>; rel=\"ice-server\"; \
             username=\"1700086400:vitrine\"; credential=\"/M1Yl6kycmVCbU4PQlGq0aGdqFU=\"; \
             credential-type=\"password\""
        );
    }

    #[test]
    fn the_ttl_moves_the_expiry_and_no_secret_hands_out_no_turn() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let short = IceServers {
            turn_ttl: Duration::from_secs(60),
            ..servers()
        };
        let (user, _) = short.at(now)[1].credentials.clone().unwrap();
        assert_eq!(user, "1060:vitrine");
        let open = IceServers {
            turn_secret: None,
            stun_urls: vec![],
            ..servers()
        };
        assert!(open.at(now).is_empty() && open.is_empty());
        assert_eq!(
            TurnSecret::new("  \n"),
            None,
            "an empty secret is no secret"
        );
        assert_eq!(
            format!("{:?}", TurnSecret::new("north").unwrap()),
            "TurnSecret(redacted)"
        );
    }

    #[test]
    fn settings_are_checked() {
        let turn = || vec!["turn:127.0.0.1:3478?transport=udp".to_owned()];
        let ok = IceServers::new(vec![], turn(), Some("north\n"), None).unwrap();
        assert_eq!(ok.turn_ttl, DEFAULT_TURN_TTL);
        assert_eq!(ok.turn_secret, TurnSecret::new("north"));
        assert_eq!(
            IceServers::new(vec![], turn(), None, None),
            Err(IceServersError::NoSecret)
        );
        assert_eq!(
            IceServers::new(vec![], vec![], Some("north"), None),
            Err(IceServersError::NoTurnUrls)
        );
        assert_eq!(
            IceServers::new(vec![], turn(), Some(" "), None),
            Err(IceServersError::EmptySecret)
        );
        assert_eq!(
            IceServers::new(vec![], turn(), Some("north"), Some(5)),
            Err(IceServersError::Ttl(5))
        );
        assert_eq!(
            IceServers::new(vec!["turn:x".into()], vec![], None, None),
            Err(IceServersError::BadStunUrl("turn:x".into()))
        );
        assert_eq!(
            IceServers::new(vec![], vec!["http://x".into()], Some("s"), None),
            Err(IceServersError::BadTurnUrl("http://x".into()))
        );
        assert!(
            IceServers::new(vec![], vec![], None, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_stun_and_turn_uris_without_header_syntax_are_valid() {
        assert!(valid_url("turn:127.0.0.1:3478?transport=udp", true));
        assert!(valid_url("turns:turn.example.com:5349", true));
        assert!(!valid_url("stun:turn.example.com", true));
        assert!(valid_url("stun:stun.example.com:3478", false));
        assert!(!valid_url("turn:a>; rel=\"x\"", true));
        assert!(!valid_url("turn:a,b", true));
        assert!(!valid_url("turn:", true));
    }
}
