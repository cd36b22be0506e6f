//! The join page, `/`: a plain GET form. Without JavaScript the browser submits it to the server, which renders
//! the errors or redirects to the room; once hydrated, the router does the same in the browser. Both run this one
//! component, so both apply the same rules with the same words.

use leptos::prelude::*;
use leptos_router::components::{Form, Redirect};
use leptos_router::hooks::use_query_map;
use protocol::{DisplayName, RoomName};

use crate::room_url;

/// What a submitted join form leads to.
#[derive(Debug, Clone, PartialEq)]
enum Submission {
    /// Go to this room URL.
    Valid(String),
    /// Show these errors next to their fields.
    Invalid { name: Option<String>, room: Option<String> },
}

fn judge(name: &str, room: &str) -> Submission {
    match (DisplayName::parse(name), RoomName::parse(room)) {
        (Ok(name), Ok(room)) => Submission::Valid(room_url(&room, &name)),
        (name, room) => {
            Submission::Invalid { name: name.err().map(|e| e.to_string()), room: room.err().map(|e| e.to_string()) }
        }
    }
}

#[component]
pub fn JoinPage() -> impl IntoView {
    let query = use_query_map();
    let name_value = move || query.read().get("name").unwrap_or_default();
    let room_value = move || query.read().get("room").unwrap_or_default();
    // A submitted form always carries both fields. A link may carry one, to prefill it, and is not judged.
    let submission = Memo::new(move |_| {
        let query = query.read();
        match (query.get_str("name"), query.get_str("room")) {
            (Some(name), Some(room)) => Some(judge(name, room)),
            _ => None,
        }
    });
    let error_for = move |field: &'static str| {
        move || match submission.get() {
            Some(Submission::Invalid { name, room }) => {
                if field == "name" {
                    name
                } else {
                    room
                }
            }
            _ => None,
        }
    };
    let name_error = error_for("name");
    let room_error = error_for("room");

    view! {
        <main class="page narrow">
            <header class="brand">
                <h1>"Causerie"</h1>
                <p class="tagline">"Pick a name and a room, and start talking."</p>
            </header>
            <Form method="GET" action="/">
                <div class="field">
                    <label for="name">"Display name"</label>
                    <input
                        id="name"
                        name="name"
                        type="text"
                        autocomplete="nickname"
                        placeholder="Ada"
                        value=name_value
                        aria-invalid=move || name_error().is_some().to_string()
                        aria-describedby="name-error"
                    />
                    {move || name_error().map(|e| view! { <p id="name-error" class="field-error" role="alert">{e}</p> })}
                </div>
                <div class="field">
                    <label for="room">"Room"</label>
                    <input
                        id="room"
                        name="room"
                        type="text"
                        autocomplete="off"
                        placeholder="general"
                        value=room_value
                        aria-invalid=move || room_error().is_some().to_string()
                        aria-describedby="room-error"
                    />
                    {move || room_error().map(|e| view! { <p id="room-error" class="field-error" role="alert">{e}</p> })}
                </div>
                <button type="submit">"Join room"</button>
            </Form>
            {move || match submission.get() {
                Some(Submission::Valid(url)) => Some(view! { <Redirect path=url /> }),
                _ => None,
            }}
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_form_leads_to_the_room_slug() {
        assert_eq!(judge(" Ada ", "Rust Fans"), Submission::Valid("/r/rust-fans?name=Ada".into()));
    }

    #[test]
    fn each_invalid_field_gets_its_own_message() {
        assert_eq!(
            judge("", "!!!"),
            Submission::Invalid {
                name: Some("Please enter a display name.".into()),
                room: Some("A room name needs at least one letter or digit.".into()),
            }
        );
        assert_eq!(
            judge("Ada", ""),
            Submission::Invalid { name: None, room: Some("Please enter a room name.".into()) }
        );
    }
}
