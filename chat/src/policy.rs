//! Who may moderate whom, as one pure function: the actor's role, the action and the target's
//! role in, a permission or a refusal out. It reads nothing and changes nothing; the caller
//! finds the roles (the stream's seller, the moderator table) and applies the act.
//!
//! The rule: moderators keep the room clean (delete lines, ban and unban buyers, slow mode);
//! the seller does all of that and is the only one who acts on moderators (bans them, makes
//! and removes them). Nobody bans the seller, and nobody acts on themselves.

use crate::protocol::{ModerationAction, Role};

/// Why a moderation act is refused; its message is what the actor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("only the seller and moderators moderate")]
    NotModerator,
    #[error("only the seller makes and removes moderators")]
    SellerOnly,
    #[error("only the seller acts on moderators, and nobody on the seller")]
    Protected,
    #[error("you cannot do that to yourself")]
    OwnSelf,
}

/// Whether `actor` may do `action` to a member of role `target` (`None` for acts on a message
/// or on the room); `own_self` says the target is the actor.
pub fn permit(
    actor: Role,
    action: ModerationAction,
    target: Option<Role>,
    own_self: bool,
) -> Result<(), Denied> {
    if !matches!(actor, Role::Seller | Role::Moderator) {
        return Err(Denied::NotModerator);
    }
    let on_moderators = matches!(
        action,
        ModerationAction::AddModerator | ModerationAction::RemoveModerator
    );
    if on_moderators && actor != Role::Seller {
        return Err(Denied::SellerOnly);
    }
    if !action.targets_member() {
        return Ok(());
    }
    if own_self {
        return Err(Denied::OwnSelf);
    }
    match (actor, target) {
        (_, Some(Role::Seller)) => Err(Denied::Protected),
        (Role::Moderator, Some(Role::Moderator)) => Err(Denied::Protected),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModerationAction::*;

    #[test]
    fn moderators_act_on_buyers_only() {
        for action in [Ban, Unban] {
            assert_eq!(
                permit(Role::Moderator, action, Some(Role::Buyer), false),
                Ok(())
            );
            assert_eq!(
                permit(Role::Moderator, action, Some(Role::Viewer), false),
                Ok(())
            );
            assert_eq!(
                permit(Role::Moderator, action, Some(Role::Seller), false),
                Err(Denied::Protected)
            );
            assert_eq!(
                permit(Role::Moderator, action, Some(Role::Moderator), false),
                Err(Denied::Protected)
            );
        }
        assert_eq!(permit(Role::Moderator, Delete, None, false), Ok(()));
        assert_eq!(permit(Role::Moderator, SlowMode, None, false), Ok(()));
        for action in [AddModerator, RemoveModerator] {
            assert_eq!(
                permit(Role::Moderator, action, Some(Role::Buyer), false),
                Err(Denied::SellerOnly)
            );
        }
    }

    #[test]
    fn the_seller_acts_on_moderators_but_nobody_on_the_seller() {
        for action in [Ban, Unban, AddModerator, RemoveModerator] {
            assert_eq!(
                permit(Role::Seller, action, Some(Role::Moderator), false),
                Ok(())
            );
            assert_eq!(
                permit(Role::Seller, action, Some(Role::Buyer), false),
                Ok(())
            );
            assert_eq!(
                permit(Role::Seller, action, Some(Role::Seller), true),
                Err(Denied::OwnSelf)
            );
        }
        assert_eq!(
            permit(Role::Moderator, Ban, Some(Role::Moderator), true),
            Err(Denied::OwnSelf)
        );
    }

    #[test]
    fn buyers_and_viewers_do_not_moderate() {
        for actor in [Role::Buyer, Role::Viewer] {
            for action in [Delete, Ban, Unban, SlowMode, AddModerator, RemoveModerator] {
                assert_eq!(
                    permit(actor, action, Some(Role::Buyer), false),
                    Err(Denied::NotModerator)
                );
            }
        }
    }
}
