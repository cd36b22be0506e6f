//! The join page, `/`: a plain GET form, and the live lobby of active rooms.
//!
//! The form is always submitted to the server, with or without JavaScript: only the server knows whether the name
//! is free in the room. It renders the errors (next to their fields) or redirects to the room.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;
use protocol::{DisplayName, RoomName, RoomSummary};

use crate::room_url;
use crate::urls::encode_component;

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
    // Whether the name is free is the server's call, made while it renders; the browser reads the same answer
    // when it hydrates.
    let taken = SharedValue::new(move || {
        let query = query.read_untracked();
        let name = DisplayName::parse(query.get_str("name")?).ok()?;
        let room = RoomName::parse(query.get_str("room")?).ok()?;
        crate::directory::join_problem(&room, &name)
    })
    .into_inner();
    // A submitted form always carries both fields. A link may carry one, to prefill it, and is not judged.
    let submission = Memo::new(move |_| {
        let query = query.read();
        let (Some(name), Some(room)) = (query.get_str("name"), query.get_str("room")) else { return None };
        Some(match judge(name, room) {
            Submission::Valid(_) if taken.is_some() => Submission::Invalid { name: taken.clone(), room: None },
            // Sent back from the room because the name was taken then; the person resubmits to try again.
            Submission::Valid(_) if query.get_str("error") == Some("name_in_use") => Submission::Invalid {
                name: Some(format!(
                    "Name in use: someone in #{} is already called {}. Pick another name.",
                    RoomName::parse(room).map(|r| r.to_string()).unwrap_or_default(),
                    name.trim()
                )),
                room: None,
            },
            judged => judged,
        })
    });
    let rooms = RwSignal::new(SharedValue::new(crate::directory::active_rooms).into_inner());
    #[cfg(feature = "hydrate")]
    crate::live::watch_lobby(rooms);
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
            <form method="get" action="/">
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
                        // The attribute prefills the server's page; the property follows a lobby link clicked
                        // after typing (an attribute no longer changes what an edited field shows).
                        prop:value=room_value
                        aria-invalid=move || room_error().is_some().to_string()
                        aria-describedby="room-error"
                    />
                    {move || room_error().map(|e| view! { <p id="room-error" class="field-error" role="alert">{e}</p> })}
                </div>
                <button type="submit">"Join room"</button>
            </form>
            <Lobby rooms />
            {move || match submission.get() {
                Some(Submission::Valid(url)) => Some(view! { <Redirect path=url /> }),
                _ => None,
            }}
        </main>
    }
}

/// The active rooms, live: a room appears with its first member and goes with its last.
#[component]
fn Lobby(rooms: RwSignal<Vec<RoomSummary>>) -> impl IntoView {
    view! {
        <section class="lobby" aria-labelledby="lobby-title">
            <h2 id="lobby-title">"Active rooms"</h2>
            <Show
                when=move || !rooms.read().is_empty()
                fallback=|| view! { <p class="muted" data-testid="lobby-empty">"Nobody is chatting right now. Start a room!"</p> }
            >
                <ul class="rooms" data-testid="lobby">
                    <For each=move || rooms.get() key=|summary| (summary.room.clone(), summary.online) let:summary>
                        <li data-testid="lobby-room" data-room=summary.room.to_string()>
                            <a href=format!("/?room={}", encode_component(summary.room.as_str()))>"#" {summary.room.to_string()}</a>
                            <span class="online">
                                {summary.online} {if summary.online == 1 { " person online" } else { " people online" }}
                            </span>
                        </li>
                    </For>
                </ul>
            </Show>
        </section>
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
