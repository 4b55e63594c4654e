//! The narrow view of the stream catalogue that the media roles need: find a stream, check a
//! publisher's key, record that it went live or ended. The binary implements it over SQL; tests
//! use [`MemoryDirectory`].

use crate::{Secret, SecretHash, SellerId, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Created, never published, or waiting for its first publisher.
    Idle,
    /// A publisher is connected.
    Live,
    /// The publisher stopped; a new publish makes it live again.
    Ended,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "idle" => Some(Self::Idle),
            "live" => Some(Self::Live),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// What the media roles know of a stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub id: StreamId,
    pub seller_id: SellerId,
    pub title: String,
    pub state: StreamState,
    pub stream_key_hash: SecretHash,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("stream directory unavailable: {0}")]
    Unavailable(String),
}

/// The stream catalogue as the media roles see it.
#[async_trait::async_trait]
pub trait StreamDirectory: Send + Sync + 'static {
    async fn find(&self, id: &StreamId) -> Result<Option<StreamRecord>, DirectoryError>;
    async fn set_state(&self, id: &StreamId, state: StreamState) -> Result<(), DirectoryError>;
}

/// In-memory directory for tests of the media roles.
#[derive(Default)]
pub struct MemoryDirectory {
    streams: Mutex<HashMap<StreamId, StreamRecord>>,
}

impl MemoryDirectory {
    /// Adds a stream and returns its clear-text key.
    pub fn add(&self, id: StreamId, title: &str) -> Secret {
        let key = Secret::generate("sk");
        let record = StreamRecord {
            id: id.clone(),
            seller_id: SellerId::generate(),
            title: title.to_owned(),
            state: StreamState::Idle,
            stream_key_hash: key.hash(),
        };
        self.streams.lock().unwrap().insert(id, record);
        key
    }
}

#[async_trait::async_trait]
impl StreamDirectory for MemoryDirectory {
    async fn find(&self, id: &StreamId) -> Result<Option<StreamRecord>, DirectoryError> {
        Ok(self.streams.lock().unwrap().get(id).cloned())
    }

    async fn set_state(&self, id: &StreamId, state: StreamState) -> Result<(), DirectoryError> {
        if let Some(s) = self.streams.lock().unwrap().get_mut(id) {
            s.state = state;
        }
        Ok(())
    }
}
