//! Chat websocket text frames as any viewer sends them: the client frame decoder, and the two
//! prefix checks the room applies to logged payloads. Decoding is total: a message or a typed
//! error, never a panic, and nothing larger than the frame limit is ever decoded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_chat::hub::moderation_of;
use vitrine_chat::protocol::{ClientMessage, DecodeError, MAX_FRAME_BYTES, RoomEvent, decode};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    match decode(frame) {
        Ok(message) => {
            assert!(frame.len() <= MAX_FRAME_BYTES);
            if let ClientMessage::Chat { text } = &message {
                assert!(text.len() < MAX_FRAME_BYTES);
            }
        }
        Err(e) => {
            assert!(!e.code().is_empty());
            if frame.len() > MAX_FRAME_BYTES {
                assert_eq!(e, DecodeError::TooBig);
            }
            // The error text is echoed to the client: it may quote the frame, never amplify it.
            let text = e.to_string();
            assert!(
                text.len() <= frame.len() + 1024,
                "{} bytes of error",
                text.len()
            );
        }
    }
    let _ = moderation_of(frame);
    let _ = RoomEvent::in_history(frame);
});
