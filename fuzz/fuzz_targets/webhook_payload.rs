//! Webhook messages built from arbitrary field values, as the outbox and the dispatcher build
//! them: the signing secret as a seller pastes it, the event type, the timestamp, the message
//! id and the event's data. The body is the outbox's `{"type", "timestamp", "data"}` document,
//! signed as the dispatcher signs it; a Standard Webhooks receiver must then be able to parse
//! the `webhook-signature` header back and verify it with either secret, and reject it with
//! any other body.
//!
//! Input: five newline-separated fields (secret, message id, Unix seconds, event type), the
//! rest being the data (JSON, or else taken as a string).

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sha2::Sha256;
use vitrine_checkout::webhooks::EventType;
use vitrine_checkout::webhooks::signature::{SigningSecret, signature_header};
use vitrine_core::Timestamp;

/// The specification's example secret, for inputs whose secret does not parse.
const FALLBACK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The second live secret of a rotation (fixed, so that every run of an input is the same).
const ROTATED: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(5, '\n');
    let (secret, id, seconds, kind) = (
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
    );
    let data = fields.next().unwrap_or_default();
    let secret = match SigningSecret::parse(secret) {
        Ok(s) => {
            assert_eq!(SigningSecret::parse(&s.expose()), Ok(s.clone()));
            s
        }
        Err(_) => SigningSecret::parse(FALLBACK).expect("the example secret parses"),
    };
    let seconds: i64 = seconds.trim().parse().unwrap_or(1_614_265_330);
    let kind = EventType::parse(kind).unwrap_or(EventType::OrderPaid);
    let data: Value = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into()));
    let at = Timestamp(seconds.saturating_mul(1000));
    let body = json!({ "type": kind.as_str(), "timestamp": at, "data": data }).to_string();
    let parsed: Value = serde_json::from_str(&body).expect("the body is JSON");
    assert_eq!(parsed["type"], kind.as_str());
    if (0..=Timestamp::MAX_MILLIS).contains(&at.millis()) {
        assert_eq!(Timestamp::parse(&at.to_string()), Ok(at));
    }

    let other = SigningSecret::parse(ROTATED).expect("the rotated secret parses");
    let header = signature_header(&[&secret, &other], id, seconds, body.as_bytes());
    assert!(verifies(&header, &secret, id, seconds, body.as_bytes()));
    assert!(verifies(&header, &other, id, seconds, body.as_bytes()));
    assert!(!verifies(&header, &secret, id, seconds, b"{}"));
    // An arbitrary header (here the id line) parses without panic and verifies nothing.
    assert!(!verifies(id, &secret, id, seconds, body.as_bytes()));
});

/// What a receiver does: split the header into its `v1,<base64>` signatures and accept when
/// one of them is the HMAC of `{id}.{timestamp}.{body}` under `secret`.
fn verifies(header: &str, secret: &SigningSecret, id: &str, ts: i64, body: &[u8]) -> bool {
    let key = STANDARD
        .decode(&secret.expose()["whsec_".len()..])
        .expect("an exposed secret is base64");
    header.split(' ').any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&tag).is_ok()
    })
}
