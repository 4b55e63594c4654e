//! Joining a room: who the member is (from `hello`'s token: a viewer, a buyer, a moderator or
//! the stream's seller) and the welcome (history, or what was missed since `resume_from`). It
//! reads identities, moderation and the room log; it writes nothing.

use super::wire::Close;
use crate::hub::{Hub, admits, moderation_of};
use crate::protocol::{
    Author, ModerationAction, PROTOCOL_VERSION, Reply, Role, RoomEvent, You, close, with_id,
};
use crate::{Chat, ChatError};
use rand::RngCore;
use std::collections::HashSet;
use vitrine_core::{BuyerId, EventId, Identity, SellerId, StreamRecord};

/// Log events read to build a welcome's history (chat lines are a part of them).
const HISTORY_SCAN: usize = 400;
/// Most missed events a resume replays.
const MAX_RESUME: usize = 1000;

/// A member once identified.
pub(super) struct Member {
    pub(super) you: You,
    /// The room's seller, whom nobody bans.
    pub(super) seller: SellerId,
    pub(super) buyer: Option<BuyerId>,
    /// Audience tags whose frames this member sees.
    pub(super) tags: Vec<String>,
    /// The connection's address, for the limits that hold per address (a flash sale's).
    pub(super) client: Option<vitrine_core::ClientIp>,
}

impl Member {
    pub(super) fn author(&self) -> Author {
        Author {
            member_id: self.you.member_id.clone(),
            name: self.you.name.clone(),
            role: self.you.role,
        }
    }

    pub(super) fn moderates(&self) -> bool {
        matches!(self.you.role, Role::Seller | Role::Moderator)
    }

    /// What a moderation act on this member does to its connection: a ban closes it (4003);
    /// a change of role closes it too (4010), so that the client joins again in its new role.
    pub(super) fn acted_on(&self, action: ModerationAction) -> Result<(), Close> {
        match action {
            ModerationAction::Ban => Err(Close::new(close::FORBIDDEN, "banned from this room")),
            ModerationAction::AddModerator | ModerationAction::RemoveModerator => Err(Close::new(
                close::ROLE_CHANGED,
                "your role in this room changed; join again with resume_from",
            )),
            _ => Ok(()),
        }
    }
}

pub(super) async fn identify(
    chat: &Chat,
    stream: &StreamRecord,
    token: Option<String>,
    caller: vitrine_core::ClientIp,
) -> Result<Member, Close> {
    let unavailable = |e: String| {
        tracing::warn!(error = %e, "identity lookup failed");
        Close::new(close::UNAVAILABLE, "service unavailable; retry")
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        return Ok(Member {
            you: You {
                member_id: format!("vw_{}", hex::encode(id)),
                name: "viewer".into(),
                role: Role::Viewer,
            },
            seller: stream.seller_id.clone(),
            buyer: None,
            tags: vec![],
            client: None,
        });
    };
    if token.len() > 200 {
        return Err(Close::new(close::FORBIDDEN, "invalid token"));
    }
    match chat
        .inner
        .identities
        .identify(&token, caller)
        .await
        .map_err(|e| unavailable(e.to_string()))?
    {
        Some(Identity::Seller { id, name }) if id == stream.seller_id => Ok(Member {
            you: You {
                member_id: id.to_string(),
                name,
                role: Role::Seller,
            },
            seller: stream.seller_id.clone(),
            buyer: None,
            tags: vec!["seller".into()],
            client: None,
        }),
        Some(Identity::Seller { .. }) => Err(Close::new(
            close::FORBIDDEN,
            "a seller token only joins its own streams",
        )),
        Some(Identity::Buyer { id, display_name }) => {
            let moderator = chat
                .inner
                .moderation
                .is_moderator(&stream.id, id.as_str())
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            Ok(Member {
                you: You {
                    member_id: id.to_string(),
                    name: display_name,
                    role: if moderator {
                        Role::Moderator
                    } else {
                        Role::Buyer
                    },
                },
                seller: stream.seller_id.clone(),
                tags: vec![format!("buyer:{id}")],
                client: None,
                buyer: Some(id),
            })
        }
        None => Err(Close::new(close::FORBIDDEN, "invalid token")),
    }
}

/// The welcome: history (or what was missed since `resume_from`), and the id of the last log
/// event it covers, so that live frames at or before it are skipped.
pub(super) async fn welcome(
    chat: &Chat,
    hub: &Hub,
    member: &Member,
    resume_from: Option<&str>,
) -> Result<(String, Option<EventId>), ChatError> {
    let room = hub.stream.as_str();
    let bus = &chat.inner.bus;
    let resume = resume_from.and_then(|r| r.parse::<EventId>().ok());
    let (events, gap, resumed) = match resume {
        Some(after) => {
            let (events, missed) = bus.after(room, after, MAX_RESUME).await?;
            (events, missed, true)
        }
        None => (bus.recent(room, HISTORY_SCAN).await?, false, false),
    };
    let last_event_id = events.last().map(|e| e.id);
    let deleted: HashSet<String> = events
        .iter()
        .filter_map(|e| match moderation_of(&e.payload) {
            Some((ModerationAction::Delete, _, message)) => message,
            _ => None,
        })
        .collect();
    let visible = events.iter().filter(|e| {
        admits(e.audience.as_deref(), &member.tags)
            && (resumed || RoomEvent::in_history(&e.payload))
            && !deleted.contains(&e.id.to_string())
    });
    let mut history: Vec<Box<serde_json::value::RawValue>> = visible
        .filter_map(|e| serde_json::value::RawValue::from_string(with_id(e.id, &e.payload)).ok())
        .collect();
    if !resumed && history.len() > chat.inner.config.history {
        history.drain(..history.len() - chat.inner.config.history);
    }
    let purchases = &chat.inner.purchases;
    let (pin, auction) = tokio::join!(
        purchases.pinned(&hub.stream),
        purchases.auction(&hub.stream)
    );
    let (pin, auction) = (pin.unwrap_or(None), auction.unwrap_or(None));
    let text = Reply::Welcome {
        protocol: PROTOCOL_VERSION,
        you: &member.you,
        history,
        gap,
        resumed,
        pin,
        auction,
        slow_mode_seconds: hub.slow_mode_seconds(),
        last_event_id,
    }
    .to_text();
    Ok((text, last_event_id))
}
