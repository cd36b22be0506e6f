//! What the pages may ask the server while rendering: whether a name is free in a room, and which rooms are
//! active. The server provides a [`SharedDirectory`] as Leptos context; the app cannot depend on the server crate,
//! so it names the questions here. Answers reach the browser through `SharedValue`, so hydration sees exactly what
//! the server rendered.

use protocol::{DisplayName, HistoryPage, RoomName, RoomSummary};

/// The server's answers to the pages' questions.
#[cfg(feature = "ssr")]
pub trait Directory: Send + Sync + 'static {
    /// Why the holder of `visitor` could not join `room` as `name` right now (in words), if they could not.
    fn join_problem(
        &self,
        room: &RoomName,
        name: &DisplayName,
        visitor: Option<&protocol::SessionToken>,
    ) -> Option<String>;

    /// The active rooms, busiest first.
    fn rooms(&self) -> Vec<RoomSummary>;

    /// The latest messages of `room` ([`HistoryPage::SIZE`] at most) for the holder of `visitor` (`None`: a
    /// visitor new on this request), or `None` if they cannot be read now (the store failed, or the reading
    /// budget is spent).
    fn latest_messages(&self, room: RoomName, visitor: Option<protocol::SessionToken>) -> LatestFuture;
}

/// In a request's extensions when its session was issued by this very request (it came without one). Such a
/// visitor has a reading budget of nobody's yet: a script that never sends its cookie back would get a fresh
/// one with every request. See [`LatestMessages`].
#[cfg(feature = "ssr")]
#[derive(Debug, Clone, Copy)]
pub struct NewSession;

/// What [`Directory::latest_messages`] returns: boxed, so that the directory stays a trait object.
#[cfg(feature = "ssr")]
pub type LatestFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<HistoryPage>> + Send>>;

/// The [`Directory`] as Leptos context.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct SharedDirectory(pub std::sync::Arc<dyn Directory>);

/// Reads a room's latest messages for the room page. Made while rendering (where the server's context is), then
/// awaited in the page's resource. In the browser it reads nothing: the page's data comes from the server's
/// render, and the socket's join brings the rest.
#[derive(Clone)]
pub struct LatestMessages {
    #[cfg(feature = "ssr")]
    directory: Option<SharedDirectory>,
    /// Whose reading budget the read spends: `None` for a session issued by this request (visitors new on this
    /// request share one budget).
    #[cfg(feature = "ssr")]
    visitor: Option<protocol::SessionToken>,
}

impl LatestMessages {
    pub fn from_context() -> Self {
        Self {
            #[cfg(feature = "ssr")]
            directory: leptos::prelude::use_context::<SharedDirectory>(),
            #[cfg(feature = "ssr")]
            visitor: leptos::prelude::use_context::<http::request::Parts>()
                .filter(|parts| parts.extensions.get::<NewSession>().is_none())
                .and_then(|parts| parts.extensions.get::<protocol::SessionToken>().cloned()),
        }
    }

    /// The latest messages of `room`, or an empty page when there is none to read (or no valid room).
    pub async fn read(self, room: Option<RoomName>) -> HistoryPage {
        let empty = HistoryPage { messages: Vec::new(), has_more: false };
        #[cfg(feature = "ssr")]
        if let (Some(directory), Some(room)) = (self.directory, room) {
            return directory.0.latest_messages(room, self.visitor).await.unwrap_or(empty);
        }
        #[cfg(not(feature = "ssr"))]
        let _ = room;
        empty
    }
}

/// Why the visitor could not join `room` as `name`, asked of the server while it renders. In the browser it is
/// `None`: the server's own answer arrives through the page's `SharedValue`, and the socket has the last word.
pub fn join_problem(room: &RoomName, name: &DisplayName) -> Option<String> {
    #[cfg(feature = "ssr")]
    {
        use leptos::prelude::use_context;
        let directory = use_context::<SharedDirectory>()?;
        let request = use_context::<http::request::Parts>();
        let visitor = request.as_ref().and_then(|parts| parts.extensions.get::<protocol::SessionToken>());
        directory.0.join_problem(room, name, visitor)
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = (room, name);
        None
    }
}

/// The active rooms, as the server renders the lobby (empty in the browser until the lobby feed answers).
pub fn active_rooms() -> Vec<RoomSummary> {
    #[cfg(feature = "ssr")]
    {
        leptos::prelude::use_context::<SharedDirectory>().map(|directory| directory.0.rooms()).unwrap_or_default()
    }
    #[cfg(not(feature = "ssr"))]
    {
        Vec::new()
    }
}

/// How a page that carries a secret (the visitor's session token) may be kept and changed on its way: by nobody.
/// `no-transform` tells Causerie's own compression, and any proxy or CDN on the way, not to compress it: compressed
/// beside text anyone can put on the page (messages, names), the answer's size would tell an attacker who can make
/// the browser ask, and watch the bytes go by, how much of a guess at the token matched (BREACH).
pub const SECRET_PAGE_CACHE_CONTROL: &str = "private, no-store, no-transform";

/// The link that hands this visitor's session to another device, going on to `next`. Only the server knows the
/// session (its cookie is `HttpOnly`); the page carries the link to the browser through a `SharedValue`. The page
/// that renders it goes out as [`SECRET_PAGE_CACHE_CONTROL`] says.
pub fn handoff_link(next: &str) -> Option<String> {
    #[cfg(feature = "ssr")]
    {
        let request = leptos::prelude::use_context::<http::request::Parts>()?;
        let token = request.extensions.get::<protocol::SessionToken>()?;
        // Without the response's options (not rendering for a request) there is no answer to mark: and no link.
        let response = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()?;
        response.insert_header(http::header::CACHE_CONTROL, http::HeaderValue::from_static(SECRET_PAGE_CACHE_CONTROL));
        Some(format!(
            "/session/claim?token={}&next={}",
            crate::urls::encode_component(token.as_str()),
            crate::urls::encode_component(next)
        ))
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = next;
        None
    }
}
