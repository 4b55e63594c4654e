//! The Vitrine server as a library: configuration, storage, the REST API and the composition of
//! the roles. `main.rs` is the command line on top; integration tests start it in-process.

pub mod api;
pub mod app;
pub mod bids;
pub mod captions;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod hls_origins;
pub mod models;
pub mod oauth;
pub mod openapi;
pub mod operators;
pub mod pages;
pub mod portal;
pub mod regions;
pub mod roles;
pub mod sale_shares;
pub mod state;
pub mod store;
pub mod telemetry;
