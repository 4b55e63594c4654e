//! WHIP/WHEP session resources: what a `Location` URL points at, so that `PATCH` (trickle ICE,
//! ICE restart) and `DELETE` reach the right peer connection, and only through the stream it
//! belongs to. The resource's entity-tag names its current ICE generation (RFC 9725 §4.4).

use crate::candidates::CandidatePolicy;
use crate::peer::PeerError;
use crate::sdpfrag::{self, SdpFrag};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vitrine_core::{SessionId, StreamId};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

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
    /// Held through a whole `PATCH`: an ICE restart reads the generation, applies a new offer
    /// and answers, and a second restart (or a trickle) must see the result, not race it.
    ice_lock: tokio::sync::Mutex<()>,
}

/// The ICE credentials a session negotiated: one generation, replaced by each ICE restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceGeneration {
    /// This server's `ice-ufrag`.
    pub local_ufrag: String,
    /// The client's `ice-ufrag` and `ice-pwd`.
    pub remote_ufrag: String,
    pub remote_pwd: String,
}

impl IceGeneration {
    /// The session resource's entity-tag (a strong, quoted one): a digest of both sides'
    /// credentials, so it changes with every restart, even one where a side keeps its ufrag,
    /// and says nothing of the password.
    pub fn etag(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [&self.local_ufrag, &self.remote_ufrag, &self.remote_pwd] {
            ctx.update(part.as_bytes());
            ctx.update(b"\n");
        }
        let digest = ctx.finish();
        let hex: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("\"{hex}\"")
    }
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
            ice_lock: tokio::sync::Mutex::new(()),
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

    /// Holds off other `PATCH`es of this session while one is handled.
    pub async fn lock_ice(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ice_lock.lock().await
    }

    /// The ICE generation in force: `None` before the answer is applied (never seen by a
    /// client, which only learns of the session from the answer).
    pub async fn ice(&self) -> Option<IceGeneration> {
        let local = self.pc.current_local_description().await?;
        let remote = self.pc.current_remote_description().await?;
        let (local_ufrag, _) = sdpfrag::ice_credentials(&local.sdp)?;
        let (remote_ufrag, remote_pwd) = sdpfrag::ice_credentials(&remote.sdp)?;
        Some(IceGeneration {
            local_ufrag,
            remote_ufrag,
            remote_pwd,
        })
    }

    /// Restarts ICE with the client's new credentials and returns the new local description
    /// (its candidates filtered by `policy`).
    ///
    /// The client sends only credentials and candidates (RFC 9725 §4.4), not an offer; the
    /// peer connection restarts ICE when it applies a remote offer with new credentials, so the
    /// client's last offer is applied again under the new ones, and answered: the answer carries
    /// this side's new credentials, while media, DTLS and the transport stay as negotiated.
    pub async fn restart_ice(
        &self,
        ufrag: &str,
        pwd: &str,
        policy: CandidatePolicy,
    ) -> Result<String, PeerError> {
        let current = self
            .pc
            .current_remote_description()
            .await
            .ok_or(PeerError::NoLocalDescription)?;
        let offer = sdpfrag::with_ice_credentials(&current.sdp, ufrag, pwd);
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.pc
            .current_local_description()
            .await
            .map(|d| policy.local_sdp(&d.sdp))
            .ok_or(PeerError::NoLocalDescription)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_changes_with_either_sides_credentials() {
        let generation = IceGeneration {
            local_ufrag: "srv1".into(),
            remote_ufrag: "cli1".into(),
            remote_pwd: "clientpasswordclientpw".into(),
        };
        let etag = generation.etag();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 26);
        assert_eq!(etag, generation.clone().etag(), "stable for one generation");
        let pinned_local = IceGeneration {
            remote_ufrag: "cli2".into(),
            ..generation.clone()
        };
        assert_ne!(pinned_local.etag(), etag);
        let new_pwd = IceGeneration {
            remote_pwd: "otherpasswordotherpass".into(),
            ..generation.clone()
        };
        assert_ne!(new_pwd.etag(), etag);
        // A digest: nothing of the credentials shows.
        assert!(etag[1..25].bytes().all(|b| b.is_ascii_hexdigit()), "{etag}");
    }
}
