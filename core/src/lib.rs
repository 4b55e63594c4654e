//! Vocabulary shared by every Vitrine role.
//!
//! **Contract:** this crate holds types and narrow traits only. It performs no I/O of its own and
//! knows nothing about WebRTC, SQL or the chat protocol, so every other crate may depend on it
//! without dragging a role along.

pub mod directory;
pub mod ids;
pub mod problem;
pub mod secret;

pub use directory::{DirectoryError, StreamDirectory, StreamRecord, StreamState};
pub use ids::{IdError, SellerId, SessionId, StreamId};
pub use problem::Problem;
pub use secret::{Secret, SecretHash};
