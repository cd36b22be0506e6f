mod admin;
mod join;
mod room;

pub use admin::AdminPage;
pub use join::JoinPage;
pub use room::RoomPage;
#[cfg(feature = "hydrate")]
pub(crate) use {
    admin::AdminState, room::HeldPresence, room::Pending, room::PendingImage, room::RoomState, room::Status,
};

use leptos::prelude::*;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="page narrow">
            <h1>"Not found"</h1>
            <p>"There is no page here. " <a href="/">"Join a room"</a> " instead."</p>
        </main>
    }
}
