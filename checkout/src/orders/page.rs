//! `GET /api/v1/orders`: filters and keyset pagination over a buyer's or a seller's orders.

use super::Orders;
use super::{ORDER_COLUMNS, Order, OrderBody, order_from_row};
use crate::db::sql;
use crate::error::CheckoutError;
use crate::order_state::OrderStatus;
use serde::{Deserialize, Serialize};
use vitrine_core::{BuyerId, OrderId, ProductId, SellerId, StreamId};

/// Filters and a page of `GET /api/v1/orders`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this state
    #[param(inline)]
    pub status: Option<OrderStatus>,
    /// Only orders placed through this stream
    #[param(inline)]
    pub stream_id: Option<StreamId>,
    /// Only orders of this product
    #[param(inline)]
    pub product_id: Option<ProductId>,
    /// Created at or after (RFC 3339, UTC)
    #[param(inline)]
    pub created_since: Option<vitrine_core::Timestamp>,
    /// Created before (RFC 3339, UTC)
    #[param(inline)]
    pub created_before: Option<vitrine_core::Timestamp>,
    /// Orders per page
    #[param(minimum = 1, maximum = 200, default = 200)]
    pub limit: Option<i64>,
    /// The previous page's next_cursor
    pub cursor: Option<String>,
}

/// One page of orders, newest first; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderBody>,
    /// Absent on the last page
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

impl OrderPage {
    /// The page of `q` over several disjoint sets of orders (one per region), from each set's
    /// page of the same query: the newest of them, continuing after the last one kept. Exact,
    /// because every set's page holds all of its orders that can be among the newest.
    pub fn merge(pages: Vec<OrderPage>, q: &OrderQuery) -> Result<OrderPage, CheckoutError> {
        let limit = page_limit(q)? as usize;
        let more = pages.iter().any(|p| p.next_cursor.is_some());
        let mut orders: Vec<OrderBody> = pages.into_iter().flat_map(|p| p.orders).collect();
        orders.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(first(orders, limit, more))
    }
}

/// The first `limit` of `orders` (newest first) as a page that continues after the last one
/// kept when there were more, or when `more` says there are more elsewhere.
fn first(mut orders: Vec<OrderBody>, limit: usize, more: bool) -> OrderPage {
    let more = more || orders.len() > limit;
    orders.truncate(limit);
    let next_cursor = if more {
        orders.last().map(cursor_of)
    } else {
        None
    };
    OrderPage {
        orders,
        next_cursor,
    }
}

/// A page's size: 200 by default, the page size this list had before it took a limit.
fn page_limit(q: &OrderQuery) -> Result<i64, CheckoutError> {
    match q.limit {
        None => Ok(200),
        Some(n @ 1..=200) => Ok(n),
        Some(_) => Err(CheckoutError::Invalid("limit must be 1 to 200".into())),
    }
}

/// The position after an order in newest-first order, opaque to clients.
fn cursor_of(order: &OrderBody) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}.{}", order.created_at, order.id))
}

fn parse_cursor(raw: &str) -> Result<(i64, OrderId), CheckoutError> {
    use base64::Engine;
    let bad = || CheckoutError::Invalid("cursor: not one this API returned".into());
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        OrderId::parse(id).map_err(|_| bad())?,
    ))
}

/// A value bound to a query, in placeholder order.
enum Arg {
    Text(String),
    Number(i64),
}

impl Orders {
    /// A page of the orders of a buyer or a seller, newest first, filtered. Keyset pagination:
    /// the cursor is the last order's (created_at, id), so pages stay stable while orders arrive.
    pub async fn orders_page(
        &self,
        owner: OrderOwner<'_>,
        q: &OrderQuery,
    ) -> Result<OrderPage, CheckoutError> {
        let limit = page_limit(q)?;
        let orders = self.orders_after(owner, q, limit + 1).await?;
        let bodies = orders.iter().map(OrderBody::from).collect();
        // One more than a page was fetched: whether there are more.
        Ok(first(bodies, limit as usize, false))
    }

    /// Up to `limit` orders of the query, newest first.
    pub(crate) async fn orders_after(
        &self,
        owner: OrderOwner<'_>,
        q: &OrderQuery,
        limit: i64,
    ) -> Result<Vec<Order>, CheckoutError> {
        let mut clauses = vec![];
        let mut args = vec![];
        let mut add = |sql: &str, values: Vec<Arg>| {
            let mut sql = sql.to_owned();
            for v in values {
                args.push(v);
                sql = sql.replacen('?', &format!("${}", args.len()), 1);
            }
            clauses.push(sql);
        };
        match owner {
            OrderOwner::Buyer(b) => add("buyer_id = ?", vec![Arg::Text(b.as_str().into())]),
            OrderOwner::Seller(s) => add("seller_id = ?", vec![Arg::Text(s.as_str().into())]),
        }
        if let Some(s) = q.status {
            add("status = ?", vec![Arg::Text(s.as_str().into())]);
        }
        if let Some(s) = &q.stream_id {
            add("stream_id = ?", vec![Arg::Text(s.as_str().into())]);
        }
        if let Some(p) = &q.product_id {
            add("product_id = ?", vec![Arg::Text(p.as_str().into())]);
        }
        if let Some(t) = q.created_since {
            add("created_at >= ?", vec![Arg::Number(t.millis())]);
        }
        if let Some(t) = q.created_before {
            add("created_at < ?", vec![Arg::Number(t.millis())]);
        }
        if let Some(c) = &q.cursor {
            let (at, id) = parse_cursor(c)?;
            add(
                "(created_at < ? OR (created_at = ? AND id < ?))",
                vec![
                    Arg::Number(at),
                    Arg::Number(at),
                    Arg::Text(id.as_str().into()),
                ],
            );
        }
        add("1 = 1 LIMIT ?", vec![Arg::Number(limit)]);
        let (filters, tail) = clauses.split_at(clauses.len() - 1);
        let query = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE {} ORDER BY created_at DESC, id DESC {}",
            filters.join(" AND "),
            tail[0].trim_start_matches("1 = 1 ")
        );
        let mut sqlq = sqlx::query(sql(query));
        for a in args {
            sqlq = match a {
                Arg::Text(t) => sqlq.bind(t),
                Arg::Number(n) => sqlq.bind(n),
            };
        }
        let rows = sqlq.fetch_all(&self.pool).await?;
        rows.iter().map(order_from_row).collect()
    }
}

/// Whose orders a page lists.
#[derive(Debug, Clone, Copy)]
pub enum OrderOwner<'a> {
    Buyer(&'a BuyerId),
    Seller(&'a SellerId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::wire::tests::paid_at;

    /// Pages of one query over three regions, merged, walk every order once, newest first,
    /// whatever the page size.
    #[test]
    fn merged_pages_walk_every_region_once_newest_first() {
        let regions: Vec<Vec<OrderBody>> = [[9, 5, 4, 1].as_slice(), &[8, 7, 3], &[6, 2]]
            .iter()
            .map(|times| {
                times
                    .iter()
                    .map(|t| OrderBody::from(&paid_at(1_000 + t)))
                    .collect()
            })
            .collect();
        // One region's page of `q`, as `orders_page` makes it.
        let page_of = |orders: &[OrderBody], q: &OrderQuery| {
            let after = q.cursor.as_deref().map(|c| parse_cursor(c).unwrap());
            let limit = page_limit(q).unwrap() as usize;
            let mut left: Vec<OrderBody> = orders
                .iter()
                .filter(|o| {
                    after
                        .as_ref()
                        .is_none_or(|(at, id)| (o.created_at, &o.id) < (*at, id))
                })
                .cloned()
                .collect();
            let more = left.len() > limit;
            left.truncate(limit);
            let next_cursor = more.then(|| left.last().map(cursor_of)).flatten();
            OrderPage {
                orders: left,
                next_cursor,
            }
        };
        for limit in 1..=10 {
            let mut q = OrderQuery {
                limit: Some(limit),
                ..Default::default()
            };
            let mut seen = vec![];
            loop {
                let pages = regions.iter().map(|r| page_of(r, &q)).collect();
                let page = OrderPage::merge(pages, &q).unwrap();
                assert!(page.orders.len() <= limit as usize);
                seen.extend(page.orders.iter().map(|o| o.created_at - 1_000));
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen, [9, 8, 7, 6, 5, 4, 3, 2, 1], "limit {limit}");
        }
        let q = OrderQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert!(OrderPage::merge(vec![], &q).is_err());
    }
}
