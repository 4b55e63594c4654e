//! Amounts and currencies as they arrive as text or JSON: ISO 4217 codes, `Money` documents,
//! exchange rates written as decimal strings and whole rate tables, and the conversions a
//! table then performs. No panic, no overflow, and the documented arithmetic holds: a rate
//! prints back to itself, a refund converts to exactly the negative of its sale.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_checkout::fx::{Rate, RateTable};
use vitrine_core::money::{Currency, MAX_AMOUNT, Money};

/// Amounts converted through every table that parses: the edges of the accepted range and a
/// few ordinary prices.
const AMOUNTS: [i64; 7] = [0, 1, 99, 1_999, 123_456_789, MAX_AMOUNT - 1, MAX_AMOUNT];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Currency::parse(text) {
        assert_eq!(c.as_str(), text);
        assert!(c.minor_digits() <= 3);
    }
    if let Ok(money) = serde_json::from_str::<Money>(text) {
        let _ = money.to_string();
        if let Ok(valid) = money.validated() {
            assert!((0..=MAX_AMOUNT).contains(&valid.amount));
            for q in [0, 1, 2, 1000, u32::MAX] {
                if let Ok(total) = valid.times(q) {
                    assert!(total.amount <= MAX_AMOUNT);
                }
            }
            let back = serde_json::to_string(&valid).expect("money serialises");
            assert_eq!(serde_json::from_str::<Money>(&back).ok(), Some(valid));
        }
    }
    if let Ok(rate) = text.parse::<Rate>() {
        assert!(rate.scaled() > 0);
        assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
    }
    if let Ok(table) = RateTable::from_json(text) {
        convert_both_ways(&table);
    }
});

/// Converts every amount between the first few currencies of `table`, sale and refund.
fn convert_both_ways(table: &RateTable) {
    let currencies: Vec<Currency> = table.currencies().take(6).collect();
    for &from in &currencies {
        for &to in &currencies {
            for amount in AMOUNTS {
                let sale = Money {
                    amount,
                    currency: from,
                };
                let refund = Money {
                    amount: -amount,
                    currency: from,
                };
                match (table.convert(sale, to), table.convert(refund, to)) {
                    (Ok(s), Ok(r)) => {
                        assert_eq!(r.amount, -s.amount, "{amount} {from} to {to}");
                        assert!(s.amount.abs() <= MAX_AMOUNT);
                    }
                    (Err(_), Err(_)) => {}
                    (s, r) => panic!("{amount} {from} to {to}: sale {s:?}, refund {r:?}"),
                }
            }
        }
    }
}
