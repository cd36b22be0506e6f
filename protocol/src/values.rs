//! Validated domain values. Each has one `parse` constructor that applies every rule; once built, a value is valid.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Display names and room names are at most this many characters (Unicode scalar values), after trimming.
pub const MAX_NAME_CHARS: usize = 32;
/// Message bodies are at most this many characters, after trimming.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Why a value was refused. The `Display` text is written for the person who typed the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("Please enter a {0}.")]
    Empty(Field),
    #[error("A {field} can be at most {max} characters long.")]
    TooLong { field: Field, max: usize },
    #[error("A {0} can't contain control characters.")]
    ControlCharacter(Field),
    #[error("A room name needs at least one letter or digit.")]
    NoLetterOrDigit,
    #[error("A display name can't contain invisible characters.")]
    InvisibleCharacter,
    #[error("A client message id is 1 to 64 letters, digits, '-' or '_'.")]
    MalformedClientId,
    #[error("A session token is 16 to 128 letters, digits, '-' or '_'.")]
    MalformedSession,
}

/// Which value a [`ValidationError`] is about, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    DisplayName,
    RoomName,
    Message,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::DisplayName => "display name",
            Field::RoomName => "room name",
            Field::Message => "message",
        })
    }
}

/// Trims `input` and checks the rules shared by every single-line value.
fn single_line(input: &str, field: Field, max: usize) -> Result<&str, ValidationError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::Empty(field));
    }
    if trimmed.chars().count() > max {
        return Err(ValidationError::TooLong { field, max });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacter(field));
    }
    Ok(trimmed)
}

/// Implements `Deserialize` through `parse`, so that a value that arrives over the wire is validated exactly like
/// one typed into a form. Serialization is transparent: the value travels as a plain string.
macro_rules! validated_string {
    ($ty:ident) => {
        impl $ty {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $ty::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The name a person shows in a room: trimmed, 1–32 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let name = single_line(input, Field::DisplayName, MAX_NAME_CHARS)?;
        // "Ada" followed by a zero-width space looks exactly like "Ada": invisible characters would let anyone
        // pass for someone else.
        if name.chars().any(is_invisible) {
            return Err(ValidationError::InvisibleCharacter);
        }
        Ok(Self(name.to_owned()))
    }
}

/// Format and filler characters that render as nothing (Unicode's invisible characters, by code point).
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
        | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}
validated_string!(DisplayName);

impl DisplayName {
    /// Whether two names would be mistaken for each other in a room: the same letters, whatever their case.
    pub fn same_as(&self, other: &DisplayName) -> bool {
        // ASCII names (most) compare without allocating; for them both ways agree.
        if self.0.is_ascii() && other.0.is_ascii() {
            return self.0.eq_ignore_ascii_case(&other.0);
        }
        self.0.to_lowercase() == other.0.to_lowercase()
    }
}

/// The secret that makes several connections one person: every tab of a browser (or every connection of a
/// program) presenting the same token is the same member of a room. The browser gets one from the server in an
/// `HttpOnly` cookie; other clients pass their own in [`crate::ChatAuth`]. It is never shown to anybody else:
/// rooms see a [`crate::MemberId`] derived from it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let valid_chars = input.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if (16..=128).contains(&input.len()) && valid_chars {
            Ok(Self(input.to_owned()))
        } else {
            Err(ValidationError::MalformedSession)
        }
    }
}
validated_string!(SessionToken);

impl fmt::Debug for SessionToken {
    // A secret: logs show that there is one, never what it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

/// A room, identified by a case-insensitive slug: `"Rust  Lovers!"` and `"rust-lovers"` are the same room.
///
/// The input is trimmed and must be 1–32 characters without control characters. Letters are lowercased, letters
/// and digits are kept (any script), and every run of other characters becomes one `-`, with none at either end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = single_line(input, Field::RoomName, MAX_NAME_CHARS)?;
        let mut slug = String::with_capacity(trimmed.len());
        let mut pending_dash = false;
        for c in trimmed.chars() {
            if c.is_alphanumeric() {
                if pending_dash && !slug.is_empty() {
                    slug.push('-');
                }
                pending_dash = false;
                // Lowercasing can add marks that are not letters ('İ' becomes 'i' and a combining dot): they are
                // dropped, so that a slug always parses back to itself and is never longer than its input.
                slug.extend(c.to_lowercase().filter(|l| l.is_alphanumeric()));
            } else {
                pending_dash = true;
            }
        }
        if slug.is_empty() {
            return Err(ValidationError::NoLetterOrDigit);
        }
        Ok(Self(slug))
    }
}
validated_string!(RoomName);

/// The text of a chat message: trimmed, 1–2000 characters. It may span lines (newlines and tabs are allowed), but
/// holds no other control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::Empty(Field::Message));
        }
        if trimmed.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ValidationError::TooLong { field: Field::Message, max: MAX_MESSAGE_CHARS });
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ValidationError::ControlCharacter(Field::Message));
        }
        Ok(Self(trimmed.to_owned()))
    }
}
validated_string!(MessageBody);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_trimmed() {
        assert_eq!(DisplayName::parse("  Ada \t").unwrap().as_str(), "Ada");
    }

    #[test]
    fn a_blank_display_name_is_rejected() {
        assert_eq!(DisplayName::parse("   "), Err(ValidationError::Empty(Field::DisplayName)));
    }

    #[test]
    fn a_display_name_of_32_characters_is_accepted_and_33_is_rejected() {
        let ok = "é".repeat(32);
        assert_eq!(DisplayName::parse(&ok).unwrap().as_str(), ok);
        assert_eq!(
            DisplayName::parse(&"é".repeat(33)),
            Err(ValidationError::TooLong { field: Field::DisplayName, max: 32 })
        );
    }

    #[test]
    fn a_display_name_with_a_control_character_is_rejected() {
        assert_eq!(DisplayName::parse("Ada\u{7}"), Err(ValidationError::ControlCharacter(Field::DisplayName)));
        assert_eq!(DisplayName::parse("A\nB"), Err(ValidationError::ControlCharacter(Field::DisplayName)));
    }

    #[test]
    fn room_names_are_normalised_to_a_lowercase_slug() {
        assert_eq!(RoomName::parse("  Rust  Lovers! ").unwrap().as_str(), "rust-lovers");
        assert_eq!(RoomName::parse("general").unwrap().as_str(), "general");
        assert_eq!(RoomName::parse("--Café__Crème--").unwrap().as_str(), "café-crème");
        assert_eq!(RoomName::parse("GENERAL"), RoomName::parse("general"));
    }

    #[test]
    fn a_room_name_without_letters_or_digits_is_rejected() {
        assert_eq!(RoomName::parse("!!! ---"), Err(ValidationError::NoLetterOrDigit));
    }

    #[test]
    fn a_room_name_longer_than_32_characters_is_rejected() {
        assert_eq!(RoomName::parse(&"r".repeat(33)), Err(ValidationError::TooLong { field: Field::RoomName, max: 32 }));
    }

    #[test]
    fn a_room_slug_parses_to_itself() {
        let slug = RoomName::parse("Hello World 42").unwrap();
        assert_eq!(RoomName::parse(slug.as_str()).unwrap(), slug);
    }

    #[test]
    fn every_letter_of_every_script_gives_a_slug_that_parses_to_itself_within_the_length_limit() {
        // Stored messages are checked again when read back, so a slug that did not parse to itself (or grew past
        // 32 characters when lowercased) would make its room unreadable after the first message.
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32).filter(|c| c.is_alphanumeric()) {
            let input = c.to_string().repeat(MAX_NAME_CHARS);
            let slug = RoomName::parse(&input).unwrap_or_else(|e| panic!("{c:?} ×32: {e}"));
            assert!(slug.as_str().chars().count() <= MAX_NAME_CHARS, "{c:?} ×32 grew to {slug:?}");
            assert_eq!(RoomName::parse(slug.as_str()).as_ref(), Ok(&slug), "{c:?} ×32");
        }
    }

    #[test]
    fn a_dotted_capital_i_becomes_a_plain_i() {
        assert_eq!(RoomName::parse("İstanbul").unwrap().as_str(), "istanbul");
    }

    #[test]
    fn a_message_keeps_inner_newlines_but_not_other_control_characters() {
        assert_eq!(MessageBody::parse("\n hi\nthere \n").unwrap().as_str(), "hi\nthere");
        assert_eq!(MessageBody::parse("bell\u{7}"), Err(ValidationError::ControlCharacter(Field::Message)));
    }

    #[test]
    fn a_message_longer_than_the_limit_is_rejected() {
        assert!(MessageBody::parse(&"x".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert_eq!(
            MessageBody::parse(&"x".repeat(MAX_MESSAGE_CHARS + 1)),
            Err(ValidationError::TooLong { field: Field::Message, max: MAX_MESSAGE_CHARS })
        );
    }

    #[test]
    fn errors_read_as_plain_words() {
        assert_eq!(ValidationError::Empty(Field::DisplayName).to_string(), "Please enter a display name.");
        assert_eq!(
            ValidationError::TooLong { field: Field::RoomName, max: 32 }.to_string(),
            "A room name can be at most 32 characters long."
        );
    }

    #[test]
    fn values_from_the_wire_are_validated_when_deserialized() {
        let name: DisplayName = serde_json::from_str("\" Ada \"").unwrap();
        assert_eq!(name.as_str(), "Ada");
        let err = serde_json::from_str::<DisplayName>("\"\"").unwrap_err();
        assert!(err.to_string().contains("Please enter a display name."), "{err}");
        assert_eq!(serde_json::to_string(&RoomName::parse("A B").unwrap()).unwrap(), "\"a-b\"");
    }

    #[test]
    fn names_that_differ_only_in_case_are_the_same_name() {
        assert!(DisplayName::parse("Ada").unwrap().same_as(&DisplayName::parse("aDA").unwrap()));
        assert!(!DisplayName::parse("Ada").unwrap().same_as(&DisplayName::parse("Ada L").unwrap()));
        let name = |s: &str| DisplayName::parse(s).unwrap();
        assert!(name("Élodie").same_as(&name("éLODIE")), "beyond ASCII too");
        assert!(!name("Élodie").same_as(&name("Elodie")), "an accent makes another name");
    }

    #[test]
    fn a_session_token_is_long_url_safe_text_and_never_printed_in_debug() {
        let token = SessionToken::parse("abcdEFGH1234-_xy").unwrap();
        assert_eq!(format!("{token:?}"), "SessionToken(…)");
        for bad in ["short", "has spaces in it, see", &"x".repeat(129), "ünïcödé-ünïcödé-ü"] {
            assert_eq!(SessionToken::parse(bad), Err(ValidationError::MalformedSession), "{bad}");
        }
    }

    #[test]
    fn a_display_name_with_invisible_characters_is_refused() {
        for sneaky in ["Ada\u{200B}", "A\u{00AD}da", "\u{2060}Ada", "Ada\u{FE0F}"] {
            assert_eq!(DisplayName::parse(sneaky), Err(ValidationError::InvisibleCharacter), "{sneaky:?}");
        }
        assert!(DisplayName::parse("Zoë 🦀").is_ok());
    }
}
