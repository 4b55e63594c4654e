//! Moderation acts, from a member's `moderate` frame or from the seller API: one path for both.
//! The act is validated, the roles are read (the stream's seller, the moderator table), the
//! [`crate::policy`] decides, the store applies and logs the act in one transaction, and the
//! room log announces it, which is how every shard and member learns of it.
//!
//! It never trusts the role a connection joined with for a moderator: that is read again from
//! the store, so that a removed moderator's powers end at once, on every shard.

use crate::moderation::{Act, MAX_SLOW_MODE_SECONDS, ModerationError};
use crate::policy::{self, Denied};
use crate::protocol::{ModerationAction, Role, RoomEvent};
use crate::{Chat, ChatError};
use vitrine_core::{BuyerId, SellerId, StreamId};

/// Longest member or message id a moderation act names (ids are far shorter).
const MAX_ID_CHARS: usize = 64;

/// Who acts: the seller (by seller id) or a moderator (by buyer id), as the caller identified
/// them.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub id: &'a str,
    pub role: Role,
}

/// One act as asked for (the fields of a `moderate` frame).
#[derive(Debug, Clone)]
pub struct Request {
    pub action: ModerationAction,
    pub message_id: Option<String>,
    pub member_id: Option<String>,
    pub seconds: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModerateError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("{0}")]
    Invalid(&'static str),
    /// Removing someone who is not a moderator of the stream.
    #[error("not a moderator of this stream")]
    NotAModerator,
    #[error(transparent)]
    Store(#[from] ModerationError),
    #[error(transparent)]
    Announce(#[from] ChatError),
}

impl ModerateError {
    /// The `code` of the `error` reply a member gets.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied(_) => "forbidden",
            Self::Invalid(_) | Self::NotAModerator => "invalid_message",
            Self::Store(_) | Self::Announce(_) => "unavailable",
        }
    }
}

fn valid_id(id: Option<&str>) -> Option<&str> {
    id.filter(|i| !i.is_empty() && i.chars().count() <= MAX_ID_CHARS)
}

impl Request {
    /// Checks the fields the action needs; returns the slow-mode interval, clamped.
    fn check(&self) -> Result<Option<u32>, ModerateError> {
        let action = self.action;
        if action == ModerationAction::Delete && valid_id(self.message_id.as_deref()).is_none() {
            return Err(ModerateError::Invalid("delete needs message_id"));
        }
        if action.targets_member() && valid_id(self.member_id.as_deref()).is_none() {
            return Err(ModerateError::Invalid("this action needs member_id"));
        }
        if action == ModerationAction::AddModerator
            && BuyerId::parse(self.member_id.as_deref().unwrap_or_default()).is_err()
        {
            return Err(ModerateError::Invalid(
                "a moderator is a buyer: member_id is a buyer id",
            ));
        }
        Ok((action == ModerationAction::SlowMode)
            .then(|| self.seconds.unwrap_or(0).min(MAX_SLOW_MODE_SECONDS)))
    }
}

impl Chat {
    /// Performs one moderation act in the room of `stream`, whose seller is `seller`.
    pub async fn moderate(
        &self,
        stream: &StreamId,
        seller: &SellerId,
        actor: Actor<'_>,
        request: Request,
    ) -> Result<(), ModerateError> {
        let seconds = request.check()?;
        let moderation = &self.inner.moderation;
        let actor_role = match actor.role {
            Role::Moderator if !moderation.is_moderator(stream, actor.id).await? => Role::Buyer,
            role => role,
        };
        let member = request
            .member_id
            .as_deref()
            .filter(|_| request.action.targets_member());
        let target = match member {
            Some(m) if m == seller.as_str() => Some(Role::Seller),
            Some(m) if moderation.is_moderator(stream, m).await? => Some(Role::Moderator),
            Some(_) => Some(Role::Buyer),
            None => None,
        };
        policy::permit(actor_role, request.action, target, member == Some(actor.id))?;
        let message = request
            .message_id
            .as_deref()
            .filter(|_| request.action == ModerationAction::Delete);
        let act = Act {
            stream,
            actor: actor.id,
            actor_role,
            action: request.action,
            member,
            message,
            seconds,
        };
        if !moderation.apply(&act).await? {
            return Err(ModerateError::NotAModerator);
        }
        let event = RoomEvent::Moderation {
            action: request.action,
            message_id: message.map(str::to_owned),
            member_id: member.map(str::to_owned),
            seconds,
        };
        self.publish(stream, None, &event).await?;
        Ok(())
    }
}
