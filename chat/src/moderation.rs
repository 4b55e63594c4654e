//! Moderation state kept in SQL so that it outlives the room log and every shard agrees on it:
//! bans, moderators, slow mode, and the log of every moderation act. Changes are also announced
//! on the room log, which is how the other shards learn of them without polling. Who may do
//! what is decided before (see [`crate::policy`]); this module only stores.

use crate::protocol::{ModerationAction, Role};
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
        // What both engines take alike once, the engine's own scripts where they differ.
        let dialect = if sqlite {
            sqlx::migrate!("./migrations/sqlite")
        } else {
            sqlx::migrate!("./migrations/postgres")
        };
        let migrated = match vitrine_core::migrations::merged(
            &sqlx::migrate!("./migrations/common"),
            Some(&dialect),
        ) {
            Ok(migrator) => migrator.run(pool).await,
            Err(e) => Err(e),
        };
        migrated.map_err(|e| ModerationError(sqlx::Error::Migrate(Box::new(e))))
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

    /// Applies one moderation act and logs it, in one transaction: either both happen or
    /// neither. Returns false, having changed and logged nothing, when the act has nothing to
    /// act on (removing someone who is not a moderator); every other act is logged even when it
    /// changes nothing (unbanning someone not banned), because the log records what moderators
    /// did, not only what changed.
    pub async fn apply(&self, act: &Act<'_>) -> Result<bool, ModerationError> {
        let mut tx = self.pool.begin().await?;
        let room = act.stream.as_str();
        let member = act.member.unwrap_or_default();
        let now = now_ms();
        let effect = match act.action {
            ModerationAction::Ban => Some(sqlx::query(
                "INSERT INTO chat_bans (stream_id, member_id, banned_by, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id, member_id) DO NOTHING",
            )
            .bind(room)
            .bind(member)
            .bind(act.actor)
            .bind(now)),
            ModerationAction::Unban => Some(
                sqlx::query("DELETE FROM chat_bans WHERE stream_id = $1 AND member_id = $2")
                    .bind(room)
                    .bind(member),
            ),
            ModerationAction::AddModerator => Some(sqlx::query(
                "INSERT INTO chat_moderators (stream_id, buyer_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream_id, buyer_id) DO NOTHING",
            )
            .bind(room)
            .bind(member)
            .bind(now)),
            ModerationAction::RemoveModerator => Some(
                sqlx::query("DELETE FROM chat_moderators WHERE stream_id = $1 AND buyer_id = $2")
                    .bind(room)
                    .bind(member),
            ),
            ModerationAction::SlowMode => Some(sqlx::query(
                "INSERT INTO chat_settings (stream_id, slow_mode_seconds, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream_id) DO UPDATE SET slow_mode_seconds = excluded.slow_mode_seconds, \
                 updated_at = excluded.updated_at",
            )
            .bind(room)
            .bind(i64::from(act.seconds.unwrap_or(0)))
            .bind(now)),
            // A deleted line lives in the room log, which the moderation event itself marks.
            ModerationAction::Delete => None,
        };
        let changed = match effect {
            Some(q) => q.execute(&mut *tx).await?.rows_affected(),
            None => 0,
        };
        if act.action == ModerationAction::RemoveModerator && changed == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO chat_moderation_log (stream_id, action, actor_id, actor_role, member_id, \
             message_id, seconds, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(room)
        .bind(act.action.as_str())
        .bind(act.actor)
        .bind(act.actor_role.as_str())
        .bind(act.member)
        .bind(act.message)
        .bind(act.seconds.map(i64::from))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The room's moderation log, newest first; `before`: only acts older than this entry id.
    pub async fn log(
        &self,
        stream: &StreamId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<LoggedAct>, ModerationError> {
        let rows = sqlx::query(
            "SELECT id, action, actor_id, actor_role, member_id, message_id, seconds, created_at \
             FROM chat_moderation_log WHERE stream_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(stream.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(LoggedAct::from_row).collect()
    }
}

/// One moderation act to apply and log.
#[derive(Debug, Clone)]
pub struct Act<'a> {
    pub stream: &'a StreamId,
    /// Who acts: the seller's id or a moderator's buyer id.
    pub actor: &'a str,
    pub actor_role: Role,
    pub action: ModerationAction,
    /// The member acted on (ban, unban, moderators).
    pub member: Option<&'a str>,
    /// The line deleted.
    pub message: Option<&'a str>,
    /// Slow mode's interval.
    pub seconds: Option<u32>,
}

/// An entry of a room's moderation log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAct {
    pub id: i64,
    pub action: ModerationAction,
    pub actor_id: String,
    pub actor_role: Role,
    pub member_id: Option<String>,
    pub message_id: Option<String>,
    pub seconds: Option<u32>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl LoggedAct {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, ModerationError> {
        let unknown = |what: &str, raw: String| {
            ModerationError(sqlx::Error::Decode(
                format!("unknown {what} {raw:?} in the moderation log").into(),
            ))
        };
        let action: String = row.try_get("action")?;
        let role: String = row.try_get("actor_role")?;
        Ok(Self {
            id: row.try_get("id")?,
            action: ModerationAction::parse(&action)
                .ok_or_else(|| unknown("action", action.clone()))?,
            actor_id: row.try_get("actor_id")?,
            actor_role: Role::parse(&role).ok_or_else(|| unknown("role", role.clone()))?,
            member_id: row.try_get("member_id")?,
            message_id: row.try_get("message_id")?,
            seconds: row
                .try_get::<Option<i64>, _>("seconds")?
                .map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
            created_at: row.try_get("created_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Moderation {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Moderation::migrate(&pool, true).await.unwrap();
        Moderation::new(pool)
    }

    fn act<'a>(stream: &'a StreamId, action: ModerationAction, member: Option<&'a str>) -> Act<'a> {
        Act {
            stream,
            actor: "sl_owner",
            actor_role: Role::Seller,
            action,
            member,
            message: None,
            seconds: None,
        }
    }

    #[tokio::test]
    async fn acts_change_the_state_and_are_logged_newest_first() {
        let m = store().await;
        let room = StreamId::generate();
        assert!(
            m.apply(&act(&room, ModerationAction::AddModerator, Some("by_a")))
                .await
                .unwrap()
        );
        assert!(m.is_moderator(&room, "by_a").await.unwrap());
        assert!(
            m.apply(&act(&room, ModerationAction::Ban, Some("by_b")))
                .await
                .unwrap()
        );
        assert!(m.is_banned(&room, "by_b").await.unwrap());
        let slow = Act {
            seconds: Some(30),
            ..act(&room, ModerationAction::SlowMode, None)
        };
        assert!(m.apply(&slow).await.unwrap());
        assert_eq!(m.rules(&room).await.unwrap().slow_mode_seconds, 30);
        assert!(
            m.apply(&act(&room, ModerationAction::Unban, Some("by_b")))
                .await
                .unwrap()
        );
        assert!(!m.is_banned(&room, "by_b").await.unwrap());
        assert!(
            m.apply(&act(&room, ModerationAction::RemoveModerator, Some("by_a")))
                .await
                .unwrap()
        );
        // Removing someone who is not a moderator changes and logs nothing.
        assert!(
            !m.apply(&act(&room, ModerationAction::RemoveModerator, Some("by_a")))
                .await
                .unwrap()
        );

        let log = m.log(&room, 10, None).await.unwrap();
        let actions: Vec<_> = log.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "remove_moderator",
                "unban",
                "slow_mode",
                "ban",
                "add_moderator"
            ]
        );
        assert_eq!(log[2].seconds, Some(30));
        assert_eq!(
            (log[3].actor_id.as_str(), log[3].actor_role),
            ("sl_owner", Role::Seller)
        );
        assert_eq!(log[3].member_id.as_deref(), Some("by_b"));
        let older = m.log(&room, 2, Some(log[1].id)).await.unwrap();
        assert_eq!(
            older.iter().map(|a| a.id).collect::<Vec<_>>(),
            [log[2].id, log[3].id]
        );
        assert!(
            m.log(&StreamId::generate(), 10, None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
