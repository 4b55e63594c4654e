//! Sharing out what a batch of reservations found, sans IO: the product's stock and each pin's
//! quantity cap as read under their row locks, handed to the batch's requests in the order they
//! arrived. A request that does not fit is refused and takes nothing; a later, smaller one may
//! still fit (one unit left serves the next buyer of one, not a buyer of two).

use crate::error::{RejectKind, Rejection};
use crate::orders::reject;
use std::collections::HashMap;
use vitrine_core::PinId;

/// A pin's state under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinLeft {
    /// What is left of the cap; `None`: no cap.
    pub remaining: Option<i64>,
    /// Active and not past its end.
    pub open: bool,
}

/// One request of the batch: through which pin, how many units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    pub pin: Option<PinId>,
    pub quantity: i64,
}

/// The batch's shares: per request, the units still available after it (what the room is told)
/// or why it was refused; and what the batch takes in all, from the product and from each pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shares {
    pub each: Vec<Result<i64, Rejection>>,
    pub from_stock: i64,
    pub from_pins: HashMap<PinId, i64>,
}

/// Shares `stock` (none when the product is archived) and the pins among `wants`, in order.
pub(crate) fn allocate(
    stock: Option<i64>,
    pins: &HashMap<PinId, PinLeft>,
    wants: &[Want],
) -> Shares {
    let mut left = stock.unwrap_or(0);
    let mut pins_left: HashMap<&PinId, Option<i64>> =
        pins.iter().map(|(id, p)| (id, p.remaining)).collect();
    let mut from_pins: HashMap<PinId, i64> = HashMap::new();
    let mut each = Vec::with_capacity(wants.len());
    for want in wants {
        let pin = want.pin.as_ref().map(|id| (id, pins.get(id)));
        if let Some((_, state)) = &pin
            && !state.is_some_and(|s| s.open)
        {
            each.push(Err(reject(RejectKind::SaleEnded, "the sale has ended")));
            continue;
        }
        if stock.is_none() || want.quantity > left {
            each.push(Err(reject(RejectKind::SoldOut, "sold out")));
            continue;
        }
        let cap = pin.and_then(|(id, _)| pins_left.get(id).copied().flatten());
        if cap.is_some_and(|c| want.quantity > c) {
            each.push(Err(reject(
                RejectKind::SoldOut,
                "the sale's quantity is sold out",
            )));
            continue;
        }
        left -= want.quantity;
        let mut available = left;
        if let Some((id, _)) = pin {
            *from_pins.entry(id.clone()).or_default() += want.quantity;
            if let Some(Some(c)) = pins_left.get_mut(id) {
                *c -= want.quantity;
                available = available.min(*c);
            }
        }
        each.push(Ok(available.max(0)));
    }
    Shares {
        each,
        from_stock: stock.map_or(0, |s| s - left),
        from_pins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(n: &str) -> PinId {
        PinId::parse(&format!("pin_{n}")).unwrap()
    }

    fn want(pin: Option<&PinId>, quantity: i64) -> Want {
        Want {
            pin: pin.cloned(),
            quantity,
        }
    }

    fn kinds(shares: &Shares) -> Vec<Result<i64, RejectKind>> {
        shares
            .each
            .iter()
            .map(|r| r.as_ref().map(|a| *a).map_err(|e| e.kind))
            .collect()
    }

    #[test]
    fn the_stock_goes_to_the_requests_in_order_and_a_smaller_one_may_still_fit() {
        let shares = allocate(
            Some(3),
            &HashMap::new(),
            &[want(None, 2), want(None, 2), want(None, 1), want(None, 1)],
        );
        assert_eq!(
            kinds(&shares),
            vec![
                Ok(1),
                Err(RejectKind::SoldOut),
                Ok(0),
                Err(RejectKind::SoldOut)
            ]
        );
        assert_eq!(shares.from_stock, 3);
    }

    #[test]
    fn a_pin_cap_binds_before_the_stock_and_is_counted_per_pin() {
        let (a, b) = (pin("a"), pin("b"));
        let pins = HashMap::from([
            (
                a.clone(),
                PinLeft {
                    remaining: Some(1),
                    open: true,
                },
            ),
            (
                b.clone(),
                PinLeft {
                    remaining: None,
                    open: true,
                },
            ),
        ]);
        let shares = allocate(
            Some(10),
            &pins,
            &[want(Some(&a), 1), want(Some(&a), 1), want(Some(&b), 4)],
        );
        assert_eq!(kinds(&shares), vec![Ok(0), Err(RejectKind::SoldOut), Ok(5)]);
        assert_eq!(
            shares.each[1].as_ref().unwrap_err().detail,
            "the sale's quantity is sold out"
        );
        assert_eq!(shares.from_stock, 5);
        assert_eq!(shares.from_pins, HashMap::from([(a, 1), (b, 4)]));
    }

    #[test]
    fn a_closed_or_vanished_pin_ends_the_sale_and_an_archived_product_sells_nothing() {
        let a = pin("a");
        let pins = HashMap::from([(
            a.clone(),
            PinLeft {
                remaining: None,
                open: false,
            },
        )]);
        let shares = allocate(
            Some(5),
            &pins,
            &[want(Some(&a), 1), want(Some(&pin("x")), 1)],
        );
        assert_eq!(
            kinds(&shares),
            vec![Err(RejectKind::SaleEnded), Err(RejectKind::SaleEnded)]
        );
        let archived = allocate(None, &HashMap::new(), &[want(None, 1)]);
        assert_eq!(kinds(&archived), vec![Err(RejectKind::SoldOut)]);
        assert_eq!(archived.from_stock, 0);
    }
}
