//! The room page, `/r/<room>?name=<name>`. The server renders its frame; once hydrated, the browser connects over
//! Socket.IO (see `crate::live`) and the conversation appears.

use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::{use_params_map, use_query_map};
use protocol::{ChatMessage, DisplayName, MessageBody, RoomName};

use crate::urls::encode_component;

/// The connection as the page shows it. Only the browser ever leaves `Connecting`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub enum Status {
    Connecting,
    Connected { transport: &'static str },
    Reconnecting { attempt: u32, delay_ms: u64 },
    Offline(String),
}

impl Status {
    fn label(&self) -> String {
        match self {
            Status::Connecting => "Connecting…".to_owned(),
            Status::Connected { transport } => format!("Connected · {transport}"),
            Status::Reconnecting { attempt, delay_ms } => {
                format!("Reconnecting (attempt {attempt}, in {:.1} s)…", *delay_ms as f64 / 1000.0)
            }
            Status::Offline(reason) => format!("Offline: {reason}"),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected { .. } => "connected",
            Status::Reconnecting { .. } => "reconnecting",
            Status::Offline(_) => "offline",
        }
    }
}

/// The reactive state of one open room, shared with the live connection.
#[derive(Clone, Copy)]
pub struct RoomState {
    pub messages: RwSignal<Vec<ChatMessage>>,
    pub status: RwSignal<Status>,
    /// The server confirmed the join on the current connection: sending is possible.
    pub joined: RwSignal<bool>,
    /// The last problem to show near the composer.
    pub error: RwSignal<Option<String>>,
}

impl RoomState {
    fn new() -> Self {
        Self {
            messages: RwSignal::new(Vec::new()),
            status: RwSignal::new(Status::Connecting),
            joined: RwSignal::new(false),
            error: RwSignal::new(None),
        }
    }

    /// Adds a message unless it is already shown.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub fn add_message(&self, message: ChatMessage) {
        // `try_update`: the page may have been left while the message was on its way.
        self.messages.try_update(|messages| {
            if !messages.iter().any(|m| m.id == message.id) {
                messages.push(message);
            }
        });
    }
}

#[component]
pub fn RoomPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let room = Memo::new(move |_| params.read().get("room").and_then(|r| RoomName::parse(&r).ok()));
    let name = Memo::new(move |_| query.read().get("name").and_then(|n| DisplayName::parse(&n).ok()));
    move || match (room.get(), name.get()) {
        (Some(room), Some(name)) => view! { <ChatRoom room name /> }.into_any(),
        // No usable name: the join form asks for one, with the room filled in.
        (Some(room), None) => {
            view! { <Redirect path=format!("/?room={}", encode_component(room.as_str())) /> }.into_any()
        }
        (None, _) => view! {
            <main class="page narrow">
                <h1>"No such room"</h1>
                <p>"That is not a valid room name. " <a href="/">"Choose another room"</a> "."</p>
            </main>
        }
        .into_any(),
    }
}

#[component]
fn ChatRoom(room: RoomName, name: DisplayName) -> impl IntoView {
    let state = RoomState::new();
    let draft = RwSignal::new(String::new());

    #[cfg(feature = "hydrate")]
    let chat = StoredValue::new(crate::live::Chat::connect(room.clone(), name.clone(), state));

    let send = move || {
        let text = draft.get_untracked();
        match MessageBody::parse(&text) {
            Err(error) => state.error.set(Some(error.to_string())),
            Ok(body) => {
                state.error.set(None);
                draft.set(String::new());
                #[cfg(feature = "hydrate")]
                chat.with_value(|chat| chat.send(body));
                #[cfg(not(feature = "hydrate"))]
                let _ = body;
            }
        }
    };
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        send();
    };
    // Enter sends; Shift+Enter starts a new line, as in every chat.
    let on_keydown = move |ev: KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };

    let room_label = room.to_string();
    view! {
        <main class="page chat">
            <header class="room-header">
                <a class="home" href="/">"Causerie"</a>
                <h1 data-testid="room-name">"#" {room_label}</h1>
                <p class="you">"You are " <strong data-testid="my-name">{name.to_string()}</strong></p>
                <p
                    class="status"
                    data-testid="connection-status"
                    data-state=move || state.status.read().key()
                    role="status"
                >
                    {move || state.status.read().label()}
                </p>
            </header>
            <noscript>
                <p class="notice">"Live chat needs JavaScript. Turn it on to see and send messages."</p>
            </noscript>
            <ol class="messages" data-testid="messages" aria-live="polite">
                <For each=move || grouped(&state.messages.read()) key=|(m, _)| m.id.clone() let:item>
                    <Message message=item.0 continued=item.1 />
                </For>
            </ol>
            <form class="composer" on:submit=on_submit>
                <label for="message" class="visually-hidden">"Message"</label>
                <textarea
                    id="message"
                    name="message"
                    rows="2"
                    placeholder="Write a message…"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=on_keydown
                ></textarea>
                <button type="submit" disabled=move || !state.joined.get()>"Send"</button>
            </form>
            {move || state.error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
        </main>
    }
}

/// Consecutive messages from one sender within this long are shown as one group, under one name.
const GROUP_WITHIN_MS: i64 = 5 * 60 * 1000;

/// Each message, and whether it continues the previous sender's group.
fn grouped(messages: &[ChatMessage]) -> Vec<(ChatMessage, bool)> {
    let mut previous: Option<&ChatMessage> = None;
    messages
        .iter()
        .map(|message| {
            let continued =
                previous.is_some_and(|p| p.from == message.from && message.sent_at.0 - p.sent_at.0 < GROUP_WITHIN_MS);
            previous = Some(message);
            (message.clone(), continued)
        })
        .collect()
}

#[component]
fn Message(message: ChatMessage, continued: bool) -> impl IntoView {
    let body = crate::text::segments(message.body.as_str())
        .into_iter()
        .map(|segment| match segment {
            crate::text::Segment::Text(text) => text.into_any(),
            crate::text::Segment::Link(url) => {
                let label = url.clone();
                view! { <a href=url target="_blank" rel="noopener noreferrer nofollow ugc">{label}</a> }.into_any()
            }
        })
        .collect_view();
    view! {
        <li class="message" class:continued=continued data-testid="message">
            <span class="from">{message.from.to_string()}</span>
            <time datetime=message.sent_at.0.to_string()>{local_time(message.sent_at.0)}</time>
            <p class="body">{body}</p>
        </li>
    }
}

/// `HH:MM` in the reader's time zone (UTC when rendered on the server).
fn local_time(unix_ms: i64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64));
        format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let minutes = unix_ms.div_euclid(60_000).rem_euclid(24 * 60);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use protocol::{MessageId, UnixMillis};

    use super::*;

    fn message(id: &str, from: &str, at_ms: i64) -> ChatMessage {
        ChatMessage {
            id: MessageId(id.into()),
            room: RoomName::parse("r").unwrap(),
            from: DisplayName::parse(from).unwrap(),
            body: MessageBody::parse("hi").unwrap(),
            sent_at: UnixMillis(at_ms),
        }
    }

    #[test]
    fn consecutive_messages_from_one_sender_are_grouped_within_five_minutes() {
        let messages = [
            message("1", "Ada", 0),
            message("2", "Ada", 60_000),
            message("3", "Bob", 61_000),
            message("4", "Bob", 61_000 + GROUP_WITHIN_MS),
        ];
        let flags: Vec<bool> = grouped(&messages).into_iter().map(|(_, continued)| continued).collect();
        assert_eq!(flags, vec![false, true, false, false]);
    }
}
