//! WHIP ingest (RFC 9725): authenticates publishers by stream key, negotiates their peer
//! connection and feeds their RTP into the stream's SFU router.
//!
//! **Contract:** a publisher only ever reaches the router of the stream whose key it presented;
//! a second publish with the valid key replaces the first without touching the subscribers.

pub mod publisher;
pub mod whip;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vitrine_core::{SessionId, StreamId};
use vitrine_sfu::Sfu;
use vitrine_sfu::session::Sessions;

/// The ingest role: the publishers of this process.
pub struct Ingest {
    pub sfu: Arc<Sfu>,
    pub sessions: Arc<Sessions>,
    /// The session currently publishing each stream, so that a new publish can replace it.
    current: Mutex<HashMap<StreamId, SessionId>>,
    /// Set by a drain: publishers closed from now on are moving to another node, so their
    /// streams are not marked ended.
    handing_off: AtomicBool,
}

impl Ingest {
    pub fn new(sfu: Arc<Sfu>) -> Arc<Self> {
        Arc::new(Self {
            sfu,
            sessions: Arc::default(),
            current: Mutex::default(),
            handing_off: AtomicBool::new(false),
        })
    }

    /// Ends the stream's publisher, if one is connected (the stream is being deleted).
    pub async fn end_stream(&self, stream: &StreamId) {
        let current = self.current.lock().expect("current lock").remove(stream);
        if let Some(session) = current.and_then(|id| self.sessions.remove(&id)) {
            session.close().await;
        }
    }

    /// Ends every publisher as a drain does: each seller's page re-publishes, and is sent to
    /// another node; their streams stay live meanwhile.
    pub async fn hand_off_all(&self) {
        self.handing_off.store(true, Ordering::Relaxed);
        self.close_all().await;
    }

    /// Whether closing publishers are moving to another node (a drain), not ending.
    pub fn is_handing_off(&self) -> bool {
        self.handing_off.load(Ordering::Relaxed)
    }

    /// Ends every publisher (graceful shutdown).
    pub async fn close_all(&self) {
        for s in self.sessions.drain() {
            s.close().await;
        }
    }
}
