//! The threat model as tests: each module attacks one surface the way an attacker or a careless
//! user would (docs/SECURITY.md lists every threat with the test that covers it). Every test here
//! was written before its fix and failed on the code it guards against.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod chat;
mod commerce;
mod media;
mod oauth;
mod web;
