//! What each pin had left after this node's last reservation through it, so that a purchase
//! announced when its payment settles tells the room a current figure without reading the
//! database again. Bounded: a node that has seen very many pins forgets them all and learns
//! again from the next reservation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use vitrine_core::PinId;

/// Most pins remembered.
const MAX_PINS: usize = 10_000;

#[derive(Clone, Default)]
pub(crate) struct Availability(Arc<Mutex<HashMap<PinId, i64>>>);

impl Availability {
    pub(crate) fn set(&self, pin: &PinId, available: i64) {
        let mut pins = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pins.len() >= MAX_PINS && !pins.contains_key(pin) {
            pins.clear();
        }
        pins.insert(pin.clone(), available);
    }

    pub(crate) fn get(&self, pin: &PinId) -> Option<i64> {
        let pins = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        pins.get(pin).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_figure_per_pin_is_kept_and_the_table_stays_bounded() {
        let a = Availability::default();
        let pin = |i: usize| PinId::parse(&format!("pin_{i}")).unwrap();
        a.set(&pin(0), 5);
        a.set(&pin(0), 4);
        assert_eq!(a.get(&pin(0)), Some(4));
        for i in 1..MAX_PINS {
            a.set(&pin(i), 1);
        }
        assert_eq!(a.get(&pin(0)), Some(4));
        a.set(&pin(MAX_PINS), 7);
        assert_eq!(a.get(&pin(0)), None);
        assert_eq!(a.get(&pin(MAX_PINS)), Some(7));
    }
}
