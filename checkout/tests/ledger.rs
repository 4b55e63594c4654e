//! The sellers' ledger under concurrency, on SQLite and PostgreSQL: a burst of orders, refunds
//! and payouts (standard and instant, some refused by the sandbox rail) leaves every currency's
//! postings summing to zero and every balance equal to its postings; a race of payouts never
//! takes more than the available balance; fees and the balance add up to the cent.

use futures::future::join_all;
use std::time::Duration;
use vitrine_checkout::db::Backend;
use vitrine_checkout::payouts::{NewPayout, PayoutMethod, PayoutStatus};
use vitrine_checkout::testing::{TestDatabase, fresh_checkout};
use vitrine_checkout::{Checkout, CheckoutError, NewProduct, OrderResult};
use vitrine_core::{Currency, Money, SellerId};

struct Shop {
    checkout: Checkout,
    seller: SellerId,
    _db: TestDatabase,
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

async fn shop(backend: Backend) -> Shop {
    let (checkout, db) = fresh_checkout(backend, Duration::from_millis(10))
        .await
        .unwrap();
    Shop {
        checkout,
        seller: SellerId::generate(),
        _db: db,
    }
}

impl Shop {
    /// Places one paid order of `product` and returns its id.
    async fn sell(
        &self,
        product: &vitrine_core::ProductId,
        n: usize,
    ) -> Option<vitrine_core::OrderId> {
        let (buyer, _) = self
            .checkout
            .catalog()
            .create_buyer(&format!("Buyer {n}"))
            .await
            .unwrap();
        let new = vitrine_checkout::testing::one_unit_of(product);
        match self
            .checkout
            .sale()
            .place_order(&buyer.id, &format!("k{n}"), new)
            .await
            .unwrap()
            .result
        {
            OrderResult::Created(o) => Some(o.id),
            OrderResult::Rejected(r) => panic!("order refused: {r:?}"),
        }
    }

    /// A product of the shop's seller, priced in euro cents.
    async fn product(
        &self,
        sku: &str,
        title: &str,
        cents: i64,
        stock: i64,
    ) -> vitrine_checkout::Product {
        let new = NewProduct {
            sku: sku.into(),
            title: title.into(),
            description: String::new(),
            image_url: None,
            price: eur(cents),
            stock,
        };
        self.checkout
            .catalog()
            .create_product(&self.seller, new)
            .await
            .unwrap()
    }

    async fn available(&self) -> i64 {
        let b = self.checkout.orders().balances(&self.seller).await.unwrap();
        b.iter()
            .find(|b| b.currency.as_str() == "EUR")
            .map_or(0, |b| b.available)
    }

    /// What the seller owes (refunds beyond the available balance).
    async fn debt(&self) -> i64 {
        let b = self.checkout.orders().balances(&self.seller).await.unwrap();
        b.iter()
            .find(|b| b.currency.as_str() == "EUR")
            .map_or(0, |b| b.debt)
    }

    async fn balanced(&self) {
        let problems = self.checkout.orders().ledger_check().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
}

async fn a_burst_keeps_the_ledger_balanced(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product("TEE", "Tee", 2500, 500).await;
    // 30 sales: each 25.00 less the fee of 0.73 + 0.30.
    let first: Vec<_> = join_all((0..30).map(|n| s.sell(&product.id, n))).await;
    let sold: Vec<_> = first.into_iter().flatten().collect();
    assert_eq!(sold.len(), 30);
    assert_eq!(s.available().await, 30 * (2500 - 103));
    s.balanced().await;

    // A transfer of 40.13 is refused by the sandbox rail ("account_closed"): it comes back.
    let refused = s
        .checkout
        .payouts()
        .request_payout(
            &s.seller,
            Some("refused"),
            NewPayout {
                amount: eur(4013),
                method: PayoutMethod::Standard,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused.status, PayoutStatus::Failed);
    assert_eq!(refused.failure.as_deref(), Some("account_closed"));
    assert_eq!(s.available().await, 30 * (2500 - 103));

    // Orders, refunds and payouts all at once.
    let sales = join_all((30..50).map(|n| s.sell(&product.id, n)));
    let refunds = join_all(
        sold[..10]
            .iter()
            .map(|id| s.checkout.payments().refund(&s.seller, id)),
    );
    let payouts = join_all((0..30).map(|n| {
        let method = if n % 2 == 0 {
            PayoutMethod::Instant
        } else {
            PayoutMethod::Standard
        };
        // 40.13 is refused by the sandbox rail ("account_closed"), and comes back.
        let amount = if n % 10 == 3 { 4013 } else { 4000 };
        let key = format!("p{n}");
        let checkout = &s.checkout;
        let seller = &s.seller;
        async move {
            checkout
                .payouts()
                .request_payout(
                    seller,
                    Some(&key),
                    NewPayout {
                        amount: eur(amount),
                        method,
                    },
                )
                .await
        }
    }));
    let (sales, refunds, payouts) = tokio::join!(sales, refunds, payouts);
    assert!(sales.iter().all(Option::is_some));
    assert!(refunds.iter().all(Result::is_ok));
    let mut paid = 0;
    let mut failed = 0;
    for p in &payouts {
        match p {
            Ok(p) if p.status == PayoutStatus::Failed => failed += 1,
            Ok(_) => paid += 1,
            Err(CheckoutError::InsufficientBalance) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(paid > 0, "paid {paid}, failed {failed}");
    s.checkout.payouts().reconcile_payouts().await.unwrap();
    s.balanced().await;

    // What is left adds up: sales less fees, less refunds, less what left for the bank.
    let payouts = s
        .checkout
        .payouts()
        .payouts_of(&s.seller, 200)
        .await
        .unwrap();
    let out: i64 = payouts
        .iter()
        .filter(|p| p.status != PayoutStatus::Failed)
        .map(|p| p.amount.amount)
        .sum();
    // A refund the balance did not cover is owed as debt, never a negative balance.
    let expected = 50 * (2500 - 103) - 10 * 2500 - out;
    assert!(s.available().await >= 0);
    assert_eq!(s.available().await - s.debt().await, expected);
}

async fn racing_payouts_never_overdraw(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product("MUG", "Mug", 10_000, 10).await;
    for n in 0..3 {
        s.sell(&product.id, n).await.unwrap();
    }
    let before = s.available().await;
    assert_eq!(before, 3 * (10_000 - 320));
    // Twenty payouts of a quarter each race for the balance: four fit.
    let quarter = before / 4;
    let results = join_all((0..20).map(|n| {
        let key = format!("race{n}");
        let checkout = &s.checkout;
        let seller = &s.seller;
        async move {
            checkout
                .payouts()
                .request_payout(
                    seller,
                    Some(&key),
                    NewPayout {
                        amount: eur(quarter),
                        method: PayoutMethod::Standard,
                    },
                )
                .await
        }
    }))
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 4);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(CheckoutError::InsufficientBalance)))
    );
    assert_eq!(s.available().await, before - 4 * quarter);
    s.balanced().await;

    // The same Idempotency-Key gives the same payout, not a second one.
    let again = s
        .checkout
        .payouts()
        .request_payout(
            &s.seller,
            Some("race0"),
            NewPayout {
                amount: eur(quarter),
                method: PayoutMethod::Standard,
            },
        )
        .await;
    if let Some(Ok(first)) = results.first() {
        assert_eq!(again.unwrap().id, first.id);
    }
    assert_eq!(s.available().await, before - 4 * quarter);
}

async fn scheduled_payouts_empty_the_balance_once_a_day(backend: Backend) {
    let s = shop(backend).await;
    let product = s.product("CAP", "Cap", 1999, 10).await;
    s.sell(&product.id, 0).await.unwrap();
    let made = s
        .checkout
        .payouts()
        .run_scheduled_payouts(100)
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].amount, eur(1999 - 88));
    assert_eq!(s.available().await, 0);
    assert!(
        s.checkout
            .payouts()
            .run_scheduled_payouts(100)
            .await
            .unwrap()
            .is_empty()
    );
    s.balanced().await;
}

vitrine_checkout::on_both_backends!(
    a_burst_keeps_the_ledger_balanced,
    racing_payouts_never_overdraw,
    scheduled_payouts_empty_the_balance_once_a_day
);
