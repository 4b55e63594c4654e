//! The developer platform: third-party apps (OAuth2 clients) and their seller grants, sellers'
//! API keys in test and live mode, the OAuth2 authorization server's state machine
//! (authorization codes with PKCE, access and rotating refresh tokens, revocation), and sellers'
//! browser sessions for the consent page and the portal.
//!
//! Everything is SQL through the sqlx Any pool the server already has, so it runs on SQLite and
//! PostgreSQL alike; every secret is stored as its SHA-256 only. HTTP lives in the binary: this
//! crate takes parsed requests and answers with values and typed errors.

pub mod apps;
pub mod keys;
pub mod oauth;
pub mod pkce;
pub mod ratelimit;
pub mod redirect;
pub mod scope;
pub mod sessions;

pub use apps::{App, AppPatch, ClientType, NewApp};
pub use keys::{ApiKey, KeyPrincipal, Mode, NewApiKey};
pub use oauth::{AccessGrant, OAuthError};
pub use scope::{Scope, Scopes};

use sqlx::AnyPool;
use vitrine_core::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> PlatformError {
    PlatformError::Corrupt(e.to_string())
}

/// The platform's store; cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub(crate) pool: AnyPool,
    /// This node's region in a deployment of several: keys and tokens made here carry it.
    pub(crate) home: Option<vitrine_core::Region>,
}

impl Platform {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool, home: None }
    }

    /// Tags the keys and tokens made from now on with `home` (see `vitrine_core::region`).
    pub fn with_home(mut self, home: Option<vitrine_core::Region>) -> Self {
        self.home = home;
        self
    }

    /// Runs the platform's migrations (versions 0300 and up) on a pool of either backend: the
    /// same SQL on both (see [`vitrine_core::migrations`]).
    pub async fn migrate(pool: &AnyPool, _sqlite: bool) -> Result<(), PlatformError> {
        vitrine_core::migrations::merged(&sqlx::migrate!("./migrations/common"), None)?
            .run(pool)
            .await?;
        Ok(())
    }
}

pub(crate) fn now() -> i64 {
    Timestamp::now().millis()
}

/// Checks a human-given name: trimmed, non-empty, at most `max` characters.
pub(crate) fn valid_name(raw: &str, max: usize, what: &str) -> Result<String, PlatformError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(char::is_control) {
        return Err(PlatformError::Invalid(format!(
            "{what} must be 1 to {max} printable characters"
        )));
    }
    Ok(name.to_owned())
}
