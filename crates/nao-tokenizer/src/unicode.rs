//! Unicode helpers with llama.cpp's exact semantics (`src/unicode.cpp`,
//! `scripts/gen-unicode-data.py`): the coarse code-point classes its pre-tokenizer
//! regexes see, and GPT-2's byte <-> printable-unicode mapping.

use std::sync::OnceLock;
use unicode_general_category::{get_general_category, GeneralCategory as G};

/// The coarse class of one code point, as llama.cpp's flags table has it.
/// Whitespace (the Unicode `White_Space` property, which is what Python's `regex`
/// `\s` matches) wins over the general category, as in llama.cpp's regex collapse.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    Whitespace,
    Letter,
    Number,
    Punctuation,
    Symbol,
    Mark,
    /// Separators that are not whitespace, controls, format characters, unassigned.
    Other,
}

pub(crate) fn class_of(c: char) -> Class {
    if c.is_whitespace() {
        return Class::Whitespace;
    }
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~' => Class::Symbol,
            '!'..='/' | ':'..='@' | '['..='_' | '{' | '}' => Class::Punctuation,
            _ => Class::Other,
        };
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => Class::Mark,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => Class::Punctuation,
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => Class::Symbol,
        _ => Class::Other,
    }
}

/// GPT-2's map from each byte to a printable code point (`bytes_to_unicode`).
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static MAP: OnceLock<[char; 256]> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = ['\0'; 256];
        let mut n = 0u32;
        for (b, slot) in map.iter_mut().enumerate() {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let cp = if printable {
                b as u32
            } else {
                n += 1;
                255 + n
            };
            // All values are below 0x144, so always valid scalar values.
            *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
        }
        map
    })
}

/// The inverse of [`byte_to_char`]: `None` for code points outside the mapping.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    static INV: OnceLock<Vec<i16>> = OnceLock::new();
    let inv = INV.get_or_init(|| {
        let mut inv = vec![-1i16; 0x144];
        for (b, &c) in byte_to_char().iter().enumerate() {
            inv[c as usize] = b as i16;
        }
        inv
    });
    inv.get(c as usize)
        .and_then(|&b| if b >= 0 { Some(b as u8) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_roundtrips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char()[b as usize]), Some(b));
        }
        assert_eq!(byte_to_char()[b' ' as usize], 'Ġ');
        assert_eq!(byte_to_char()[b'\n' as usize], 'Ċ');
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn classes() {
        assert_eq!(class_of('a'), Class::Letter);
        assert_eq!(class_of('é'), Class::Letter);
        assert_eq!(class_of('世'), Class::Letter);
        assert_eq!(class_of('Ж'), Class::Letter);
        assert_eq!(class_of('7'), Class::Number);
        assert_eq!(class_of('²'), Class::Number);
        assert_eq!(class_of(' '), Class::Whitespace);
        assert_eq!(class_of('\u{3000}'), Class::Whitespace);
        assert_eq!(class_of('\u{200B}'), Class::Other);
        assert_eq!(class_of('\u{1C}'), Class::Other);
        assert_eq!(class_of('😀'), Class::Symbol);
        assert_eq!(class_of('\u{301}'), Class::Mark);
        assert_eq!(class_of('，'), Class::Punctuation);
        assert_eq!(class_of('$'), Class::Symbol);
        assert_eq!(class_of('_'), Class::Punctuation);
    }
}
