//! WHIP/WHEP session resources: what a `Location` URL points at, so that `PATCH` (trickle ICE)
//! and `DELETE` reach the right peer connection, and only through the stream it belongs to.

use crate::sdpfrag::SdpFrag;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vitrine_core::{SessionId, StreamId};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};

/// Most sessions (publishers plus subscribers) one process accepts; beyond it new offers get 503.
pub const MAX_SESSIONS: usize = 20_000;

/// A live WHIP or WHEP session.
#[async_trait::async_trait]
pub trait Session: Send + Sync + 'static {
    fn stream(&self) -> &StreamId;
    fn peer(&self) -> &Arc<dyn PeerConnection>;
    /// Ends the session: closes the peer connection and releases its router slot.
    async fn close(&self);
}

/// Adds the candidates of a trickle fragment to a session's peer connection.
pub async fn add_candidates(
    session: &dyn Session,
    frag: SdpFrag,
) -> Result<(), webrtc::error::Error> {
    for c in frag.candidates {
        session
            .peer()
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

/// The sessions of one role (WHIP or WHEP) in this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<SessionId, Arc<dyn Session>>>,
}

impl Sessions {
    pub fn is_full(&self) -> bool {
        self.map.lock().expect("sessions lock").len() >= MAX_SESSIONS
    }

    pub fn insert(&self, id: SessionId, session: Arc<dyn Session>) {
        self.map.lock().expect("sessions lock").insert(id, session);
    }

    /// The session `id` if it belongs to `stream` (a resource URL cannot cross streams).
    pub fn get(&self, stream: &StreamId, id: &SessionId) -> Option<Arc<dyn Session>> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id).filter(|s| s.stream() == stream).cloned()
    }

    pub fn remove(&self, id: &SessionId) -> Option<Arc<dyn Session>> {
        self.map.lock().expect("sessions lock").remove(id)
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every session, for shutdown.
    pub fn drain(&self) -> Vec<Arc<dyn Session>> {
        self.map
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(_, s)| s)
            .collect()
    }
}
