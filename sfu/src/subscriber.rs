//! A WHEP subscriber leg: one peer connection that sends the stream's current source to one
//! viewer, rewritten per leg (see [`crate::rewrite`]), and turns the viewer's PLI/FIR into
//! coalesced keyframe requests. NACKs are answered per leg by the connection's NACK responder.
//!
//! One task owns the leg: it drains the leg's bounded queue, so a viewer whose connection is slow
//! fills only its own queue. The leg ends on DELETE, ICE failure, a disconnection that lasts
//! longer than [`crate::peer::DISCONNECTED_GRACE`], no connection within the connect timeout,
//! or server shutdown. It holds its admission [`Slot`] for its whole life.

use crate::Sfu;
use crate::admission::Slot;
use crate::candidates::CandidatePolicy;
use crate::codec::{Codec, MediaKind};
use crate::feedback::is_keyframe_request;
use crate::peer::{self, Liveness, LivenessWatch, codec_parameters, supported};
use crate::rewrite::{LegRewriter, Verdict};
use crate::router::{Forwarded, LegHandle, Router, SourceInfo};
use crate::session::{Session, SessionTask, Sessions};
use crate::signaling::SignalingError;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use vitrine_core::{SessionId, StreamId};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::PeerConnection;

/// The RTP codec description a local track of `codec` carries.
fn rtc_codec(codec: Codec) -> RTCRtpCodec {
    codec_parameters()
        .into_iter()
        .map(|(p, _)| p.rtp_codec)
        .find(|c| Codec::from_mime(&c.mime_type) == Some(codec))
        .expect("every codec is registered")
}

fn local_track(kind: RtpCodecKind, codec: Codec, ssrc: u32, id: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "vitrine".to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: rtc_codec(codec),
            ..Default::default()
        }],
    )))
}

/// Pairs each source payload type with this leg's payload type for the same codec.
fn payload_pairs(source: &SourceInfo, kind: MediaKind, leg: &[(Codec, u8)]) -> Vec<(u8, u8)> {
    source
        .codecs
        .iter()
        .filter(|c| c.codec.kind() == kind)
        .filter_map(|c| {
            let (_, leg_pt) = leg.iter().find(|(codec, _)| *codec == c.codec)?;
            Some((c.payload_type, *leg_pt))
        })
        .collect()
}

/// Negotiates a WHEP session for `stream`, admitted as `slot`, exchanging the candidates
/// `policy` allows, and starts its leg. Returns the session id and answer.
pub async fn subscribe(
    sfu: &Arc<Sfu>,
    stream: StreamId,
    offer: String,
    slot: Slot,
    policy: CandidatePolicy,
) -> Result<(SessionId, String), SignalingError> {
    if sfu.whep_sessions.is_full() {
        return Err(SignalingError::Full);
    }
    let router = sfu.routers.get_or_create(&stream);
    let (pc, mut events) = sfu.factory.build_for(crate::ports::PortUse::Viewer).await?;
    let video_codec = router
        .source()
        .borrow()
        .codecs
        .iter()
        .find(|c| c.codec.kind() == MediaKind::Video)
        .map_or(Codec::Vp8, |c| c.codec);
    let video_ssrc = rand::random::<u32>();
    let audio_ssrc = rand::random::<u32>();
    let video = local_track(RtpCodecKind::Video, video_codec, video_ssrc, "video");
    let audio = local_track(RtpCodecKind::Audio, Codec::Opus, audio_ssrc, "audio");
    let negotiated = async {
        let video_sender = pc
            .add_track(Arc::clone(&video) as Arc<dyn TrackLocal>)
            .await?;
        let audio_sender = pc
            .add_track(Arc::clone(&audio) as Arc<dyn TrackLocal>)
            .await?;
        let answer = peer::answer(&pc, &mut events, offer, policy).await?;
        let video_codecs = supported(&video_sender.get_parameters().await?.rtp_parameters.codecs);
        let audio_codecs = supported(&audio_sender.get_parameters().await?.rtp_parameters.codecs);
        Ok::<_, peer::PeerError>((answer, video_codecs, audio_codecs))
    }
    .await;
    let (answer, video_codecs, audio_codecs) = match negotiated {
        Ok(n) => n,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e.into());
        }
    };

    let id = SessionId::generate();
    let (session, task) = Session::new(stream.clone(), Arc::clone(&pc));
    sfu.whep_sessions.insert(id.clone(), session);
    tracing::info!(%stream, session = %id, "subscriber negotiated");

    for track in [&video, &audio] {
        tokio::spawn(read_feedback(
            Arc::clone(track),
            Arc::clone(&router),
            task.cancel.clone(),
        ));
    }
    let leg = Leg {
        router: Arc::clone(&router),
        handle: None,
        video_track: video,
        audio_track: audio,
        video: LegRewriter::new(video_ssrc, 90_000, true),
        audio: LegRewriter::new(audio_ssrc, 48_000, false),
        video_codecs,
        audio_codecs,
        slot,
    };
    let connect_timeout = sfu.factory.ice().connect_timeout;
    tokio::spawn(leg.run(
        LivenessWatch::new(events.state, connect_timeout),
        task,
        Arc::clone(&sfu.whep_sessions),
        id.clone(),
        pc,
    ));
    Ok((id, answer))
}

struct Leg {
    router: Arc<Router>,
    /// The leg's place in the router, taken once the connection is up: packets written before
    /// DTLS completes would only be dropped, and viewer counts count viewers who can see.
    handle: Option<LegHandle>,
    video_track: Arc<TrackLocalStaticRTP>,
    audio_track: Arc<TrackLocalStaticRTP>,
    video: LegRewriter,
    audio: LegRewriter,
    video_codecs: Vec<(Codec, u8)>,
    audio_codecs: Vec<(Codec, u8)>,
    /// The viewer's admission: pending until connected, freed when the leg ends.
    slot: Slot,
}

impl Leg {
    fn apply_source(&mut self, source: &SourceInfo) {
        self.video
            .set_payload_map(payload_pairs(source, MediaKind::Video, &self.video_codecs));
        self.audio
            .set_payload_map(payload_pairs(source, MediaKind::Audio, &self.audio_codecs));
    }

    async fn run(
        mut self,
        mut liveness: LivenessWatch,
        task: SessionTask,
        sessions: Arc<Sessions>,
        id: SessionId,
        pc: Arc<dyn PeerConnection>,
    ) {
        let router = Arc::clone(&self.router);
        let metrics = Arc::clone(router.metrics());
        let mut source = router.source();
        self.apply_source(&source.borrow_and_update());
        loop {
            tokio::select! {
                _ = task.cancel.cancelled() => break,
                alive = liveness.next() => match alive {
                    Liveness::Gone => break,
                    Liveness::NeverConnected => {
                        metrics.sessions_reaped.inc();
                        tracing::info!(stream = %router.stream(), session = %id, "subscriber did not connect in time; reaped");
                        break;
                    }
                    Liveness::Connected => {
                        self.slot.connected();
                        if self.handle.is_none() {
                            self.handle = Some(router.join());
                            tracing::info!(stream = %router.stream(), session = %id, viewers = router.viewers(), "subscriber joined");
                        }
                    }
                },
                changed = source.changed() => {
                    if changed.is_err() { break; }
                    let info = source.borrow_and_update().clone();
                    self.apply_source(&info);
                }
                item = next_packet(&mut self.handle) => {
                    let Some(mut item) = item else { break };
                    let (rewriter, track) = match item.kind {
                        MediaKind::Video => (&mut self.video, &self.video_track),
                        MediaKind::Audio => (&mut self.audio, &self.audio_track),
                    };
                    match rewriter.rewrite(&mut item.packet.header, item.keyframe, Instant::now()) {
                        Verdict::Forward => {
                            let bytes = item.packet.payload.len() as u64;
                            if track.write_rtp(item.packet).await.is_ok() {
                                metrics.rtp_packets_out.inc();
                                metrics.rtp_bytes_out.inc_by(bytes);
                            }
                        }
                        Verdict::NeedKeyframe => router.request_keyframe(),
                        Verdict::AwaitingKeyframe | Verdict::Unmapped => {}
                    }
                }
            }
        }
        sessions.remove(&id);
        let _ = pc.close().await;
        tracing::info!(stream = %router.stream(), session = %id, "subscriber left");
        // Leave the router before the session reports itself finished.
        drop(self);
        drop(task);
    }
}

/// The leg's next packet; never resolves before the leg has joined the router.
async fn next_packet(handle: &mut Option<LegHandle>) -> Option<Forwarded> {
    match handle {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads a leg's RTCP: picture loss (PLI) and full intra requests (FIR) become keyframe requests.
async fn read_feedback(
    track: Arc<TrackLocalStaticRTP>,
    router: Arc<Router>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = track.poll() => event,
        };
        match event {
            None => return,
            Some(TrackLocalEvent::OnRtcpPacket(packets)) => {
                let wants_keyframe = packets.iter().any(|p| is_keyframe_request(p.as_ref()));
                if wants_keyframe {
                    router.request_keyframe();
                }
            }
            Some(_) => {}
        }
    }
}
