//! Building the app's URLs. Slugs may hold any letter, so path and query parts are percent-encoded.

use protocol::{DisplayName, RoomName};

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/r/<room>?name=<name>`: where the join form sends a person.
pub fn room_url(room: &RoomName, name: &DisplayName) -> String {
    format!("/r/{}?name={}", encode_component(room.as_str()), encode_component(name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_url_encodes_spaces_and_non_ascii_letters() {
        let url = room_url(&RoomName::parse("Café").unwrap(), &DisplayName::parse("Ada L & co").unwrap());
        assert_eq!(url, "/r/caf%C3%A9?name=Ada%20L%20%26%20co");
    }
}
