//! GPT-2's byte-level BPE vocabulary, as CTranslate2 ships it (`vocabulary.txt`, one token per
//! line in printable "byte-to-unicode" form), turned back into the raw bytes whisper.cpp
//! expects.

use std::collections::HashMap;

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the other 68 are shifted
/// to U+0100 and beyond. Returns the inverse: character -> byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("a valid code point")
        };
        map.insert(c, b);
    }
    map
}

/// The raw bytes of each token before `<|endoftext|>` (whisper.cpp numbers the special tokens
/// itself). `None` for a line that is not byte-level BPE text.
pub fn token_bytes(vocabulary: &str) -> Option<Vec<Vec<u8>>> {
    let decode = unicode_to_byte();
    let mut out = Vec::new();
    for line in vocabulary.lines() {
        if line == "<|endoftext|>" {
            return Some(out);
        }
        out.push(
            line.chars()
                .map(|c| decode.get(&c).copied())
                .collect::<Option<Vec<u8>>>()?,
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_decode() {
        let tokens = token_bytes("!\nĠthe\nĊ\nÃ©\n<|endoftext|>\n<|en|>\n").unwrap();
        assert_eq!(
            tokens,
            vec![
                b"!".to_vec(),
                b" the".to_vec(),
                b"\n".to_vec(),
                "é".as_bytes().to_vec()
            ]
        );
        assert_eq!(unicode_to_byte().len(), 256);
        assert!(token_bytes("日本\n").is_none(), "not byte-level text");
    }
}
