//! Home regions. In a deployment of several regions each seller and buyer lives in one region's
//! database, and the ids and secrets made for them carry that region as a tag
//! (`st_eu_<hex>`, `bt_eu_<hex>`), so any node can tell where a request belongs without asking
//! anyone. Ids and secrets made without a region (a deployment of one region, or made before
//! regions existed) carry no tag.

use std::fmt;

/// Longest region name.
pub const MAX_REGION_LEN: usize = 16;

/// Words that already sit in that place in untagged secrets (`vk_test_<hex>`, `vk_live_<hex>`),
/// so they cannot name a region.
const RESERVED: [&str; 2] = ["test", "live"];

/// A region's name: 1 to 16 lower-case letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

/// Why a region name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("region {0:?}: 1 to 16 lower-case letters and digits, not \"test\" or \"live\"")]
pub struct RegionError(pub String);

impl Region {
    pub fn parse(raw: &str) -> Result<Self, RegionError> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_REGION_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && !RESERVED.contains(&raw);
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(RegionError(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `prefix` with this region's tag, for a new id or secret: `st` becomes `st_eu`.
    pub fn tag(home: Option<&Region>, prefix: &str) -> String {
        match home {
            Some(region) => format!("{prefix}_{}", region.0),
            None => prefix.to_owned(),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The region tag an id or secret carries: the word before its random hex part
/// (`pr_eu_<24 or more hex>` is "eu"). `None` for an untagged one, or one whose tag could not be
/// a region. The caller decides whether it names a region it knows.
pub fn tag_of(raw: &str) -> Option<&str> {
    let (head, random) = raw.rsplit_once('_')?;
    if random.len() < 24
        || !random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let (_, tag) = head.rsplit_once('_')?;
    Region::parse(tag).ok().map(|_| tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Secret, StreamId};

    #[test]
    fn tagged_ids_and_secrets_name_their_region() {
        let eu = Region::parse("eu").unwrap();
        let id = StreamId::generate_in(Some(&eu));
        assert!(id.as_str().starts_with("st_eu_"), "{id}");
        assert_eq!(tag_of(id.as_str()), Some("eu"));
        assert_eq!(StreamId::parse(id.as_str()).unwrap(), id);
        let secret = Secret::generate(&Region::tag(Some(&eu), "vk_test"));
        assert!(secret.expose().starts_with("vk_test_eu_"));
        assert_eq!(tag_of(secret.expose()), Some("eu"));
    }

    #[test]
    fn untagged_and_readable_ids_have_no_region() {
        assert_eq!(tag_of(StreamId::generate().as_str()), None);
        assert_eq!(tag_of(Secret::generate("vk_live").expose()), None);
        assert_eq!(tag_of(Secret::generate("vt").expose()), None);
        // An operator's readable id, however many underscores it has.
        assert_eq!(tag_of("demo_eu_stream"), None);
        assert_eq!(tag_of("a_eu_0123456789abcdef0123456"), None, "23 hex");
        assert_eq!(tag_of("a_EU_0123456789abcdef01234567"), None);
        assert_eq!(tag_of("a_eu_0123456789abcdef01234567"), Some("eu"));
        assert_eq!(tag_of("_0123456789abcdef01234567"), None);
    }

    #[test]
    fn region_names_are_bounded() {
        for bad in ["", "EU", "eu-west", "test", "live", &"a".repeat(17)] {
            assert!(Region::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Region::parse("euwest1").is_ok());
    }
}
