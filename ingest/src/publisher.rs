//! A WHIP publisher session: receives the seller's tracks and forwards every packet to the
//! stream's router through a [`PublisherLink`]; answers the router's coalesced keyframe requests
//! with PLI; marks the stream live when connected and ended when it stops (unless a newer
//! publisher replaced it).

use crate::Ingest;
use std::sync::Arc;
use vitrine_core::{SessionId, StreamId, StreamState};
use vitrine_sfu::peer::{self, Liveness, LivenessWatch};
use vitrine_sfu::router::PublisherLink;
use vitrine_sfu::session::{Session, SessionTask};
use vitrine_sfu::signaling::SignalingError;
use vitrine_sfu::source::forward_track;
use webrtc::peer_connection::PeerConnection;

/// Negotiates a WHIP session for `stream` (already authenticated) and starts forwarding;
/// `capture` is the picture size the publisher says it captures, if it said.
pub async fn publish(
    ingest: &Arc<Ingest>,
    stream: StreamId,
    offer: String,
    capture: Option<(u32, u32)>,
) -> Result<(SessionId, String), SignalingError> {
    if ingest.sessions.is_full() {
        return Err(SignalingError::Full);
    }
    let sfu = &ingest.sfu;
    // Publishers bind their reserved ports first: viewers can never take them.
    let (pc, mut events) = sfu
        .factory
        .build_for(vitrine_sfu::ports::PortUse::Publisher)
        .await?;
    let negotiated = async {
        peer::add_receivers(&pc).await?;
        peer::answer(&pc, &mut events, offer, sfu.factory.candidates()).await
    }
    .await;
    let answer = match negotiated {
        Ok(answer) => answer,
        Err(e) => {
            let _ = pc.close().await;
            return Err(e.into());
        }
    };

    let router = sfu.routers.get_or_create(&stream);
    let link = Arc::new(router.attach_publisher());
    if let Some((width, height)) = capture {
        link.declare_capture(width, height);
    }
    if let Some(cluster) = sfu.upstream() {
        cluster.publishing(&stream).await;
    }
    // Nobody listening (HLS off) is fine.
    let _ = sfu.went_live.send(Arc::clone(&router));
    let id = SessionId::generate();
    let (session, task) = Session::new(stream.clone(), Arc::clone(&pc));
    let previous = ingest
        .current
        .lock()
        .expect("current lock")
        .insert(stream.clone(), id.clone());
    ingest.sessions.insert(id.clone(), session);
    if let Some(previous) = previous
        && let Some(old) = ingest.sessions.remove(&previous)
    {
        tracing::info!(%stream, old = %previous, new = %id, "publisher replaced");
        old.close().await;
    }
    tracing::info!(%stream, session = %id, "publisher joined");
    tokio::spawn(run(
        Arc::clone(ingest),
        stream,
        id.clone(),
        pc,
        events,
        link,
        task,
    ));
    Ok((id, answer))
}

async fn run(
    ingest: Arc<Ingest>,
    stream: StreamId,
    id: SessionId,
    pc: Arc<dyn PeerConnection>,
    mut events: peer::PeerEvents,
    link: Arc<PublisherLink>,
    task: SessionTask,
) {
    let directory = Arc::clone(&ingest.sfu.directory);
    let connect_timeout = ingest.sfu.factory.ice().connect_timeout;
    let mut liveness = LivenessWatch::new(events.state.clone(), connect_timeout);
    loop {
        tokio::select! {
            _ = task.cancel.cancelled() => break,
            track = events.tracks.recv() => {
                let Some(track) = track else { break };
                tokio::spawn(forward_track(track, Arc::clone(&link), task.cancel.clone()));
            }
            alive = liveness.next() => match alive {
                Liveness::Gone => break,
                Liveness::NeverConnected => {
                    ingest.sfu.routers.metrics().sessions_reaped.inc();
                    tracing::info!(%stream, session = %id, "publisher did not connect in time; reaped");
                    break;
                }
                Liveness::Connected => {
                    if !link.is_replaced()
                        && let Err(e) = directory.set_state(&stream, StreamState::Live).await
                    {
                        tracing::error!(error = %e, "could not mark stream live");
                    }
                }
            },
        }
    }
    task.cancel.cancel();
    ingest.sessions.remove(&id);
    {
        let mut current = ingest.current.lock().expect("current lock");
        if current.get(&stream) == Some(&id) {
            current.remove(&stream);
        }
    }
    let _ = pc.close().await;
    if !link.is_replaced() {
        if let Some(cluster) = ingest.sfu.upstream() {
            cluster.stopped(&stream).await;
        }
        if ingest.is_handing_off() {
            tracing::info!(%stream, session = %id, "publisher handed off to another node");
        } else {
            if let Err(e) = directory.set_state(&stream, StreamState::Ended).await {
                tracing::error!(error = %e, "could not mark stream ended");
            }
            tracing::info!(%stream, session = %id, "broadcast ended");
        }
    }
    // Release the router before the session reports itself finished (DELETE waits for that).
    drop(link);
    drop(task);
}
