//! Fresh databases for tests, on both backends. PostgreSQL comes from
//! `VITRINE_TEST_POSTGRES_URL` (a role allowed to create databases; `scripts/services.sh` sets
//! it up); a test without it fails, it never skips.

use crate::db::{Backend, DbError, connect};
use rand::RngCore;

/// A database that exists for one test: a new SQLite file or a new PostgreSQL database.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Result<Self, DbError> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| DbError::Database(e.into()))?;
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Ok(Self {
                    url,
                    backend,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut suffix = [0u8; 6];
                rand::rng().fill_bytes(&mut suffix);
                let name = format!("vt_{}", hex::encode(suffix));
                let (pool, _) = connect(&admin).await?;
                sqlx::query(crate::db::sql(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await?;
                pool.close().await;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                })
            }
        }
    }
}

/// The PostgreSQL URL the tests use; panics with the fix when it is missing.
pub fn postgres_admin_url() -> String {
    std::env::var("VITRINE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "VITRINE_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, or \
             eval \"$(scripts/services.sh start)\" first"
        )
    })
}

/// The Redis URL the tests use; panics with the fix when it is missing.
pub fn redis_url() -> String {
    std::env::var("VITRINE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "VITRINE_TEST_REDIS_URL is not set: run the tests with scripts/test.sh, or \
             eval \"$(scripts/services.sh start)\" first"
        )
    })
}

/// Declares each named `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`, so that a suite runs unchanged on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::db::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::db::Backend::Postgres).await })*
        }
    };
}

/// A checkout on a fresh, migrated database with the sandbox card processor answering after
/// `latency`, its commerce facts written but pumped nowhere; keep the database for the test's length.
pub async fn fresh_checkout(
    backend: Backend,
    latency: std::time::Duration,
) -> Result<(crate::Checkout, TestDatabase), DbError> {
    let db = TestDatabase::create(backend).await?;
    let (pool, backend) = connect(&db.url).await?;
    crate::db::migrate(&pool, backend).await?;
    let payments = std::sync::Arc::new(crate::SandboxProvider::new(pool.clone(), latency));
    let checkout = crate::Checkout::new(pool, payments, crate::CheckoutConfig::default());
    Ok((checkout, db))
}

/// One unit of `product`, paid with the sandbox's approved test card, outside any stream.
pub fn one_unit_of(product: &vitrine_core::ProductId) -> crate::NewOrder {
    crate::NewOrder {
        product_id: product.clone(),
        quantity: 1,
        pin_id: None,
        stream_id: None,
        currency: None,
        payment: crate::orders::PaymentDetails {
            card_number: "4242424242424242".into(),
        },
        source: Default::default(),
        media_ms: None,
    }
}

/// A room that keeps every commerce fact it hears, for a test's assertions (give it to
/// [`crate::Checkout::spawn_fact_pump`]; [`crate::facts::Facts::flush`] before reading).
#[derive(Default)]
pub struct Heard(std::sync::Mutex<Vec<vitrine_core::CommerceEvent>>);

impl vitrine_core::CommerceEvents for Heard {
    fn emit(&self, event: vitrine_core::CommerceEvent) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

impl Heard {
    /// What was heard so far, in order.
    pub fn all(&self) -> Vec<vitrine_core::CommerceEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
