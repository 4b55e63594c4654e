//! Reading orders and the seller's moves of a paid one: fulfil, deliver (refund and cancel
//! involve the processor: [`crate::payments`]).

use super::transition::Change;
use super::{
    MAX_PAGE, ORDER_COLUMNS, Order, OrderOwner, OrderQuery, Orders, Shipment, order_from_row,
};
use crate::db::sql;
use crate::error::CheckoutError;
use crate::order_state::OrderEvent;
use vitrine_core::{BuyerId, OrderId, SellerId};

impl Orders {
    pub(crate) async fn order_by_id(&self, id: &OrderId) -> Result<Order, CheckoutError> {
        let row = sqlx::query(sql(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(order_from_row)
            .transpose()?
            .ok_or(CheckoutError::NotFound("no such order"))
    }

    /// An order its buyer may see.
    pub async fn order_for_buyer(
        &self,
        buyer: &BuyerId,
        id: &OrderId,
    ) -> Result<Order, CheckoutError> {
        let order = self.order_by_id(id).await?;
        if order.buyer_id != *buyer {
            return Err(CheckoutError::NotFound("no such order"));
        }
        Ok(order)
    }

    /// An order its seller may see.
    pub async fn order_for_seller(
        &self,
        seller: &SellerId,
        id: &OrderId,
    ) -> Result<Order, CheckoutError> {
        let order = self.order_by_id(id).await?;
        if order.seller_id != *seller {
            return Err(CheckoutError::NotFound("no such order"));
        }
        Ok(order)
    }

    /// A buyer's newest orders (the first page of [`Orders::orders_page`]).
    pub async fn orders_of_buyer(&self, buyer: &BuyerId) -> Result<Vec<Order>, CheckoutError> {
        self.orders_after(OrderOwner::Buyer(buyer), &OrderQuery::default(), MAX_PAGE)
            .await
    }

    /// A seller's newest orders (the first page of [`Orders::orders_page`]).
    pub async fn orders_of_seller(&self, seller: &SellerId) -> Result<Vec<Order>, CheckoutError> {
        self.orders_after(OrderOwner::Seller(seller), &OrderQuery::default(), MAX_PAGE)
            .await
    }

    /// The seller ships a paid order, with its carrier and tracking number when given.
    pub async fn fulfil(
        &self,
        seller: &SellerId,
        id: &OrderId,
        shipment: Option<&Shipment>,
    ) -> Result<Order, CheckoutError> {
        let order = self.order_for_seller(seller, id).await?;
        let change = Change {
            event: OrderEvent::Fulfil,
            failure: None,
            payment_id: None,
            rejection: None,
            shipment,
            deferral: None,
        };
        self.apply_change(&order, &change)
            .await?
            .ok_or_else(|| CheckoutError::Conflict("the order changed meanwhile; retry".into()))
    }

    /// The seller marks a shipped order delivered.
    pub async fn deliver(&self, seller: &SellerId, id: &OrderId) -> Result<Order, CheckoutError> {
        let order = self.order_for_seller(seller, id).await?;
        self.transition(&order, OrderEvent::Deliver, None, None, None)
            .await?
            .ok_or_else(|| CheckoutError::Conflict("the order changed meanwhile; retry".into()))
    }

    /// Moves a `payment_pending` order's hold to `until` (Unix ms), if it is still waiting.
    pub(crate) async fn hold_until(
        &self,
        order: &Order,
        until: i64,
    ) -> Result<bool, CheckoutError> {
        let moved = sqlx::query(
            "UPDATE orders SET reserved_until = $1 WHERE id = $2 AND status = 'payment_pending'",
        )
        .bind(until)
        .bind(order.id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() == 1)
    }
}
