//! WHIP/WHEP session resources: what a `Location` URL points at, so that `PATCH` (trickle ICE)
//! and `DELETE` reach the right peer connection, and only through the stream it belongs to.

use crate::sdpfrag::SdpFrag;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vitrine_core::{SessionId, StreamId};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};

/// Most sessions (publishers plus subscribers) one process accepts; beyond it new offers get 503.
pub const MAX_SESSIONS: usize = 20_000;

/// A live WHIP or WHEP session: the peer connection a resource URL controls.
///
/// The task that runs the session holds the matching [`SessionTask`]; [`Session::close`]
/// cancels that task and returns once it has finished its clean-up (router slot released,
/// stream state recorded), so a `DELETE` answers only when its effect is visible.
pub struct Session {
    stream: StreamId,
    pc: Arc<dyn PeerConnection>,
    cancel: CancellationToken,
    finished: watch::Receiver<bool>,
}

/// The session task's end of a [`Session`]: its cancellation signal, and the "finished" flag
/// it raises when dropped.
pub struct SessionTask {
    pub cancel: CancellationToken,
    finished: watch::Sender<bool>,
}

impl Drop for SessionTask {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.finished.send_replace(true);
    }
}

impl Session {
    pub fn new(stream: StreamId, pc: Arc<dyn PeerConnection>) -> (Arc<Self>, SessionTask) {
        let cancel = CancellationToken::new();
        let (finished_tx, finished) = watch::channel(false);
        let session = Arc::new(Self {
            stream,
            pc,
            cancel: cancel.clone(),
            finished,
        });
        (
            session,
            SessionTask {
                cancel,
                finished: finished_tx,
            },
        )
    }

    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Ends the session and waits for its task to finish.
    pub async fn close(&self) {
        self.cancel.cancel();
        let _ = self.pc.close().await;
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Adds the candidates of a trickle fragment to the peer connection.
    pub async fn add_candidates(&self, frag: SdpFrag) -> Result<(), webrtc::error::Error> {
        for c in frag.candidates {
            self.pc
                .add_ice_candidate(RTCIceCandidateInit {
                    candidate: c.candidate,
                    sdp_mid: c.mid,
                    sdp_mline_index: Some(c.mline_index),
                    username_fragment: c.ufrag,
                    url: None,
                })
                .await?;
        }
        Ok(())
    }
}

/// The sessions of one role (WHIP or WHEP) in this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<SessionId, Arc<Session>>>,
}

impl Sessions {
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_SESSIONS
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&self, id: SessionId, session: Arc<Session>) {
        self.map.lock().expect("sessions lock").insert(id, session);
    }

    /// The session `id` if it belongs to `stream` (a resource URL cannot cross streams).
    pub fn get(&self, stream: &StreamId, id: &SessionId) -> Option<Arc<Session>> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id).filter(|s| s.stream() == stream).cloned()
    }

    pub fn remove(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.map.lock().expect("sessions lock").remove(id)
    }

    /// Every session, for shutdown.
    pub fn drain(&self) -> Vec<Arc<Session>> {
        self.map
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(_, s)| s)
            .collect()
    }
}
