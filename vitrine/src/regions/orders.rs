//! A buyer's orders across regions. An order is kept in its seller's region, so a buyer who
//! bought abroad has orders in several databases: their home asks every other region for its
//! page of the same query (with the buyer's own token) and merges the pages, which keyset
//! pagination on (created_at, id) makes exact.

use super::Homes;
use crate::api::ApiError;
use axum::http::{HeaderMap, StatusCode};
use vitrine_checkout::{OrderPage, OrderQuery};

/// Set on a region's request for another region's page: that region answers with its own
/// orders only (a buyer's call merely forwarded from another region wants them all).
const THIS_REGION_ONLY: &str = "vitrine-this-region-only";

/// Whether a request is another region's, for this region's orders only.
pub fn this_region_only(headers: &HeaderMap) -> bool {
    headers.contains_key(THIS_REGION_ONLY)
}

/// `local` (this region's page of `q`) merged with every other region's page of the query
/// `raw_query`, asked with the buyer's `token`. A region that does not answer fails the whole
/// page (503): a list that silently misses orders would look complete.
pub async fn everywhere(
    homes: &Homes,
    caller: std::net::IpAddr,
    local: OrderPage,
    token: &str,
    raw_query: Option<&str>,
    q: &OrderQuery,
) -> Result<OrderPage, ApiError> {
    let vouching = homes.vouching(caller, &axum::http::Method::GET, "/api/v1/orders");
    let asks = homes.regions.others().map(|(region, info)| {
        let vouching = vouching.clone();
        async move {
            let url = match raw_query {
                Some(query) => format!("{}/api/v1/orders?{query}", info.public_url),
                None => format!("{}/api/v1/orders", info.public_url),
            };
            let answer = homes
                .http
                .get(url)
                .bearer_auth(token)
                .headers(vouching)
                .header(THIS_REGION_ONLY, "1")
                .send()
                .await;
            match answer {
                Ok(r) if r.status() == StatusCode::OK => r.json::<OrderPage>().await.ok(),
                Ok(r) => {
                    tracing::warn!(region = %region, status = %r.status(), "a region's orders");
                    None
                }
                Err(e) => {
                    let e = e.without_url();
                    tracing::warn!(region = %region, error = %e, "a region's orders");
                    None
                }
            }
            .ok_or(region)
        }
    });
    let mut pages = vec![local];
    for answer in futures::future::join_all(asks).await {
        match answer {
            Ok(page) => pages.push(page),
            Err(region) => {
                let detail = "the buyer's orders kept there could not be read".to_owned();
                return Err(super::region_unavailable(region, detail).into());
            }
        }
    }
    Ok(OrderPage::merge(pages, q)?)
}
