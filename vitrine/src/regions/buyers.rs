//! Buyers by token: this region's from its database; another region's asked of their home
//! (`GET /api/v1/buyers/me` with the buyer's own token); either remembered for a minute.

use super::{Homes, RegionInfo};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vitrine_checkout::{Buyer, Checkout, CheckoutError};
use vitrine_core::{BuyerId, Region, Secret, SecretHash};

/// The home region's route that says who a buyer token belongs to.
const ME: &str = "/api/v1/buyers/me";
/// How long a buyer, once found (here, or confirmed by their home region), is known without
/// asking again. Buyer tokens are not revocable today; should they become so, this is how much
/// longer a revoked one may be taken.
const BUYER_TTL: Duration = Duration::from_secs(60);
/// Most buyers remembered at once.
const BUYER_CACHE: usize = 10_000;

/// Buyers by token, wherever their home is.
#[derive(Clone)]
pub struct Buyers {
    checkout: Checkout,
    homes: Option<Homes>,
    /// Buyers found recently, by token hash.
    known: Arc<Mutex<HashMap<String, (Buyer, Instant)>>>,
}

/// `GET /api/v1/buyers/me`'s body, as the home region answers it.
#[derive(Deserialize)]
struct Me {
    buyer_id: BuyerId,
    display_name: String,
}

impl Buyers {
    pub fn new(checkout: Checkout, homes: Option<Homes>) -> Self {
        Self {
            checkout,
            homes,
            known: Arc::default(),
        }
    }

    /// The buyer a token belongs to: here, or in the region its tag names (asked on behalf of
    /// the caller at `caller`). A token once found is remembered for a minute: a buyer's row
    /// never changes and a buyer token is never revoked, so every order of a flash sale need
    /// not read it again.
    pub async fn by_token(
        &self,
        token: &Secret,
        caller: IpAddr,
    ) -> Result<Option<Buyer>, CheckoutError> {
        let hash = token.hash();
        if let Some(buyer) = self.remembered(&hash) {
            return Ok(Some(buyer));
        }
        let elsewhere = self
            .homes
            .as_ref()
            .and_then(|homes| Some((homes, homes.regions.elsewhere(token.expose())?)));
        let buyer = match elsewhere {
            Some((homes, (region, info))) => ask_home(homes, region, info, token, caller).await?,
            None => self.checkout.catalog().buyer_by_token(token).await?,
        };
        if let Some(buyer) = &buyer {
            self.remember(hash, buyer.clone());
        }
        Ok(buyer)
    }

    fn remembered(&self, hash: &SecretHash) -> Option<Buyer> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let (buyer, at) = known.get(&hash.0)?;
        (at.elapsed() < BUYER_TTL).then(|| buyer.clone())
    }

    fn remember(&self, hash: SecretHash, buyer: Buyer) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= BUYER_CACHE {
            known.retain(|_, (_, at)| at.elapsed() < BUYER_TTL);
            // Full of live entries: start over rather than scan again on every miss.
            if known.len() >= BUYER_CACHE {
                known.clear();
            }
        }
        known.insert(hash.0, (buyer, Instant::now()));
    }
}

/// Asks the buyer's home region, with the buyer's own token, who they are; `None` when it
/// does not know the token.
#[tracing::instrument(skip_all, fields(region = %region))]
async fn ask_home(
    homes: &Homes,
    region: &Region,
    info: &RegionInfo,
    token: &Secret,
    caller: IpAddr,
) -> Result<Option<Buyer>, CheckoutError> {
    let unavailable = |e: String| {
        tracing::warn!(region = %region, error = %e, "a buyer's home region did not answer");
        CheckoutError::Unavailable(format!("the buyer's home region {region} did not answer"))
    };
    let response = homes
        .http
        .get(format!("{}{ME}", info.public_url))
        .headers(homes.vouching(caller, &axum::http::Method::GET, ME))
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|e| unavailable(e.without_url().to_string()))?;
    match response.status() {
        StatusCode::OK => {
            let me: Me = response
                .json()
                .await
                .map_err(|e| unavailable(e.without_url().to_string()))?;
            Ok(Some(Buyer {
                id: me.buyer_id,
                display_name: me.display_name,
            }))
        }
        StatusCode::UNAUTHORIZED => Ok(None),
        other => Err(unavailable(format!("status {other}"))),
    }
}
