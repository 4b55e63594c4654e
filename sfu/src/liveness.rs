//! A session's view of its connection: [`LivenessWatch`] turns the peer connection's state
//! changes into what the session task acts on (connected, gone, never connected), with a grace
//! for short disconnections and a deadline for connecting at all. Time comes from tokio's clock,
//! so the tests run on a paused one.

use std::time::Duration;
use tokio::sync::watch;
use webrtc::peer_connection::RTCPeerConnectionState;

/// How long a connection may stay ICE-disconnected before its session is ended.
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(10);

/// What a session task needs to know about its connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The connection is (again) up.
    Connected,
    /// Failed, closed, or disconnected for longer than [`DISCONNECTED_GRACE`]: end the session.
    Gone,
    /// Not connected within the connect timeout: reap the session.
    NeverConnected,
}

/// Follows a connection's state and reports [`Liveness`] changes; cancel-safe, so it can sit in
/// a session task's `select!`.
pub struct LivenessWatch {
    state: watch::Receiver<RTCPeerConnectionState>,
    disconnected_since: Option<tokio::time::Instant>,
    /// Until the first connection: when the session is reaped if it has not connected.
    connect_by: Option<tokio::time::Instant>,
}

impl LivenessWatch {
    /// Watches a new session that must connect within `connect_timeout`.
    pub fn new(state: watch::Receiver<RTCPeerConnectionState>, connect_timeout: Duration) -> Self {
        Self {
            state,
            disconnected_since: None,
            connect_by: Some(tokio::time::Instant::now() + connect_timeout),
        }
    }

    pub async fn next(&mut self) -> Liveness {
        loop {
            let grace = self.disconnected_since.map(|at| at + DISCONNECTED_GRACE);
            let connect_by = self.connect_by;
            let deadline = async {
                match (grace, connect_by) {
                    (_, Some(by)) => {
                        tokio::time::sleep_until(by).await;
                        Liveness::NeverConnected
                    }
                    (Some(at), None) => {
                        tokio::time::sleep_until(at).await;
                        Liveness::Gone
                    }
                    (None, None) => std::future::pending().await,
                }
            };
            tokio::select! {
                verdict = deadline => return verdict,
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return Liveness::Gone;
                    }
                    match *self.state.borrow_and_update() {
                        RTCPeerConnectionState::Connected => {
                            self.disconnected_since = None;
                            self.connect_by = None;
                            return Liveness::Connected;
                        }
                        RTCPeerConnectionState::Disconnected => {
                            self.disconnected_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            return Liveness::Gone;
                        }
                        _ => self.disconnected_since = None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::CONNECT_TIMEOUT;

    #[tokio::test(start_paused = true)]
    async fn a_connection_disconnected_too_long_is_gone() {
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx, CONNECT_TIMEOUT);
        tx.send_replace(RTCPeerConnectionState::Connected);
        assert_eq!(live.next().await, Liveness::Connected);

        // A short outage that recovers keeps the session.
        tx.send_replace(RTCPeerConnectionState::Disconnected);
        let recovered = tokio::time::timeout(DISCONNECTED_GRACE / 2, live.next()).await;
        assert!(recovered.is_err(), "still waiting inside the grace period");
        tx.send_replace(RTCPeerConnectionState::Connected);
        assert_eq!(live.next().await, Liveness::Connected);

        // An outage longer than the grace period ends it, on the virtual clock.
        tx.send_replace(RTCPeerConnectionState::Disconnected);
        let started = tokio::time::Instant::now();
        assert_eq!(live.next().await, Liveness::Gone);
        assert!(tokio::time::Instant::now() - started >= DISCONNECTED_GRACE);
    }

    #[tokio::test]
    async fn failure_and_a_dropped_connection_are_gone_at_once() {
        let (tx, rx) = watch::channel(RTCPeerConnectionState::Connected);
        let mut live = LivenessWatch::new(rx, CONNECT_TIMEOUT);
        tx.send_replace(RTCPeerConnectionState::Failed);
        assert_eq!(live.next().await, Liveness::Gone);
        let (tx, rx) = watch::channel(RTCPeerConnectionState::Connected);
        let mut live = LivenessWatch::new(rx, CONNECT_TIMEOUT);
        drop(tx);
        assert_eq!(live.next().await, Liveness::Gone);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_never_connects_is_reaped_at_its_deadline() {
        let timeout = Duration::from_secs(10);
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx, timeout);
        let started = tokio::time::Instant::now();
        // Checking (ICE in progress) does not extend the deadline.
        tx.send_replace(RTCPeerConnectionState::Connecting);
        assert_eq!(live.next().await, Liveness::NeverConnected);
        assert_eq!(tokio::time::Instant::now() - started, timeout);

        // A session that connects in time is no longer subject to the deadline.
        let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
        let mut live = LivenessWatch::new(rx, timeout);
        tx.send_replace(RTCPeerConnectionState::Connected);
        assert_eq!(live.next().await, Liveness::Connected);
        let later = tokio::time::timeout(timeout * 3, live.next()).await;
        assert!(
            later.is_err(),
            "a connected session outlives the connect timeout"
        );
    }
}
