//! A member's `bid` frame: checked here (a buyer, a well-formed request id, room for one more
//! pending answer), written by checkout in a task of its own, answered with `bid.accepted` or
//! `bid.refused`. A bid does not take from the chat lines' rate: the buyer's bids are held to
//! their own rate, across connections and the API, behind [`vitrine_core::Purchases::bid`]. The
//! room learns of a bid that leads from checkout's `auction_bid` event, not from here.

use super::join::Member;
use super::{error_text, valid_request_id};
use crate::Chat;
use crate::hub::Hub;
use crate::protocol::{MAX_REQUEST_ID_CHARS, Reply};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};
use vitrine_core::{AuctionId, BidOutcome, BidRequest, Money};

/// Everything a `bid` frame carries.
pub(super) struct BidFrame {
    pub request_id: String,
    pub auction_id: AuctionId,
    pub amount: Money,
}

/// Handles one `bid` frame: an error to write at once, or `None` once the bid is under way
/// (its answer comes through `replies`).
pub(super) fn bid(
    chat: &Chat,
    hub: &Hub,
    member: &Member,
    frame: BidFrame,
    replies: &mpsc::Sender<String>,
    pending: &Arc<Semaphore>,
) -> Option<String> {
    let Some(buyer) = member.buyer.clone() else {
        return Some(error_text(
            "buyer_required",
            "join with a buyer token to bid",
            None,
        ));
    };
    if !valid_request_id(&frame.request_id) {
        return Some(error_text(
            "invalid_message",
            &format!("request_id must be 1 to {MAX_REQUEST_ID_CHARS} visible ASCII characters"),
            None,
        ));
    }
    let Ok(permit) = Arc::clone(pending).try_acquire_owned() else {
        return Some(error_text(
            "too_many_pending",
            "wait for your bids to be answered",
            None,
        ));
    };
    chat.inner.metrics.bids.inc();
    let request = BidRequest {
        buyer,
        bidder_name: member.you.name.clone(),
        auction: frame.auction_id,
        stream: Some(hub.stream.clone()),
        amount: frame.amount,
        request_id: frame.request_id,
    };
    let (purchases, replies) = (Arc::clone(&chat.inner.purchases), replies.clone());
    chat.inner.purchases_in_flight.spawn(async move {
        let request_id = request.request_id.clone();
        let outcome = purchases.bid(request).await;
        drop(permit);
        let text = match &outcome {
            BidOutcome::Accepted(auction) => Reply::BidAccepted {
                request_id: &request_id,
                auction,
            }
            .to_text(),
            BidOutcome::Refused { reason, detail } => Reply::BidRefused {
                request_id: &request_id,
                reason: reason.as_str(),
                detail,
            }
            .to_text(),
        };
        // The member may have left; the bid stands either way.
        let _ = replies.send(text).await;
    });
    None
}
