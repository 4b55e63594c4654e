//! HLS content steering (RFC 8216bis 4.4.6.6 and Apple's steering manifest): with CDNs
//! configured as pathways (`[[hls.pathways]]`, each a name and the base URL players reach the
//! origin through on that CDN), the master playlist lists every variant once per pathway,
//! with absolute URIs on that CDN, and names the steering manifest; the steering manifest
//! gives the pathways' order. A player uses the first pathway it can, and moves down the
//! list when a CDN fails it, without a new master playlist. Sans-IO: text in, text out.

use serde::{Deserialize, Serialize};

/// One CDN players may reach the origin through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pathway {
    /// `PATHWAY-ID`: letters, digits, `.`, `-` and `_`, at most 32.
    pub id: String,
    /// Where `/hls/...` is reached through this CDN: `https://cdn-a.example.com`.
    pub base: String,
}

/// The most pathways a master playlist lists (each multiplies its variants).
pub const MAX_PATHWAYS: usize = 8;
/// Object name of the steering manifest, beside the master playlist.
pub const MANIFEST: &str = "steering.json";
/// How long a player keeps a steering manifest before asking again (seconds).
pub const TTL_SECS: u32 = 300;

/// Why a list of pathways is refused.
pub fn check(pathways: &[Pathway]) -> Result<(), String> {
    if pathways.len() > MAX_PATHWAYS {
        return Err(format!("at most {MAX_PATHWAYS} pathways"));
    }
    for (i, p) in pathways.iter().enumerate() {
        let id_ok = !p.id.is_empty()
            && p.id.len() <= 32
            && p.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(format!(
                "pathway id {:?}: 1 to 32 of A-Z a-z 0-9 . _ -",
                p.id
            ));
        }
        if pathways[..i].iter().any(|q| q.id == p.id) {
            return Err(format!("two pathways are named {:?}", p.id));
        }
        let base = p.base.trim_end_matches('/');
        let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
        let host = base.split_once("://").map_or("", |(_, h)| h);
        if !scheme_ok || host.is_empty() || host.contains(['?', '#', '"', ' ']) {
            return Err(format!(
                "pathway {:?}: base must be an http(s) URL without query, quotes or spaces",
                p.id
            ));
        }
    }
    Ok(())
}

/// `master` (as rendered for one CDN-less origin, relative URIs) made into a steered master
/// playlist of `stream`: the steering tag, then every rendition group and variant once per
/// pathway, URIs absolute on that pathway's base, groups renamed per pathway.
pub fn master(master: &str, stream: &str, pathways: &[Pathway]) -> String {
    let Some(first) = pathways.first() else {
        return master.to_owned();
    };
    let lines: Vec<&str> = master.lines().collect();
    let header = lines
        .iter()
        .take_while(|l| !l.starts_with("#EXT-X-MEDIA:") && !l.starts_with("#EXT-X-STREAM-INF:"))
        .count();
    let mut out = String::with_capacity(master.len() * (pathways.len() + 1));
    for l in &lines[..header] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!(
        "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{MANIFEST}\",PATHWAY-ID=\"{}\"\n",
        first.id
    ));
    for p in pathways {
        let base = format!("{}/hls/{stream}/", p.base.trim_end_matches('/'));
        let mut rest = lines[header..].iter();
        while let Some(l) = rest.next() {
            if let Some(attrs) = l.strip_prefix("#EXT-X-MEDIA:") {
                out.push_str("#EXT-X-MEDIA:");
                out.push_str(&rewrite(attrs, &p.id, &base, false));
                out.push('\n');
            } else if let Some(attrs) = l.strip_prefix("#EXT-X-STREAM-INF:") {
                out.push_str("#EXT-X-STREAM-INF:");
                out.push_str(&rewrite(attrs, &p.id, &base, true));
                out.push('\n');
                if let Some(uri) = rest.next() {
                    out.push_str(&base);
                    out.push_str(uri);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// One tag's attribute list for pathway `id`: group names suffixed (`GROUP-ID`, `AUDIO`,
/// `SUBTITLES`), `URI` absolute under `base`, and `PATHWAY-ID` on a variant.
fn rewrite(attrs: &str, id: &str, base: &str, variant: bool) -> String {
    let mut out = String::with_capacity(attrs.len() + 64);
    for (i, (key, value)) in attributes(attrs).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        match key {
            "GROUP-ID" | "AUDIO" | "SUBTITLES" => {
                out.push_str(&format!("\"{}-{id}\"", value.trim_matches('"')));
            }
            "URI" => out.push_str(&format!("\"{base}{}\"", value.trim_matches('"'))),
            _ => out.push_str(value),
        }
    }
    if variant {
        out.push_str(&format!(",PATHWAY-ID=\"{id}\""));
    }
    out
}

/// An attribute list split into (name, raw value) pairs; quoted values keep their quotes and
/// may hold commas.
fn attributes(list: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = list;
    while let Some((key, after)) = rest.split_once('=') {
        let end = if after.starts_with('"') {
            after[1..].find('"').map_or(after.len(), |e| e + 2)
        } else {
            after.find(',').unwrap_or(after.len())
        };
        out.push((key, &after[..end]));
        rest = after[end..].trim_start_matches(',');
    }
    out
}

/// The steering manifest: the pathways in the order players should prefer them.
pub fn manifest(pathways: &[Pathway]) -> String {
    serde_json::json!({
        "VERSION": 1,
        "TTL": TTL_SECS,
        "PATHWAY-PRIORITY": pathways.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI=\"subs-en/index.m3u8\"\n\
        #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Original\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=1000,AVERAGE-BANDWIDTH=900,RESOLUTION=640x360,FRAME-RATE=30.000,CODECS=\"avc1.42c01e,mp4a.40.2\",AUDIO=\"aac\",SUBTITLES=\"subs\"\n\
        360p/index.m3u8\n";

    fn two() -> Vec<Pathway> {
        vec![
            Pathway {
                id: "cdn-a".into(),
                base: "https://a.example.com/".into(),
            },
            Pathway {
                id: "cdn-b".into(),
                base: "https://b.example.com".into(),
            },
        ]
    }

    #[test]
    fn every_variant_and_group_is_listed_once_per_pathway() {
        let steered = master(MASTER, "st_1", &two());
        assert!(steered.starts_with(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-CONTENT-STEERING:SERVER-URI=\"steering.json\",PATHWAY-ID=\"cdn-a\"\n"
        ));
        assert!(steered.contains(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac-cdn-b\",NAME=\"Original\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"https://b.example.com/hls/st_1/audio/index.m3u8\"\n"
        ), "{steered}");
        assert!(steered.contains(
            "CODECS=\"avc1.42c01e,mp4a.40.2\",AUDIO=\"aac-cdn-a\",SUBTITLES=\"subs-cdn-a\",PATHWAY-ID=\"cdn-a\"\nhttps://a.example.com/hls/st_1/360p/index.m3u8\n"
        ), "{steered}");
        assert_eq!(steered.matches("#EXT-X-STREAM-INF:").count(), 2);
        assert_eq!(steered.matches("#EXT-X-MEDIA:").count(), 4);
        assert_eq!(steered.matches("PATHWAY-ID=\"cdn-b\"").count(), 1);
        // Without pathways the master is left alone.
        assert_eq!(master(MASTER, "st_1", &[]), MASTER);
    }

    #[test]
    fn the_manifest_orders_the_pathways() {
        let m: serde_json::Value = serde_json::from_str(&manifest(&two())).unwrap();
        assert_eq!(m["VERSION"], 1);
        assert_eq!(m["TTL"], TTL_SECS);
        assert_eq!(m["PATHWAY-PRIORITY"], serde_json::json!(["cdn-a", "cdn-b"]));
    }

    #[test]
    fn bad_pathways_are_named() {
        assert_eq!(check(&two()), Ok(()));
        let mut same = two();
        same[1].id = "cdn-a".into();
        assert!(check(&same).unwrap_err().contains("two pathways"));
        for (id, base) in [
            ("", "https://a.example"),
            ("a b", "https://a.example"),
            ("a", "ftp://a.example"),
            ("a", "https://"),
            ("a", "https://a.example/?x=1"),
            ("a", "https://a\".example"),
        ] {
            let p = [Pathway {
                id: id.into(),
                base: base.into(),
            }];
            assert!(check(&p).is_err(), "{id:?} {base:?}");
        }
        let many: Vec<_> = (0..9)
            .map(|i| Pathway {
                id: format!("p{i}"),
                base: "https://a.example".into(),
            })
            .collect();
        assert!(check(&many).is_err());
    }
}
