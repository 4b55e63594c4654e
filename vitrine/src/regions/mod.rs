//! A deployment of several regions: each region has its own database, and each seller and buyer
//! lives in the region where they were made (their home). Ids and secrets made in a region
//! carry its tag (`vitrine_core::region`), so a node tells where a request belongs without
//! asking anyone, and never runs another region's SQL:
//!
//! - a path that names a tagged stream, product or order belongs to that id's region (the
//!   seller's: the watch page, WHIP and WHEP, the seller's resources, an order);
//! - a new order belongs to its product's region (read from the body);
//! - else a tagged bearer credential belongs to its owner's region.
//!
//! API calls that belong elsewhere are forwarded there and answered here ([`proxy`]), pages and
//! media get a 307. An order of a buyer from another region is placed in the seller's region:
//! the node there asks the buyer's home who the token belongs to ([`buyers`]), so the buyer's
//! name and token hash never leave home, and the order keeps the buyer's id only.

pub mod buyers;
pub mod orders;
pub mod proxy;
pub mod vouch;

pub use buyers::Buyers;
pub use proxy::{Homes, route_home};

use anyhow::{Context, bail};
use axum::http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use vitrine_core::Region;
use vitrine_core::region::tag_of;
use vouch::RegionsKey;

/// A `[regions.<name>]` table of the configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegion {
    /// The region's own database: only that region's nodes open it.
    database_url: String,
    /// Where clients reach the region (its load balancer): requests that belong there are
    /// redirected to it, and its nodes are asked who a buyer from there is.
    public_url: String,
}

/// One region as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub database_url: String,
    pub public_url: String,
}

/// The deployment's regions and which one this node is in.
#[derive(Debug, Clone)]
pub struct Regions {
    pub here: Region,
    all: BTreeMap<Region, RegionInfo>,
    /// Shared by every region's nodes: vouches for the callers of forwarded calls.
    pub key: RegionsKey,
}

impl Regions {
    /// `None` without `[regions]` (one region, untagged ids, as before). `secret_file` holds
    /// the secret every region's nodes share (at least 32 bytes).
    pub fn resolve(
        here: Option<String>,
        file: BTreeMap<String, FileRegion>,
        secret_file: Option<PathBuf>,
    ) -> anyhow::Result<Option<Self>> {
        if file.is_empty() {
            if secret_file.is_some() {
                bail!("regions_secret_file without [regions]");
            }
            return Ok(None);
        }
        let mut all = BTreeMap::new();
        for (name, entry) in file {
            let region = Region::parse(&name)?;
            let public_url = entry.public_url.trim_end_matches('/').to_owned();
            if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
                bail!("regions.{name}.public_url {public_url:?} is not an http(s) URL");
            }
            all.insert(
                region,
                RegionInfo {
                    database_url: entry.database_url,
                    public_url,
                },
            );
        }
        let here = here.context("a node of a deployment with [regions] needs --region")?;
        let here = Region::parse(&here)?;
        if !all.contains_key(&here) {
            let known: Vec<&str> = all.keys().map(Region::as_str).collect();
            bail!("region {here} is not one of [regions] {known:?}");
        }
        let secret_file = secret_file.context(
            "a deployment with [regions] needs regions_secret_file (--regions-secret-file): \
             the secret its nodes share to vouch for the callers they forward",
        )?;
        let secret = std::fs::read(&secret_file)
            .with_context(|| format!("reading the regions' secret {}", secret_file.display()))?;
        let key = RegionsKey::from_secret(&secret).with_context(|| {
            format!(
                "the regions' secret file must hold at least {} bytes",
                vouch::MIN_SECRET_BYTES
            )
        })?;
        Ok(Some(Self { here, all, key }))
    }

    /// This node's region's entry.
    pub fn local(&self) -> &RegionInfo {
        &self.all[&self.here]
    }

    /// The other region that `raw` (an id or a secret) belongs to; `None` when it belongs here,
    /// carries no tag, or a tag of no region we know.
    pub fn elsewhere(&self, raw: &str) -> Option<(&Region, &RegionInfo)> {
        let tag = tag_of(raw)?;
        let (region, info) = self.all.iter().find(|(r, _)| r.as_str() == tag)?;
        (*region != self.here).then_some((region, info))
    }

    /// Every region but this one.
    pub fn others(&self) -> impl Iterator<Item = (&Region, &RegionInfo)> {
        self.all.iter().filter(|(r, _)| **r != self.here)
    }

    /// Whether `raw` carries this region's own tag.
    pub fn is_local(&self, raw: &str) -> bool {
        tag_of(raw) == Some(self.here.as_str())
    }
}

/// The problem answered for a call whose data is kept in `region`, which did not answer:
/// nobody else may act for it.
pub fn region_unavailable(region: &Region, detail: String) -> vitrine_core::Problem {
    vitrine_core::Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "region-unavailable",
        "region unavailable",
    )
    .with_detail(format!("{detail} (region {region}); retry later"))
}

/// Paths that are never sent to another region: the node's own (health, metrics, the cluster's
/// operator routes and relays) and the pages' static files.
fn node_local(path: &str) -> bool {
    ["/healthz", "/metrics", "/admin/", "/internal/", "/static/"]
        .iter()
        .any(|p| path == p.trim_end_matches('/') || path.starts_with(p))
}

/// Where a request belongs.
#[derive(Debug)]
pub enum Home<'a> {
    Here,
    There(&'a Region, &'a RegionInfo),
    /// A new order: its product's region, named in the body.
    OfTheProduct,
}

/// Where a request belongs (see the module's rules): the first path segment with a region tag
/// decides (this region's own tag keeps it here), then the bearer credential, except for a
/// new order, which its product decides.
pub fn home_of<'a>(
    regions: &'a Regions,
    method: &Method,
    path: &str,
    bearer: Option<&str>,
) -> Home<'a> {
    if node_local(path) {
        return Home::Here;
    }
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if let Some((region, info)) = regions.elsewhere(segment) {
            return Home::There(region, info);
        }
        if regions.is_local(segment) {
            return Home::Here;
        }
    }
    if method == Method::POST && path == "/api/v1/orders" {
        return Home::OfTheProduct;
    }
    match bearer.and_then(|b| regions.elsewhere(b)) {
        Some((region, info)) => Home::There(region, info),
        None => Home::Here,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use vitrine_core::{OrderId, ProductId, Secret, StreamId};

    pub(super) fn regions(here: &str) -> Regions {
        let file = ["eu", "us"]
            .into_iter()
            .map(|r| {
                (
                    r.to_owned(),
                    FileRegion {
                        database_url: format!("postgres://db-{r}/vitrine"),
                        public_url: format!("https://{r}.example/"),
                    },
                )
            })
            .collect();
        let secret = secret_file(32);
        Regions::resolve(Some(here.into()), file, Some(secret.path().into()))
            .unwrap()
            .unwrap()
    }

    pub(super) fn secret_file(bytes: usize) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![9u8; bytes]).unwrap();
        file
    }

    /// The other region a request belongs to; "product" for a new order.
    fn home(regions: &Regions, method: Method, path: &str, bearer: Option<&str>) -> Option<String> {
        match home_of(regions, &method, path, bearer) {
            Home::Here => None,
            Home::There(region, _) => Some(region.to_string()),
            Home::OfTheProduct => Some("product".into()),
        }
    }

    #[test]
    fn a_path_id_decides_before_the_credential() {
        let eu = regions("eu");
        let us = Region::parse("us").unwrap();
        let us_stream = StreamId::generate_in(Some(&us));
        let eu_token = Secret::generate("bt_eu");
        let us_token = Secret::generate("vt_us");
        let watch = format!("/watch/{us_stream}");
        assert_eq!(home(&eu, Method::GET, &watch, None).as_deref(), Some("us"));
        let order = format!("/api/v1/orders/{}", OrderId::generate_in(Some(&us)));
        let buyer = Some(eu_token.expose());
        assert_eq!(home(&eu, Method::GET, &order, buyer).as_deref(), Some("us"));
        // This region's own id keeps a request here whatever the credential says.
        let local = format!(
            "/api/v1/products/{}",
            ProductId::generate_in(Some(&eu.here))
        );
        let seller = Some(us_token.expose());
        assert_eq!(home(&eu, Method::GET, &local, seller), None);
        assert_eq!(
            home(&eu, Method::GET, "/api/v1/products", seller).as_deref(),
            Some("us")
        );
        // A buyer's own resources go home; a new order is its product's to decide.
        let us_buyer = Secret::generate("bt_us");
        let buyer = Some(us_buyer.expose());
        assert_eq!(
            home(&eu, Method::GET, "/api/v1/orders", buyer).as_deref(),
            Some("us")
        );
        assert_eq!(
            home(&eu, Method::POST, "/api/v1/orders", buyer).as_deref(),
            Some("product")
        );
    }

    #[test]
    fn untagged_unknown_and_node_local_requests_stay() {
        let eu = regions("eu");
        let untagged = format!("/watch/{}", StreamId::generate());
        assert_eq!(home(&eu, Method::GET, &untagged, None), None);
        let mars = format!(
            "/watch/{}",
            StreamId::generate_in(Region::parse("mars").ok().as_ref())
        );
        assert_eq!(home(&eu, Method::GET, &mars, None), None);
        let us = Region::parse("us").unwrap();
        let relay = format!("/internal/relay/{}", StreamId::generate_in(Some(&us)));
        assert_eq!(home(&eu, Method::GET, &relay, None), None);
        assert_eq!(home(&eu, Method::GET, "/healthz", Some("vt_us_00")), None);
    }

    #[test]
    fn bad_region_tables_are_refused() {
        let one = |name: &str, url: &str| {
            BTreeMap::from([(
                name.to_owned(),
                FileRegion {
                    database_url: "sqlite::memory:".into(),
                    public_url: url.into(),
                },
            )])
        };
        let secret = secret_file(32);
        let key = || Some(PathBuf::from(secret.path()));
        let eu = || Some("eu".to_owned());
        assert!(Regions::resolve(eu(), one("eu", "https://x"), key()).is_ok());
        assert!(Regions::resolve(eu(), one("EU", "https://x"), key()).is_err());
        assert!(Regions::resolve(eu(), one("eu", "ftp://x"), key()).is_err());
        assert!(Regions::resolve(None, one("eu", "https://x"), key()).is_err());
        assert!(Regions::resolve(Some("us".into()), one("eu", "https://x"), key()).is_err());
        assert!(
            Regions::resolve(None, BTreeMap::new(), None)
                .unwrap()
                .is_none()
        );
        // The shared secret: needed, long enough, and only with regions.
        let err = |r: anyhow::Result<Option<Regions>>| format!("{:#}", r.unwrap_err());
        assert!(
            err(Regions::resolve(eu(), one("eu", "https://x"), None))
                .contains("regions_secret_file")
        );
        let short = secret_file(31);
        let short = Some(PathBuf::from(short.path()));
        assert!(err(Regions::resolve(eu(), one("eu", "https://x"), short)).contains("32 bytes"));
        assert!(err(Regions::resolve(None, BTreeMap::new(), key())).contains("without [regions]"));
    }
}
