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

/// `/?name=<name>&room=<room>`, the join form filled in, with the code of the error that sent the person back.
pub fn join_url(room: &RoomName, name: &DisplayName, error: Option<&str>) -> String {
    let mut url = format!("/?name={}&room={}", encode_component(name.as_str()), encode_component(room.as_str()));
    if let Some(code) = error {
        url.push_str("&error=");
        url.push_str(&encode_component(code));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_url_encodes_spaces_and_non_ascii_letters() {
        let url = room_url(&RoomName::parse("Café").unwrap(), &DisplayName::parse("Ada L & co").unwrap());
        assert_eq!(url, "/r/caf%C3%A9?name=Ada%20L%20%26%20co");
    }

    #[test]
    fn a_join_url_fills_the_form_and_may_carry_an_error_code() {
        let (room, name) = (RoomName::parse("general").unwrap(), DisplayName::parse("Ada L").unwrap());
        assert_eq!(join_url(&room, &name, None), "/?name=Ada%20L&room=general");
        assert_eq!(join_url(&room, &name, Some("name_in_use")), "/?name=Ada%20L&room=general&error=name_in_use");
    }
}
