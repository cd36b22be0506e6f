//! The admin page, `/admin`: live statistics and removing people from rooms. It connects two namespaces over one
//! connection, `/lobby` (public) and `/admin` (behind the token); a refused token leaves the lobby feed running.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use protocol::{RoomDetail, RoomSummary, Stats};

use crate::pages::room::Status;

/// The admin page's reactive state, shared with its live connection.
#[derive(Clone, Copy)]
pub struct AdminState {
    pub status: RwSignal<Status>,
    pub stats: RwSignal<Option<Stats>>,
    pub lobby: RwSignal<Vec<RoomSummary>>,
    pub signed_in: RwSignal<bool>,
    pub error: RwSignal<Option<String>>,
    /// How the last removal went.
    pub outcome: RwSignal<Option<String>>,
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let state = AdminState {
        status: RwSignal::new(Status::Connecting),
        stats: RwSignal::new(None),
        lobby: RwSignal::new(Vec::new()),
        signed_in: RwSignal::new(false),
        error: RwSignal::new(None),
        outcome: RwSignal::new(None),
    };
    let token = RwSignal::new(String::new());
    let started = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    let connection = StoredValue::new_local(None::<crate::live::Admin>);
    #[cfg(feature = "hydrate")]
    on_cleanup(move || connection.with_value(|admin| admin.as_ref().map(crate::live::Admin::close)).unwrap_or(()));

    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        started.set(true);
        #[cfg(feature = "hydrate")]
        {
            // A new token means a new connection: close the previous one first.
            connection.update_value(|admin| {
                if let Some(old) = admin.take() {
                    old.close();
                }
                *admin = crate::live::Admin::connect(token.get_untracked(), state);
            });
        }
    };
    #[cfg(feature = "hydrate")]
    let remove = move |room: protocol::RoomName, member: protocol::MemberId| {
        connection.with_value(|admin| {
            if let Some(admin) = admin {
                admin.remove(room, member, state);
            }
        });
    };
    #[cfg(not(feature = "hydrate"))]
    let remove = move |_: protocol::RoomName, _: protocol::MemberId| {};

    view! {
        <main class="page admin">
            <header class="room-header">
                <a class="home" href="/">"Causerie"</a>
                <h1>"Admin"</h1>
                <Show when=move || started.get()>
                    <p class="status" data-testid="connection-status" data-state=move || state.status.read().key() role="status">
                        {move || state.status.read().label()}
                    </p>
                </Show>
            </header>
            <noscript>
                <p class="notice">"The admin page needs JavaScript."</p>
            </noscript>
            <form class="admin-sign-in" on:submit=on_submit>
                <label for="admin-token">"Admin token"</label>
                <input
                    id="admin-token"
                    type="password"
                    autocomplete="current-password"
                    prop:value=move || token.get()
                    on:input=move |ev| token.set(event_target_value(&ev))
                />
                <button type="submit">"Connect"</button>
            </form>
            {move || state.error.get().map(|e| view! { <p class="field-error" role="alert" data-testid="admin-error">{e}</p> })}
            {move || state.outcome.get().map(|o| view! { <p class="notice" role="status" data-testid="admin-outcome">{o}</p> })}
            <Show when=move || state.signed_in.get()>
                {move || state.stats.get().map(|stats| view! { <StatsView stats remove /> })}
            </Show>
            <Show when=move || started.get()>
                <section class="lobby" data-testid="admin-lobby">
                    <h2>"Rooms (public lobby feed)"</h2>
                    <ul>
                        <For each=move || state.lobby.get() key=|summary| (summary.room.clone(), summary.online) let:summary>
                            <li>"#" {summary.room.to_string()} " · " {summary.online} " online"</li>
                        </For>
                    </ul>
                </section>
            </Show>
        </main>
    }
}

#[component]
fn StatsView(
    stats: Stats,
    remove: impl Fn(protocol::RoomName, protocol::MemberId) + Clone + Send + Sync + 'static,
) -> impl IntoView {
    let rooms = stats.rooms.clone();
    view! {
        <section class="stats" data-testid="stats">
            <h2>"Live"</h2>
            <dl>
                <dt>"Connections"</dt><dd data-testid="stat-connections">{stats.connections}</dd>
                <dt>"On WebSocket"</dt><dd data-testid="stat-websocket">{stats.websocket}</dd>
                <dt>"On long-polling"</dt><dd data-testid="stat-polling">{stats.polling}</dd>
                <dt>"Rooms"</dt><dd data-testid="stat-rooms">{stats.rooms.len()}</dd>
                <dt>"Messages per second"</dt><dd data-testid="stat-rate">{protocol::tenths((stats.messages_per_second * 10.0).round() as u64, 10)}</dd>
                <dt>"Messages since start"</dt><dd data-testid="stat-total">{stats.messages_total}</dd>
            </dl>
            {rooms.into_iter().map(|detail| view! { <RoomMembers detail remove=remove.clone() /> }).collect_view()}
        </section>
    }
}

#[component]
fn RoomMembers(
    detail: RoomDetail,
    remove: impl Fn(protocol::RoomName, protocol::MemberId) + Clone + Send + Sync + 'static,
) -> impl IntoView {
    let room = detail.room.clone();
    view! {
        <h3>"#" {room.to_string()}</h3>
        <ul class="admin-members" data-testid="admin-room" data-room=room.to_string()>
            {detail.members.into_iter().map(|member| {
                let (room, id, remove) = (room.clone(), member.id.clone(), remove.clone());
                let name = member.name.to_string();
                view! {
                    <li>
                        {name.clone()} " "
                        <button type="button" aria-label=format!("Remove {name}") on:click=move |_| remove(room.clone(), id.clone())>
                            "Remove"
                        </button>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}
