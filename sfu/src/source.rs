//! Feeds one remote track's RTP into a stream's router: what a WHIP publisher's tracks and a
//! relay's tracks (another node's subscriber leg) have in common. Answers the router's
//! coalesced keyframe requests with PLI on the same track, so keyframe requests travel hop by
//! hop back to the camera.

use crate::codec::{Codec, MediaKind};
use crate::router::{PublisherLink, SourceCodec};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Forwards one remote track's packets to the router until the track or `cancel` ends.
pub async fn forward_track(
    track: Arc<dyn TrackRemote>,
    link: Arc<PublisherLink>,
    cancel: CancellationToken,
) {
    let Some(ssrc) = track.ssrcs().await.first().copied() else {
        return;
    };
    let Some(codec) = track
        .codec(ssrc)
        .await
        .and_then(|c| Codec::from_mime(&c.mime_type))
    else {
        tracing::warn!(ssrc, "track with an unsupported codec ignored");
        return;
    };
    let kind = codec.kind();
    if kind == MediaKind::Video {
        tokio::spawn(answer_keyframe_requests(
            Arc::clone(&track),
            ssrc,
            Arc::clone(&link),
            cancel.clone(),
        ));
    }
    let mut last_pt = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = track.poll() => event,
        };
        match event {
            Some(TrackRemoteEvent::OnRtpPacket(mut packet)) => {
                // Extensions negotiated with the sender mean nothing on subscriber legs;
                // stripping them once here keeps every per-leg clone allocation-free.
                if packet.header.extension {
                    packet.header.extension = false;
                    packet.header.extension_profile = 0;
                    packet.header.extensions = Vec::new();
                }
                let pt = packet.header.payload_type;
                if last_pt != Some(pt) {
                    last_pt = Some(pt);
                    link.add_codec(SourceCodec {
                        codec,
                        payload_type: pt,
                    });
                }
                link.forward(kind, codec, &packet);
            }
            Some(TrackRemoteEvent::OnEnded) | None => return,
            Some(_) => {}
        }
    }
}

/// Sends a PLI about `ssrc` each time the router's coalesced keyframe request is due.
async fn answer_keyframe_requests(
    track: Arc<dyn TrackRemote>,
    ssrc: u32,
    link: Arc<PublisherLink>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = link.keyframe_needed() => {}
        }
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        };
        if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
            return;
        }
    }
}
