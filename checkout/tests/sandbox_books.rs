//! The sandbox processor's books on a SQLite file of their own: payments made while it kept
//! them in the shared database are carried over once (an order paid before can still be
//! refunded), and new ones land in its own file only.

use std::time::Duration;
use vitrine_checkout::SandboxProvider;
use vitrine_checkout::card::CardNumber;
use vitrine_checkout::db::{Backend, connect, migrate};
use vitrine_checkout::payment::{ChargeRequest, PaymentProvider, PaymentStatus};
use vitrine_checkout::testing::TestDatabase;
use vitrine_core::{Currency, Money};

fn charge(reference: &str) -> ChargeRequest {
    ChargeRequest {
        reference: reference.into(),
        amount: Money::new(1200, Currency::parse("EUR").unwrap()).unwrap(),
        card: CardNumber::parse("4242424242424242").unwrap(),
    }
}

async fn count(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sandbox_payments")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_books_move_to_their_own_file_once_and_stay_there() {
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let (shared, backend) = connect(&db.url).await.unwrap();
    migrate(&shared, backend).await.unwrap();
    let before = SandboxProvider::new(shared.clone(), Duration::ZERO);
    for reference in ["or_old1", "or_old2"] {
        let paid = before.create(&charge(reference)).await.unwrap();
        assert_eq!(paid.status, PaymentStatus::Succeeded);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox-processor.db");
    let own = SandboxProvider::on_own_file(&file, &shared, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(count(own.pool()).await, 2, "carried over");
    let old = own
        .retrieve("or_old1")
        .await
        .unwrap()
        .expect("found in its own books");
    assert_eq!(old.status, PaymentStatus::Succeeded);
    let refunded = own.refund("or_old1", "rf_1").await.unwrap();
    assert_eq!(
        refunded.status,
        PaymentStatus::Refunded,
        "a payment from before is refundable"
    );

    own.create(&charge("or_new")).await.unwrap();
    assert_eq!(count(own.pool()).await, 3);
    assert_eq!(
        count(&shared).await,
        2,
        "new payments land in its own file only"
    );
    // A payment the shared books got later (an older node) is not carried twice over a restart.
    before.create(&charge("or_stray")).await.unwrap();
    let again = SandboxProvider::on_own_file(&file, &shared, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(count(again.pool()).await, 3, "carried over once");
    assert_eq!(
        again.retrieve("or_old1").await.unwrap().unwrap().status,
        PaymentStatus::Refunded,
        "its own books are kept across restarts"
    );
}
