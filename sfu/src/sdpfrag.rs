//! Trickle ICE SDP fragments (RFC 8840, `application/trickle-ice-sdpfrag`), as WHIP and WHEP
//! clients PATCH them: the candidate lines, tagged with the media section they belong to; and
//! the SDP rewriting an ICE restart through `PATCH` needs (RFC 9725 §4.4): the client's last
//! offer under its new credentials, and the fragment that answers it. Pure text in, text out.

/// Largest fragment accepted; a fragment carries a handful of candidate lines.
pub const MAX_SDPFRAG_BYTES: usize = 16 * 1024;
/// Most candidates accepted in one fragment.
pub const MAX_CANDIDATES: usize = 64;

/// One remote candidate from a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragCandidate {
    /// `candidate:...` without the `a=` prefix.
    pub candidate: String,
    pub mid: Option<String>,
    pub mline_index: u16,
    pub ufrag: Option<String>,
}

/// A parsed fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFrag {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub candidates: Vec<FragCandidate>,
    pub end_of_candidates: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpFragError {
    #[error("sdpfrag is larger than {MAX_SDPFRAG_BYTES} bytes")]
    TooLarge,
    #[error("sdpfrag has more than {MAX_CANDIDATES} candidates")]
    TooManyCandidates,
    #[error("sdpfrag line {0} is not an SDP line")]
    BadLine(usize),
}

pub fn parse_sdpfrag(body: &str) -> Result<SdpFrag, SdpFragError> {
    if body.len() > MAX_SDPFRAG_BYTES {
        return Err(SdpFragError::TooLarge);
    }
    let mut frag = SdpFrag::default();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    for (n, raw) in body.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return Err(SdpFragError::BadLine(n + 1));
        };
        match kind {
            "m" => {
                mline = Some(mline.map_or(0, |i| i.saturating_add(1)));
                mid = None;
            }
            "a" => {
                let (key, val) = value.split_once(':').unwrap_or((value, ""));
                match key {
                    "ice-ufrag" => frag.ufrag = Some(val.to_owned()),
                    "ice-pwd" => frag.pwd = Some(val.to_owned()),
                    "mid" => mid = Some(val.to_owned()),
                    "end-of-candidates" => frag.end_of_candidates = true,
                    "candidate" => {
                        if frag.candidates.len() == MAX_CANDIDATES {
                            return Err(SdpFragError::TooManyCandidates);
                        }
                        frag.candidates.push(FragCandidate {
                            candidate: value.to_owned(),
                            mid: mid.clone(),
                            mline_index: mline.unwrap_or(0),
                            ufrag: frag.ufrag.clone(),
                        });
                    }
                    _ => {}
                }
            }
            _ if kind.len() == 1 => {}
            _ => return Err(SdpFragError::BadLine(n + 1)),
        }
    }
    Ok(frag)
}

/// Whether `value` is a valid `ice-ufrag` (`min` 4) or `ice-pwd` (`min` 22): 1*256 ice-chars
/// (RFC 8839 §5.4). Checked before a value is written into an SDP.
pub fn valid_ice_value(value: &str, min: usize) -> bool {
    (min..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The first `a=ice-ufrag` and `a=ice-pwd` of an SDP (with BUNDLE, every section carries the
/// same pair).
pub fn ice_credentials(sdp: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        sdp.lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix(key))
            .map(str::to_owned)
    };
    Some((value("a=ice-ufrag:")?, value("a=ice-pwd:")?))
}

/// `offer` as it would read had it carried `ufrag`/`pwd`: the offer an ICE restart applies,
/// whose non-ICE parts are still negotiated (RFC 9725 §4.4). Its candidates are dropped: they
/// belong to the old ICE generation, and the new ones come in the fragment.
pub fn with_ice_credentials(offer: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for raw in offer.lines() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The fragment answering an ICE restart, from the new local description `answer`: its
/// credentials, then the first media section's `m=` and `a=mid` lines with its candidates (with
/// `max-bundle`, only the first section gathers, RFC 9725 §4.4).
pub fn restart_fragment(answer: &str) -> Option<String> {
    let (ufrag, pwd) = ice_credentials(answer)?;
    let mut out = String::new();
    if answer
        .lines()
        .any(|l| l.trim_end_matches('\r') == "a=ice-lite")
    {
        out.push_str("a=ice-lite\r\n");
    }
    out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    let mut sections = 0;
    for raw in answer.lines() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with("m=") {
            sections += 1;
            if sections > 1 {
                break;
            }
        }
        let keep = line.starts_with("m=")
            || line.starts_with("a=mid:")
            || line.starts_with("a=candidate:");
        if sections == 1 && keep {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    (sections > 0).then(|| out + "a=end-of-candidates\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_whip_patch_body() {
        let body = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\na=end-of-candidates\r\n";
        let frag = parse_sdpfrag(body).unwrap();
        assert_eq!(frag.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(frag.candidates.len(), 2);
        assert_eq!(frag.candidates[0].mid.as_deref(), Some("0"));
        assert!(
            frag.candidates[1]
                .candidate
                .starts_with("candidate:3471623853")
        );
        assert!(frag.end_of_candidates);
    }

    #[test]
    fn refuses_junk_and_floods() {
        assert_eq!(parse_sdpfrag("hello world"), Err(SdpFragError::BadLine(1)));
        let flood = "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n".repeat(MAX_CANDIDATES + 1);
        assert_eq!(parse_sdpfrag(&flood), Err(SdpFragError::TooManyCandidates));
        assert_eq!(
            parse_sdpfrag(&"a".repeat(MAX_SDPFRAG_BYTES + 1)),
            Err(SdpFragError::TooLarge)
        );
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpasswordoldpassword\r\n\
        a=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\na=end-of-candidates\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpasswordoldpassword\r\n\
        a=mid:1\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\n";

    #[test]
    fn a_restart_offer_keeps_the_media_under_new_credentials() {
        assert_eq!(
            ice_credentials(OFFER),
            Some(("old1".into(), "oldpasswordoldpassword".into()))
        );
        let restarted = with_ice_credentials(OFFER, "new1", "newpasswordnewpassword");
        assert_eq!(
            ice_credentials(&restarted),
            Some(("new1".into(), "newpasswordnewpassword".into()))
        );
        assert!(!restarted.contains("old1") && !restarted.contains("oldpassword"));
        assert!(!restarted.contains("a=candidate") && !restarted.contains("end-of-candidates"));
        assert!(restarted.contains("a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert_eq!(restarted.matches("a=ice-ufrag:new1").count(), 2);
    }

    #[test]
    fn the_restart_answer_fragment_carries_the_first_sections_candidates() {
        let frag = restart_fragment(OFFER).unwrap();
        assert_eq!(
            frag,
            "a=ice-ufrag:old1\r\na=ice-pwd:oldpasswordoldpassword\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\na=end-of-candidates\r\n"
        );
        // What the server sends back parses as what a client sends.
        let parsed = parse_sdpfrag(&frag).unwrap();
        assert_eq!(parsed.candidates.len(), 1);
        assert_eq!(parsed.candidates[0].mid.as_deref(), Some("0"));
        assert_eq!(restart_fragment("v=0\r\n"), None);
    }

    #[test]
    fn ice_values_are_ice_chars_of_the_right_length() {
        assert!(valid_ice_value("EsAw", 4));
        assert!(valid_ice_value("P2uYro0UCOQ4zxjKXaWCBui1", 22));
        assert!(!valid_ice_value("abc", 4));
        assert!(!valid_ice_value("short", 22));
        assert!(!valid_ice_value("ab cd", 4));
        assert!(!valid_ice_value("abcd\r\na=x", 4));
        assert!(!valid_ice_value(&"a".repeat(257), 4));
    }
}
