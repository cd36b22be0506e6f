//! Building the application: one axum router that serves the Leptos pages, the static site and Socket.IO.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use app::directory::{Directory, LatestFuture, SharedDirectory};
use app::{App, shell};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use protocol::{DisplayName, HistoryPage, Member, RoomName, RoomSummary, SessionToken};
use socketioxide::adapter::Adapter;
use socketioxide::{SocketIo, SocketIoBuilder, TransportType};
use tokio::net::TcpListener;

use crate::config::{Config, Transport};
use crate::realtime::{self, Hub};
use crate::store::{MemoryStore, MessageStore, PostgresStore, SqliteStore};
use crate::{cluster, media, session};

/// The whole HTTP application, on one node: the local adapter. Needs a Tokio runtime: the realtime side starts its
/// background tasks here.
pub fn router(leptos_options: LeptosOptions, config: &Config, store: Arc<dyn MessageStore>) -> Router {
    let hub = Hub::new(config.limits(), config.admin_token.clone(), Arc::clone(&store));
    let (socket_layer, io) = socket_io(config, &hub).build_layer();
    // The local adapter has nothing to set up.
    let [(), (), ()] = realtime::attach(&io, &hub);
    routes(leptos_options, config, store, hub, socket_layer)
}

/// The whole HTTP application as one node of several: socketioxide's Redis adapter carries broadcasts between
/// the nodes and [`cluster`] shares presence. Returns once subscribed to Redis.
pub async fn clustered_router(
    leptos_options: LeptosOptions,
    config: &Config,
    store: Arc<dyn MessageStore>,
    redis: redis::Client,
) -> anyhow::Result<Router> {
    use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
    let hub = Hub::new(config.limits(), config.admin_token.clone(), Arc::clone(&store));
    // Our driver, not socketioxide-redis's own: that one never reconnects after Redis restarts.
    let driver = cluster::driver::ReconnectingDriver::connect(&redis)
        .await
        .context("connecting the Socket.IO adapter to Redis")?;
    let adapter = RedisAdapterCtr::new_with_driver(driver, RedisAdapterConfig::default());
    let (socket_layer, io) = socket_io(config, &hub)
        .with_adapter::<CustomRedisAdapter<_, cluster::driver::ReconnectingDriver>>(adapter)
        .build_layer();
    for init in realtime::attach(&io, &hub) {
        init.await.map_err(|e| anyhow::anyhow!("{e}")).context("subscribing a namespace to Redis")?;
    }
    cluster::join(redis, io, hub.clone()).await?;
    Ok(routes(leptos_options, config, store, hub, socket_layer))
}

fn socket_io(config: &Config, hub: &Hub) -> SocketIoBuilder {
    let builder = SocketIo::builder()
        .with_state(hub.clone())
        .req_path(SOCKET_IO_PATH)
        .ping_interval(Duration::from_millis(config.ping_interval))
        .ping_timeout(Duration::from_millis(config.ping_timeout))
        .max_payload(config.max_payload)
        .ws_max_message_size(usize::try_from(config.max_payload).unwrap_or(usize::MAX))
        // Each WebSocket connection keeps a read buffer of this size for its whole life (engineioxide's default is
        // 4 KiB). A chat frame fits (a message of 100 characters is about 250 bytes); a large one (an image) is
        // still read whole, in more reads: a 2 MiB image in 4,096, about 3 ms more of the server's CPU than at 1 KiB
        // (docs/performance.md, session 20).
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_buffer_size(SOCKET_QUEUE_PACKETS)
        .connect_timeout(NAMESPACE_CONNECT_TIMEOUT);
    with_transports(builder, &config.transports)
}

fn routes<A: Adapter>(
    leptos_options: LeptosOptions,
    config: &Config,
    store: Arc<dyn MessageStore>,
    hub: Hub,
    socket_layer: socketioxide::layer::SocketIoLayer<A>,
) -> Router {
    let directory = SharedDirectory(Arc::new(hub));
    let secure_cookies = config.secure_cookies;
    let routes = ROUTES.clone();
    Router::new()
        .route(
            "/session/claim",
            axum::routing::get(session::claim_page)
                .post(move |headers, form| session::claim(secure_cookies, headers, form)),
        )
        .route("/media/{id}", axum::routing::get(move |id, headers| media::serve(store, id, headers)))
        .leptos_routes_with_context(&leptos_options, routes, move || provide_context(directory.clone()), {
            let leptos_options = leptos_options.clone();
            move || shell(leptos_options.clone())
        })
        .fallback(static_file)
        .with_state(leptos_options)
        .layer(compression())
        .layer(axum::middleware::from_fn(move |request, next| session::ensure(secure_cookies, request, next)))
        // Socket.IO answers its own path (/socket.io/) and passes every other request through to the router.
        .layer(socket_layer)
        // Outside the Socket.IO layer, so that it sees the request first.
        .layer(axum::middleware::map_request(detach_socket_io_head))
}

/// The pages, rendered on each request, compressed for the client that accepts it (brotli, else gzip), with
/// `Vary: Accept-Encoding`, but for those that carry a secret: they say `Cache-Control: no-transform`
/// ([`app::directory::SECRET_PAGE_CACHE_CONTROL`]: the room page, with the visitor's device link, and the
/// device-link page), and go out as they are. At brotli's quality 4, not its default 11: a page is compressed on
/// every request, and 11 costs milliseconds where 4 costs a tenth of one for nearly the same size. Whatever is
/// already compressed passes through as it is (the static site's precompressed twins say `Content-Encoding`), and
/// so do images and bodies of under 32 bytes (tower-http's default predicate). Inside the Socket.IO layer: its
/// long-polling answers are not compressed (they are mostly small, and a connect storm is CPU-bound already).
fn compression() -> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::Predicate as _;
    tower_http::compression::CompressionLayer::new()
        .br(true)
        .gzip(true)
        .quality(tower_http::CompressionLevel::Precise(4))
        .compress_when(tower_http::compression::DefaultPredicate::new().and(transformable))
}

/// Whether a response allows compression on the way: not when its `Cache-Control` says `no-transform`.
fn transformable(
    _: axum::http::StatusCode,
    _: axum::http::Version,
    headers: &axum::http::HeaderMap,
    _: &axum::http::Extensions,
) -> bool {
    !headers.get_all(axum::http::header::CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|cache| cache.split(',').any(|directive| directive.trim() == "no-transform"))
    })
}

/// The static site (the WASM bundle, its JavaScript, the style sheet, `public/`), or the not-found page.
///
/// leptos_axum sends a file's `.br` or `.gz` twin (written by `cargo leptos build --release --precompress`) to a
/// client that accepts it: the WASM bundle goes out at about a third of its size. The answer then depends on the
/// request's `Accept-Encoding`, and `Vary` says so, or a shared cache on the way (a proxy, a CDN) could hand the
/// brotli bytes to a client that cannot read them.
async fn static_file(
    uri: axum::http::Uri,
    state: axum::extract::State<LeptosOptions>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let mut response = leptos_axum::file_and_error_handler(shell)(uri, state, request).await;
    response.headers_mut().append(axum::http::header::VARY, axum::http::HeaderValue::from_static("accept-encoding"));
    response
}

/// The app's routes, listed once per process. Listing them runs the whole app with resource loading suppressed,
/// and leptos_server's switch for that is one flag for the whole process: a room page whose message read first
/// polled while any other thread was listing routes waited forever (leptos-rs/leptos#4773). One router per process
/// never met it; the tests, which build a router per test on parallel threads, hung about one run in twenty. Listed
/// once, and before any router exists, no page can be rendering meanwhile.
static ROUTES: std::sync::LazyLock<Vec<leptos_axum::AxumRouteListing>> =
    std::sync::LazyLock::new(|| generate_route_list(App));

/// See [`router`]: the WebSocket read buffer of each connection.
const WS_READ_BUFFER_BYTES: usize = 512;

/// Packets that may wait for one connection's writer before a further emit to it fails (and is dropped).
/// engineioxide's default, 128, is less than one burst: a client flushing a few hundred queued messages at once
/// lost the acks past the 128th. The queue allocates as it fills (blocks of 32), so an idle connection pays nothing;
/// a connection that never reads holds at most this many packets.
const SOCKET_QUEUE_PACKETS: usize = 1024;

/// How long an Engine.IO session may go without connecting to a namespace before it is closed (socketioxide's
/// default is 45 s, as Node's). Real clients connect right after the handshake; an abandoned handshake holds its
/// session (about 15 KiB) until this timer fires, even after the heartbeat has closed it, so a flood of them held
/// memory for 45 s each (the attack run in docs/reliability.md).
const NAMESPACE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Socket.IO answers: the standard path, which clients assume.
const SOCKET_IO_PATH: &str = "/socket.io";

/// The headers of a Socket.IO request that anything reads: engineioxide the WebSocket key (to answer the upgrade)
/// and the content type (to tell a binary long-polling body), Causerie the session cookie
/// ([`crate::session::from_headers`]). Whatever else a browser sends (`User-Agent`, `Accept-*`, `Sec-CH-UA-*`…:
/// half a kilobyte and more) would be kept for the connection's whole life, and nothing reads it. A handler that
/// comes to need another header must add it here.
const SOCKET_IO_HEADERS: [axum::http::HeaderName; 3] =
    [axum::http::header::COOKIE, axum::http::header::SEC_WEBSOCKET_KEY, axum::http::header::CONTENT_TYPE];

/// Copies what is read of a Socket.IO request's head (its URI, and [`SOCKET_IO_HEADERS`]) out of hyper's read
/// buffer, and leaves the rest.
///
/// hyper parses a request head into slices of its connection's 8 KiB read buffer, and socketioxide keeps the head of
/// each Engine.IO connection's requests for the connection's whole life (`SocketRef::req_parts`): one header kept
/// means the whole buffer kept, 8 KiB per idle WebSocket connection (twice that after an upgrade from
/// long-polling). Copying the few hundred bytes that matter lets hyper's buffer go when its HTTP connection ends.
async fn detach_socket_io_head(request: axum::extract::Request) -> axum::extract::Request {
    detach_head(request)
}

fn detach_head(mut request: axum::extract::Request) -> axum::extract::Request {
    use axum::http::{HeaderMap, HeaderValue, Uri};
    let path = request.uri().path();
    let socket_io = path.strip_prefix(SOCKET_IO_PATH).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !socket_io {
        return request;
    }
    let shared = std::mem::take(request.headers_mut());
    let kept: Vec<_> = shared.iter().filter(|(name, _)| SOCKET_IO_HEADERS.contains(name)).collect();
    let mut copied = HeaderMap::with_capacity(kept.len());
    for (name, value) in kept {
        // `from_bytes` copies. A value that hyper accepted parses again; were it not to, the shared original is
        // kept rather than the header dropped. The names are static.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        copied.append(name.clone(), copy);
    }
    *request.headers_mut() = copied;
    if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
    // axum's copy of the URI, for handlers that are routed under a prefix; it shares hyper's buffer too, and the
    // Socket.IO side never reads it.
    request.extensions_mut().remove::<axum::extract::OriginalUri>();
    request
}

/// The member a page's visitor is: the one of their session, or, without one, the empty id, which is nobody in
/// any room and the one reading budget that visitors without a session share.
fn visitor_id(visitor: Option<&SessionToken>) -> protocol::MemberId {
    visitor.map(session::member_id).unwrap_or_else(|| protocol::MemberId(String::new()))
}

impl Directory for Hub {
    fn join_problem(&self, room: &RoomName, name: &DisplayName, visitor: Option<&SessionToken>) -> Option<String> {
        // A visitor without a session yet is nobody in any room: any holder of the name is someone else.
        let id = visitor_id(visitor);
        self.presence.check(room, &Member { id, name: name.clone() }).err().map(|refused| refused.to_string())
    }

    fn rooms(&self) -> Vec<RoomSummary> {
        self.presence.summaries()
    }

    fn latest_messages(&self, room: RoomName, visitor: Option<SessionToken>) -> LatestFuture {
        // A database read, as a join's is: from the same reading budget, so that a browser reloading the room page
        // in a loop is braked as one asking for history is. Visitors whose session this request issued share one
        // budget (the empty id): a client that never sends its cookie back gets no fresh budget per request. (One
        // that makes up a new session each time does, as it would for its sockets: a brake, not a wall.) A page
        // past the budget renders without the messages; the browser's join asks for them again, and is told when
        // to try again if the budget is still spent.
        let id = visitor_id(visitor.as_ref());
        if let Err(wait) = self.reads.try_take(&id, std::time::Instant::now()) {
            tracing::debug!(%room, wait_s = wait.as_secs_f64(), "room page rendered without history: reading budget spent");
            return Box::pin(std::future::ready(None));
        }
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            match store.latest(room.clone(), HistoryPage::SIZE).await {
                Ok(page) => Some(HistoryPage { messages: page.messages, has_more: page.has_more }),
                Err(e) => {
                    // The page renders without them; the browser's join reads them again.
                    tracing::error!(error = %e, %room, "history not read for the room page");
                    None
                }
            }
        })
    }
}

/// socketioxide takes the transports as an array of a fixed size, hence one call per combination.
fn with_transports<A: Adapter>(builder: SocketIoBuilder<A>, transports: &[Transport]) -> SocketIoBuilder<A> {
    let polling = transports.contains(&Transport::Polling);
    let websocket = transports.contains(&Transport::Websocket);
    match (polling, websocket) {
        (true, false) => builder.transports([TransportType::Polling]),
        (false, true) => builder.transports([TransportType::Websocket]),
        _ => builder.transports([TransportType::Polling, TransportType::Websocket]),
    }
}

/// A bound, not yet running, server. Binding first lets callers (tests) learn the port before serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds the address and opens the store `config` names. The port comes first: a port already taken is
    /// reported before a SQLite file is created or Postgres is reached.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let (leptos_options, listener) = bind(config).await?;
        let store: Arc<dyn MessageStore> = if let Some(url) = &config.database_url {
            let store = PostgresStore::connect(url).await.context("opening the Postgres database (--database-url)")?;
            tracing::info!("messages are stored in Postgres");
            Arc::new(store)
        } else if config.in_memory {
            tracing::warn!("messages are kept in memory only: they will be lost when the server stops");
            Arc::new(MemoryStore::new())
        } else {
            let store = SqliteStore::open(&config.database)
                .with_context(|| format!("opening the database {}", config.database.display()))?;
            tracing::info!(database = %config.database.display(), "messages are stored in SQLite");
            Arc::new(store)
        };
        Self::assemble(config, leptos_options, listener, store).await
    }

    /// Binds the address, with messages kept in `store` whatever `config` says of storage (for tests that need a
    /// store of their own).
    pub async fn build_with_store(config: &Config, store: Arc<dyn MessageStore>) -> anyhow::Result<Self> {
        let (leptos_options, listener) = bind(config).await?;
        Self::assemble(config, leptos_options, listener, store).await
    }

    async fn assemble(
        config: &Config,
        leptos_options: LeptosOptions,
        listener: TcpListener,
        store: Arc<dyn MessageStore>,
    ) -> anyhow::Result<Self> {
        let router = match &config.redis_url {
            None => router(leptos_options, config, store),
            Some(url) => {
                let redis = redis::Client::open(url.as_str()).context("reading --redis-url")?;
                clustered_router(leptos_options, config, store, redis).await?
            }
        };
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener.local_addr().context("reading the bound address")
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        axum::serve(no_delay(self.listener), self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    }

    /// Serves until the task is dropped or aborted (for tests).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        axum::serve(no_delay(self.listener), self.router).await.context("serving HTTP")
    }
}

/// Turns off Nagle's algorithm on every connection. Chat frames are small and each one matters now: with Nagle, a
/// frame written while the previous one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux),
/// which the benchmark showed as a 20 ms floor under the acks of back-to-back sends.
fn no_delay(listener: TcpListener) -> impl axum::serve::Listener<Addr = SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    })
}

/// The site's options and the listener on their address.
async fn bind(config: &Config) -> anyhow::Result<(LeptosOptions, TcpListener)> {
    let leptos_options = config.leptos_options()?;
    let addr = leptos_options.site_addr;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    Ok((leptos_options, listener))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::detach_head;

    fn request(path: &str) -> axum::extract::Request {
        Request::get(path)
            .header("cookie", "causerie_session=abc")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)")
            .header("accept-language", "fr-FR,fr;q=0.9,en;q=0.8")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("content-type", "text/plain;charset=UTF-8")
            .body(axum::body::Body::empty())
            .unwrap()
    }

    fn names(request: &axum::extract::Request) -> Vec<&str> {
        request.headers().keys().map(|name| name.as_str()).collect()
    }

    #[test]
    fn a_socket_io_request_keeps_only_the_headers_that_are_read() {
        let detached = detach_head(request("/socket.io/?EIO=4&transport=websocket"));
        assert_eq!(names(&detached), ["cookie", "sec-websocket-key", "content-type"]);
        assert_eq!(detached.headers()["cookie"], "causerie_session=abc");
        assert_eq!(detached.uri(), "/socket.io/?EIO=4&transport=websocket");
    }

    #[test]
    fn other_requests_keep_every_header() {
        for path in ["/", "/r/general", "/socket.iox"] {
            assert_eq!(names(&detach_head(request(path))).len(), 5, "{path}");
        }
    }

    #[tokio::test]
    async fn a_port_already_taken_is_reported_before_the_database_file_is_created() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let database = std::env::temp_dir().join(format!("causerie-port-taken-{}.db", uuid::Uuid::new_v4()));
        let config = crate::Config {
            addr: Some(taken.local_addr().unwrap()),
            database: database.clone(),
            ..crate::Config::default()
        };

        let error = match super::Application::build(&config).await {
            Ok(_) => panic!("the app started on a port that was taken"),
            Err(error) => format!("{error:#}"),
        };

        assert!(error.starts_with("binding 127.0.0.1:"), "{error}");
        assert!(!database.exists(), "{} was created", database.display());
    }
}
