//! Sellers' browser sessions, for the pages where a seller acts in person: the OAuth2 consent
//! page and the developer portal. A session is a random cookie value stored hashed; forms carry
//! a CSRF token derived from it, which a page on another origin cannot compute because it
//! cannot read the cookie.

use crate::{Platform, PlatformError, corrupt, now};
use sha2::{Digest, Sha256};
use sqlx::Row;
use vitrine_core::{Secret, SellerId};

/// How long a sign-in lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// The cookie's name.
pub const COOKIE: &str = "vitrine_session";

impl Platform {
    /// Starts a session for `seller`; the secret goes into the cookie.
    pub async fn start_session(&self, seller: &SellerId) -> Result<Secret, PlatformError> {
        let secret = Secret::generate("vss");
        let now = now();
        // Expired sessions are cleared as new ones start: sign-ins are rare, so this is cheap.
        sqlx::query("DELETE FROM seller_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO seller_sessions (session_hash, seller_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(secret.hash().0)
        .bind(seller.as_str())
        .bind(now)
        .bind(now + SESSION_TTL_MS)
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }

    /// The seller signed in with this session, if it is current.
    pub async fn session_seller(&self, secret: &Secret) -> Result<Option<SellerId>, PlatformError> {
        let row = sqlx::query(
            "SELECT seller_id FROM seller_sessions WHERE session_hash = $1 AND expires_at > $2",
        )
        .bind(secret.hash().0)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| SellerId::parse(&r.try_get::<String, _>(0)?).map_err(corrupt))
            .transpose()
    }

    /// Ends every browser session of `seller` (its account token was rotated: whoever signed
    /// in with the old one must not stay signed in). Returns how many were ended.
    pub async fn end_sessions_of(&self, seller: &SellerId) -> Result<u64, PlatformError> {
        let done = sqlx::query("DELETE FROM seller_sessions WHERE seller_id = $1")
            .bind(seller.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn end_session(&self, secret: &Secret) -> Result<(), PlatformError> {
        sqlx::query("DELETE FROM seller_sessions WHERE session_hash = $1")
            .bind(secret.hash().0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The cookie of the sign-in form's nonce: the form carries the CSRF token derived from it,
/// so that another site cannot post its own token to `/signin` and sign a victim's browser in
/// to the attacker's account (login CSRF). SameSite=Strict: a cross-site post never carries it.
pub const SIGNIN_COOKIE: &str = "vitrine_signin";

/// A fresh sign-in nonce for [`SIGNIN_COOKIE`]; its form token is [`csrf_token`] of it.
pub fn signin_nonce() -> Secret {
    Secret::generate("vsn")
}

/// The CSRF token of a session's forms.
pub fn csrf_token(session: &Secret) -> String {
    hex::encode(&Sha256::digest(format!("csrf:{}", session.expose()).as_bytes())[..16])
}

/// Whether a form's token belongs to this session (constant-time compare).
pub fn csrf_matches(session: &Secret, presented: &str) -> bool {
    vitrine_core::constant_time_eq(csrf_token(session).as_bytes(), presented.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let (a, b) = (Secret::generate("vss"), Secret::generate("vss"));
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert!(!csrf_token(&a).contains(a.expose()));
    }
}
