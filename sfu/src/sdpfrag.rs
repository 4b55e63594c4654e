//! Trickle ICE SDP fragments (RFC 8840, `application/trickle-ice-sdpfrag`), as WHIP and WHEP
//! clients PATCH them: the candidate lines, tagged with the media section they belong to.

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
}
