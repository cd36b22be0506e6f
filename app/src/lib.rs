//! Causerie's pages, as Leptos components. The same code renders on the server (feature `ssr`) and hydrates in
//! the browser (feature `hydrate`); only the live connection in [`live`] is browser-only.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

pub mod directory;
#[cfg(feature = "hydrate")]
mod live;
mod pages;
mod text;
mod urls;

pub use urls::room_url;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: the marker tells tests (and curious people) the page is live.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    view! {
        <Stylesheet id="leptos" href="/pkg/causerie.css" />
        <Title text="Causerie" />
        <div id="app" data-hydrated=move || hydrated.get().to_string()>
            <Router>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view=pages::JoinPage />
                    // Rendered whole once the room's latest messages are read: out-of-order streaming would
                    // need JavaScript to put them in place.
                    <Route path=path!("/r/:room") view=pages::RoomPage ssr=SsrMode::Async />
                    <Route path=path!("/admin") view=pages::AdminPage />
                </Routes>
            </Router>
        </div>
    }
}
