//! What a reserve batch tells the rooms (no IO): what each pin it sold through has left, and,
//! when some order had no pin, what every other stream that shows the product has left.

use crate::error::{CheckoutError, corrupt};
use crate::orders::Order;
use std::collections::HashSet;
use vitrine_core::{CommerceEvent, PinId, StreamId};

/// An active pin of the product: which stream shows it, and its cap's remaining units.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PinShown {
    id: PinId,
    stream: StreamId,
    remaining: Option<i64>,
}

/// Reads `id stream remaining` triples, comma-separated (`-`: no cap), as the lock returns
/// them (no IO).
pub(super) fn pins_shown(text: Option<&str>) -> Result<Vec<PinShown>, CheckoutError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|one| {
            let mut parts = one.split(' ');
            let (Some(id), Some(stream), Some(remaining), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt(format!("an active pin read as {one:?}")));
            };
            Ok(PinShown {
                id: PinId::parse(id).map_err(corrupt)?,
                stream: StreamId::parse(stream).map_err(corrupt)?,
                remaining: match remaining {
                    "-" => None,
                    n => Some(n.parse().map_err(corrupt)?),
                },
            })
        })
        .collect()
}

/// What a batch's pins have left after it, as the rooms hear it (no IO).
#[derive(Debug, Default)]
pub(super) struct Left {
    /// One `stock` fact per pin that shows the product and was moved by the batch.
    pub facts: Vec<CommerceEvent>,
}

/// The last order through a pin carries what that pin has left after the batch. When some
/// order had no pin, every other stream that pins the product hears it too: what its pin had
/// under the product's lock (only a transaction holding that lock moves it), capped by
/// the stock the batch left.
pub(super) fn left_after<'a>(
    taken: impl DoubleEndedIterator<Item = (&'a Order, i64)>,
    stock_left: Option<i64>,
    shown: &[PinShown],
) -> Left {
    let mut left = Left::default();
    let mut told: HashSet<&PinId> = HashSet::new();
    let mut unpinned = None;
    for (order, available) in taken.rev() {
        match (&order.pin_id, &order.stream_id) {
            (Some(pin), Some(stream)) if told.insert(pin) => {
                left.facts.push(CommerceEvent::Stock {
                    stream: stream.clone(),
                    product: order.product_id.clone(),
                    available,
                });
            }
            (Some(_), _) => {}
            (None, _) => unpinned = Some(&order.product_id),
        }
    }
    if let (Some(product), Some(stock)) = (unpinned, stock_left) {
        for pin in shown.iter().filter(|p| !told.contains(&p.id)) {
            let available = pin.remaining.map_or(stock, |r| r.min(stock)).max(0);
            left.facts.push(CommerceEvent::Stock {
                stream: pin.stream.clone(),
                product: product.clone(),
                available,
            });
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::wire::tests::paid_at;

    #[test]
    fn the_lock_reads_back_the_streams_that_show_the_product() {
        let (a, b) = (PinId::generate(), PinId::generate());
        let (s, t) = (StreamId::generate(), StreamId::generate());
        let text = format!("{a} {s} 3,{b} {t} -");
        assert_eq!(
            pins_shown(Some(&text)).unwrap(),
            vec![
                PinShown {
                    id: a,
                    stream: s,
                    remaining: Some(3)
                },
                PinShown {
                    id: b,
                    stream: t,
                    remaining: None
                },
            ]
        );
        assert!(pins_shown(None).unwrap().is_empty());
        assert!(pins_shown(Some("")).unwrap().is_empty());
        assert!(pins_shown(Some("pn_1 two")).is_err());
    }

    /// An order through a pin tells that pin's room what the allocation left; an order without
    /// a pin tells every other room that shows the product, capped by the stock left.
    #[test]
    fn an_order_without_a_pin_is_news_for_every_room_of_the_product() {
        let (through, other, capped) = (PinId::generate(), PinId::generate(), PinId::generate());
        let streams: Vec<StreamId> = (0..3).map(|_| StreamId::generate()).collect();
        let mut pinned = paid_at(1);
        pinned.pin_id = Some(through.clone());
        pinned.stream_id = Some(streams[0].clone());
        let mut unpinned = paid_at(2);
        unpinned.product_id = pinned.product_id.clone();
        let shown = vec![
            PinShown {
                id: through.clone(),
                stream: streams[0].clone(),
                remaining: Some(9),
            },
            PinShown {
                id: other.clone(),
                stream: streams[1].clone(),
                remaining: None,
            },
            PinShown {
                id: capped.clone(),
                stream: streams[2].clone(),
                remaining: Some(2),
            },
        ];
        let left = left_after([(&pinned, 4), (&unpinned, 7)].into_iter(), Some(7), &shown);
        let heard: Vec<(StreamId, i64)> = left
            .facts
            .iter()
            .map(|f| match f {
                CommerceEvent::Stock {
                    stream, available, ..
                } => (stream.clone(), *available),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            heard,
            vec![
                (streams[0].clone(), 4),
                (streams[1].clone(), 7),
                (streams[2].clone(), 2)
            ]
        );
        // Only pinned orders: no other room hears of it.
        let only = left_after([(&pinned, 4)].into_iter(), Some(7), &shown);
        assert_eq!(only.facts.len(), 1);
    }
}
