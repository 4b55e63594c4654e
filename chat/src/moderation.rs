//! Moderation state kept in SQL so that it outlives the room log and every shard agrees on it:
//! bans, moderators, slow mode. Changes are also announced on the room log, which is how the
//! other shards learn of them without polling.

use sqlx::{AnyPool, Row};
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};
use vitrine_core::StreamId;

#[derive(Debug, thiserror::Error)]
#[error("moderation store: {0}")]
pub struct ModerationError(#[from] sqlx::Error);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Largest slow-mode interval.
pub const MAX_SLOW_MODE_SECONDS: u32 = 3600;

#[derive(Clone)]
pub struct Moderation {
    pool: AnyPool,
}

/// A room's moderation state as a shard caches it.
#[derive(Debug, Clone, Default)]
pub struct RoomRules {
    pub banned: HashSet<String>,
    pub slow_mode_seconds: u32,
}

impl Moderation {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Runs the chat role's migrations (versions 0200 and up).
    pub async fn migrate(pool: &AnyPool, sqlite: bool) -> Result<(), ModerationError> {
        #[allow(clippy::if_same_then_else)]
        let mut migrator = if sqlite {
            sqlx::migrate!("./migrations/sqlite")
        } else {
            sqlx::migrate!("./migrations/postgres")
        };
        migrator.set_ignore_missing(true);
        migrator
            .run(pool)
            .await
            .map_err(|e| ModerationError(sqlx::Error::Migrate(Box::new(e))))
    }

    pub async fn rules(&self, stream: &StreamId) -> Result<RoomRules, ModerationError> {
        let banned = sqlx::query("SELECT member_id FROM chat_bans WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        let slow = sqlx::query("SELECT slow_mode_seconds FROM chat_settings WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0);
        Ok(RoomRules {
            banned,
            slow_mode_seconds: u32::try_from(slow).unwrap_or(0),
        })
    }

    pub async fn is_banned(
        &self,
        stream: &StreamId,
        member: &str,
    ) -> Result<bool, ModerationError> {
        Ok(
            sqlx::query("SELECT 1 FROM chat_bans WHERE stream_id = $1 AND member_id = $2")
                .bind(stream.as_str())
                .bind(member)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    pub async fn is_moderator(
        &self,
        stream: &StreamId,
        buyer: &str,
    ) -> Result<bool, ModerationError> {
        Ok(
            sqlx::query("SELECT 1 FROM chat_moderators WHERE stream_id = $1 AND buyer_id = $2")
                .bind(stream.as_str())
                .bind(buyer)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    pub async fn add_moderator(
        &self,
        stream: &StreamId,
        buyer: &str,
    ) -> Result<(), ModerationError> {
        sqlx::query(
            "INSERT INTO chat_moderators (stream_id, buyer_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (stream_id, buyer_id) DO NOTHING",
        )
        .bind(stream.as_str())
        .bind(buyer)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn ban(
        &self,
        stream: &StreamId,
        member: &str,
        by: &str,
    ) -> Result<(), ModerationError> {
        sqlx::query(
            "INSERT INTO chat_bans (stream_id, member_id, banned_by, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id, member_id) DO NOTHING",
        )
        .bind(stream.as_str())
        .bind(member)
        .bind(by)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unban(&self, stream: &StreamId, member: &str) -> Result<(), ModerationError> {
        sqlx::query("DELETE FROM chat_bans WHERE stream_id = $1 AND member_id = $2")
            .bind(stream.as_str())
            .bind(member)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_slow_mode(
        &self,
        stream: &StreamId,
        seconds: u32,
    ) -> Result<(), ModerationError> {
        sqlx::query(
            "INSERT INTO chat_settings (stream_id, slow_mode_seconds, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (stream_id) DO UPDATE SET slow_mode_seconds = excluded.slow_mode_seconds, \
             updated_at = excluded.updated_at",
        )
        .bind(stream.as_str())
        .bind(i64::from(seconds))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
