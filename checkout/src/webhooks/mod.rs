//! Signed webhooks (Standard Webhooks 1.0) for sellers' systems: the events, the transactional
//! outbox they are written to, endpoints and their secrets (sealed at rest), the retry schedule
//! and the dispatcher that delivers.

pub mod dispatcher;
pub mod endpoints;
pub mod events;
pub mod metrics;
pub mod outbox;
pub mod resolver;
pub mod schedule;
pub mod sealing;
pub mod signature;

pub use endpoints::{Delivery, Endpoint, EndpointPatch, EndpointStatus, NewEndpoint, TargetPolicy};
pub use events::EventType;
