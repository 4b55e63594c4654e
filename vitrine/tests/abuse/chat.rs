//! Attacks on the chat surface.
