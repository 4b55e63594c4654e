//! Property tests of the chat codec: no input makes it panic, every refusal has a documented
//! code, and the wire form of logged events keeps the payload intact with its id first.

use proptest::prelude::*;
use vitrine_chat::protocol::{RoomEvent, decode, with_id};
use vitrine_core::EventId;

const CODES: &[&str] = &["too_big", "invalid_json", "unknown_type", "invalid_message"];

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,2000}") {
        if let Err(e) = decode(&text) {
            prop_assert!(CODES.contains(&e.code()));
        }
    }

    #[test]
    fn json_shaped_input_is_decoded_or_refused_with_a_code(
        kind in prop::sample::select(vec!["hello", "chat", "buy", "react", "moderate", "ping", "x", ""]),
        key in "[a-z_]{1,12}",
        value in prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
        ],
    ) {
        let frame = serde_json::json!({ "type": kind, key: value }).to_string();
        match decode(&frame) {
            Ok(_) => prop_assert!(["hello", "chat", "buy", "react", "moderate", "ping"].contains(&kind)),
            Err(e) => prop_assert!(CODES.contains(&e.code())),
        }
    }

    #[test]
    fn wire_form_keeps_the_event_and_puts_the_id_first(
        text in ".{0,300}", hi in any::<u64>(), lo in any::<u64>(), emoji in ".{1,8}"
    ) {
        for event in [
            RoomEvent::Reaction { emoji: emoji.clone() },
            RoomEvent::Chat {
                from: vitrine_chat::protocol::Author {
                    member_id: "by_1".into(),
                    name: text.clone(),
                    role: vitrine_chat::protocol::Role::Buyer,
                },
                text: text.clone(),
                ts: 1,
            },
        ] {
            let payload = serde_json::to_string(&event).unwrap();
            let id = EventId { hi, lo };
            let wire = with_id(id, &payload);
            let prefix = format!("{{\"id\":\"{id}\",");
            prop_assert!(wire.starts_with(&prefix));
            let mut value: serde_json::Value = serde_json::from_str(&wire).unwrap();
            prop_assert_eq!(value["id"].as_str().unwrap().parse::<EventId>().unwrap(), id);
            value.as_object_mut().unwrap().remove("id");
            let back: RoomEvent = serde_json::from_value(value).unwrap();
            prop_assert_eq!(back, event);
        }
    }
}
