//! `GET /api/v1/orders`: filters and keyset pagination over a buyer's or a seller's orders.

use super::{ORDER_COLUMNS, Order, order_from_row};
use crate::Checkout;
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Absent on the last page
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// The position after an order in newest-first order, opaque to clients.
fn cursor_of(order: &Order) -> String {
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

impl Checkout {
    /// A page of the orders of a buyer or a seller, newest first, filtered. Keyset pagination:
    /// the cursor is the last order's (created_at, id), so pages stay stable while orders arrive.
    pub async fn orders_page(
        &self,
        owner: OrderOwner<'_>,
        q: &OrderQuery,
    ) -> Result<OrderPage, CheckoutError> {
        // 200 by default: the page size this list had before it took a limit.
        let limit = match q.limit {
            None => 200,
            Some(n @ 1..=200) => n,
            Some(_) => return Err(CheckoutError::Invalid("limit must be 1 to 200".into())),
        };
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
        add("1 = 1 LIMIT ?", vec![Arg::Number(limit + 1)]);
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
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if orders.len() as i64 > limit {
            orders.pop();
            orders.last().map(cursor_of)
        } else {
            None
        };
        Ok(OrderPage {
            orders,
            next_cursor,
        })
    }
}

/// Whose orders a page lists.
#[derive(Debug, Clone, Copy)]
pub enum OrderOwner<'a> {
    Buyer(&'a BuyerId),
    Seller(&'a SellerId),
}
