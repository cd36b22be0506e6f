//! The server-rendered pages, requested straight from the router (no JavaScript involved).

use axum::body::Body;
use http::{Request, StatusCode, header};
use leptos::config::LeptosOptions;
use tower::ServiceExt as _;

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    cache_control: Option<String>,
    body: String,
}

async fn get(uri: &str) -> Page {
    let options = LeptosOptions::builder().output_name("causerie").build();
    let store = std::sync::Arc::new(server::store::SqliteStore::in_memory().unwrap());
    let router = server::startup::router(options, &server::Config::default(), store);
    // Browsers announce HTML for navigations; Leptos answers redirects with a real 302 only then.
    let request = Request::get(uri).header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let response = router.oneshot(request).await.expect("the router answers");
    let status = response.status();
    let location = response.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let set_cookie = response.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned());
    let cache_control = response.headers().get(header::CACHE_CONTROL).map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body is readable");
    Page { status, location, set_cookie, cache_control, body: String::from_utf8_lossy(&bytes).into_owned() }
}

#[tokio::test]
async fn the_join_page_is_a_get_form_with_name_and_room_fields() {
    let page = get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"method="get""#) && page.body.contains(r#"action="/""#), "{}", page.body);
    assert!(page.body.contains(r#"name="name""#), "{}", page.body);
    assert!(page.body.contains(r#"name="room""#), "{}", page.body);
    assert!(!page.body.contains("field-error"), "no errors before a submission");
}

#[tokio::test]
async fn a_valid_submission_redirects_to_the_room_slug() {
    let page = get("/?name=+Ada+Lovelace+&room=Rust+Fans%21").await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location.as_deref(), Some("/r/rust-fans?name=Ada%20Lovelace"));
}

#[tokio::test]
async fn an_invalid_submission_shows_each_error_and_keeps_the_input() {
    let page = get("/?name=&room=%21%21%21").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Please enter a display name."), "{}", page.body);
    assert!(page.body.contains("A room name needs at least one letter or digit."), "{}", page.body);
    assert!(page.body.contains(r#"value="!!!""#), "the room input keeps what was typed: {}", page.body);
}

#[tokio::test]
async fn a_name_that_is_too_long_is_refused_in_plain_words() {
    let page = get(&format!("/?name={}&room=general", "a".repeat(33))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("A display name can be at most 32 characters long."), "{}", page.body);
}

#[tokio::test]
async fn a_link_that_only_names_the_room_prefills_it_without_errors() {
    let page = get("/?room=general").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"value="general""#), "{}", page.body);
    assert!(!page.body.contains("field-error"), "{}", page.body);
}

#[tokio::test]
async fn the_room_page_shows_the_room_and_who_you_are() {
    let page = get("/r/general?name=Ada").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("general"), "{}", page.body);
    assert!(page.body.contains("Ada"), "{}", page.body);
    assert!(page.body.contains(r#"data-testid="connection-status""#), "{}", page.body);
}

#[tokio::test]
async fn the_room_page_without_a_name_sends_you_to_the_join_form() {
    let page = get("/r/general").await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location.as_deref(), Some("/?room=general"));
}

#[tokio::test]
async fn names_render_as_text_never_as_html() {
    let page = get("/r/general?name=%3Cb%3Ebold%3C%2Fb%3E").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("&lt;b&gt;bold&lt;/b&gt;"), "{}", page.body);
    assert!(!page.body.contains("<b>bold</b>"), "{}", page.body);
}

#[tokio::test]
async fn an_unknown_page_is_a_404() {
    let page = get("/nowhere").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("Not found"), "{}", page.body);
}

#[tokio::test]
async fn the_first_page_load_issues_a_long_lived_http_only_session_cookie() {
    let page = get("/").await;
    let cookie = page.set_cookie.expect("a session cookie");
    assert!(cookie.starts_with("causerie_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=34560000"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
}

#[tokio::test]
async fn room_pages_render_while_other_routers_are_being_built() {
    // As the tests themselves do, on parallel threads: building a router once listed the app's routes, which
    // stalled, for good, a room page whose message read began meanwhile (leptos-rs/leptos#4773).
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let builder = std::thread::spawn({
        let done = std::sync::Arc::clone(&done);
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let mut built = 0_u32;
            while !done.load(Ordering::Relaxed) {
                let options = LeptosOptions::builder().output_name("causerie").build();
                let store = std::sync::Arc::new(server::store::SqliteStore::in_memory().unwrap());
                runtime.block_on(async { drop(server::startup::router(options, &server::Config::default(), store)) });
                built += 1;
            }
            built
        }
    });
    for render in 0..200 {
        let page = tokio::time::timeout(crate::helpers::PATIENCE, get("/r/general?name=Ada")).await;
        let page = page.unwrap_or_else(|_| panic!("room page {render} never came"));
        assert_eq!(page.status, StatusCode::OK);
    }
    done.store(true, Ordering::Relaxed);
    let built = builder.join().expect("the builder thread ends");
    assert!(built > 0, "no router was built alongside the renders");
}

mod live {
    use protocol::{HistoryPage, MessageBody, SendMessage};
    use server::Config;

    use crate::helpers::{PATIENCE, http_request, room, spawn_app, spawn_app_with, within};

    const ADA: &str = "ada-session-token-0001";

    #[tokio::test]
    async fn a_room_page_for_a_name_someone_else_holds_sends_the_visitor_back_to_the_form_which_says_so() {
        let app = spawn_app().await;
        let (_a, _ada) = app.tab("Ada", ADA, "general").await;
        let html = [("Accept", "text/html")];

        let room = http_request(&app, "GET", "/r/general?name=ada", &html, "").await;
        assert!(room.starts_with("HTTP/1.1 302"), "{room}");
        assert!(room.contains("location: /?name=ada&room=general&error=name_in_use"), "{room}");

        let form = http_request(&app, "GET", "/?name=ada&room=general", &html, "").await;
        assert!(form.starts_with("HTTP/1.1 200"), "the form is shown again: {form}");
        assert!(form.contains("Name in use: someone in #general is already called ada."), "{form}");
    }

    #[tokio::test]
    async fn the_holder_of_the_name_gets_the_room_page_in_another_tab() {
        let app = spawn_app().await;
        let (_a, _ada) = app.tab("Ada", ADA, "general").await;
        let headers = [("Accept", "text/html"), ("Cookie", "causerie_session=ada-session-token-0001")];
        let form = http_request(&app, "GET", "/?name=Ada&room=general", &headers, "").await;
        assert!(form.contains("location: /r/general?name=Ada"), "{form}");
        let room = http_request(&app, "GET", "/r/general?name=Ada", &headers, "").await;
        assert!(room.starts_with("HTTP/1.1 200"), "{room}");
    }

    #[tokio::test]
    async fn the_room_page_is_rendered_with_the_latest_messages_and_offers_older_ones() {
        let app = spawn_app_with(Config { message_burst: 100, ..Config::default() }).await;
        let (_a, ada) = app.member("Ada", "general").await;
        for i in 1..=(HistoryPage::SIZE + 2) {
            let send = SendMessage {
                room: room("general"),
                body: MessageBody::parse(&format!("message number {i:03}")).unwrap(),
                client_id: None,
            };
            within("the ack", ada.request(&send, PATIENCE)).await.unwrap();
        }
        let page = http_request(&app, "GET", "/r/general?name=Bob", &[("Accept", "text/html")], "").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("message number 003") && page.contains("message number 052"), "{page}");
        assert!(!page.contains("message number 002"), "only the latest page is rendered: {page}");
        assert!(page.contains("Load older messages"), "{page}");
    }

    #[tokio::test]
    async fn the_room_page_spends_the_visitors_reading_budget_and_past_it_renders_without_the_messages() {
        let app = spawn_app_with(Config { read_burst: 2, reads_per_second: 0.001, ..Config::default() }).await;
        let (_a, ada) = app.member("Ada", "general").await;
        let send =
            SendMessage { room: room("general"), body: MessageBody::parse("hello all").unwrap(), client_id: None };
        within("the ack", ada.request(&send, PATIENCE)).await.unwrap();
        let bob = [("Accept", "text/html"), ("Cookie", "causerie_session=bob-session-token-0002")];
        for reload in 1..=2 {
            let page = http_request(&app, "GET", "/r/general?name=Bob", &bob, "").await;
            assert!(page.contains("hello all"), "reload {reload} is within the budget: {page}");
        }
        let page = http_request(&app, "GET", "/r/general?name=Bob", &bob, "").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains(r#"data-testid="messages""#), "the room still renders: {page}");
        assert!(!page.contains("hello all"), "past the budget, no database read: {page}");
        // Someone else's budget is their own.
        let carol = [("Accept", "text/html"), ("Cookie", "causerie_session=carol-session-token-0003")];
        assert!(http_request(&app, "GET", "/r/general?name=Carol", &carol, "").await.contains("hello all"));
        // Visitors without a session yet (a new one is issued with each answer) share one budget: never sending
        // the cookie back does not get a fresh budget every time.
        let html = [("Accept", "text/html")];
        let mut cookieless = Vec::new();
        for _ in 0..3 {
            cookieless.push(http_request(&app, "GET", "/r/general?name=Dan", &html, "").await.contains("hello all"));
        }
        assert_eq!(cookieless, [true, true, false]);
    }

    #[tokio::test]
    async fn the_join_page_lists_the_active_rooms_with_their_people() {
        let app = spawn_app().await;
        let (_a, _ada) = app.member("Ada", "general").await;
        let (_b, _bob) = app.member("Bob", "general").await;
        let page = http_request(&app, "GET", "/", &[("Accept", "text/html")], "").await;
        assert!(page.contains(r#"data-room="general""#), "{page}");
        assert!(page.contains("2<!> people online") || page.contains("2 people online"), "{page}");
    }

    #[tokio::test]
    async fn a_device_link_asks_first_then_makes_the_other_browser_the_same_person() {
        let app = spawn_app().await;
        let (_a, _ada) = app.tab("Ada", ADA, "general").await;
        let query = format!("token={ADA}&next=%2Fr%2Fgeneral%3Fname%3DAda");

        let page = http_request(&app, "GET", &format!("/session/claim?{query}"), &[], "").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("Continue on this device?"), "{page}");
        assert!(!page.contains(&format!("causerie_session={ADA}")), "a GET alone changes nobody: {page}");

        let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "same-origin")];
        let switched = http_request(&app, "POST", "/session/claim", &form, &query).await;
        assert!(switched.starts_with("HTTP/1.1 303"), "{switched}");
        assert!(switched.contains("location: /r/general?name=Ada"), "{switched}");
        // This browser had no session yet: it must end up with Ada's, not with a fresh one as well.
        let sessions: Vec<&str> =
            switched.lines().filter(|line| line.starts_with("set-cookie: causerie_session=")).collect();
        assert_eq!(
            sessions,
            vec![format!("set-cookie: causerie_session={ADA}; Path=/; HttpOnly; SameSite=Lax; Max-Age=34560000")]
        );

        // With that cookie, the room lets this browser in as Ada.
        let cookie = format!("causerie_session={ADA}");
        let room =
            http_request(&app, "GET", "/r/general?name=Ada", &[("Accept", "text/html"), ("Cookie", &cookie)], "").await;
        assert!(room.starts_with("HTTP/1.1 200"), "{room}");
    }

    #[tokio::test]
    async fn a_damaged_device_link_is_refused_in_words() {
        let app = spawn_app().await;
        let page = http_request(&app, "GET", "/session/claim?token=short&next=%2F", &[], "").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        assert!(page.contains("This device link is incomplete or damaged"), "{page}");
    }

    #[tokio::test]
    async fn another_site_cannot_switch_a_visitors_session() {
        let app = spawn_app().await;
        let headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "cross-site")];
        let body = format!("token={ADA}&next=%2F");
        let response = http_request(&app, "POST", "/session/claim", &headers, &body).await;
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
        assert!(!response.contains(&format!("causerie_session={ADA}")), "{response}");
    }

    #[tokio::test]
    async fn pages_are_never_kept_by_shared_caches() {
        let app = spawn_app().await;
        let page = http_request(&app, "GET", "/", &[("Accept", "text/html")], "").await;
        assert!(page.contains("cache-control: private, no-store"), "{page}");
    }
}

/// `GET uri` as a browser announcing `accept_encoding`: the answer's `Content-Encoding`, `Vary` and body bytes.
async fn get_encoded(uri: &str, accept_encoding: &str) -> (Option<String>, Vec<String>, Vec<u8>) {
    let options = LeptosOptions::builder().output_name("causerie").build();
    let store = std::sync::Arc::new(server::store::SqliteStore::in_memory().unwrap());
    let router = server::startup::router(options, &server::Config::default(), store);
    let request = Request::get(uri)
        .header(header::ACCEPT, "text/html")
        .header(header::ACCEPT_ENCODING, accept_encoding)
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.expect("the router answers");
    assert_eq!(response.status(), StatusCode::OK);
    let encoding = response.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap().to_owned());
    let vary = response.headers().get_all(header::VARY).iter().map(|v| v.to_str().unwrap().to_lowercase()).collect();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body is readable");
    (encoding, vary, bytes.to_vec())
}

#[tokio::test]
async fn pages_go_out_compressed_to_a_browser_that_accepts_it_and_whole_to_one_that_does_not() {
    use std::io::Read as _;
    let (identity, _, whole) = get_encoded("/", "identity").await;
    assert_eq!(identity, None, "nothing accepted, nothing compressed");
    let whole = String::from_utf8(whole).unwrap();
    assert!(whole.contains(r#"name="room""#), "{whole}");

    let (encoding, vary, gzipped) = get_encoded("/", "gzip, deflate").await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(vary.iter().any(|v| v.contains("accept-encoding")), "{vary:?}");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(gzipped.as_slice()).read_to_string(&mut unzipped).unwrap();

    let (encoding, _, brotli) = get_encoded("/", "gzip, deflate, br, zstd").await;
    assert_eq!(encoding.as_deref(), Some("br"), "brotli when both are accepted");
    let mut unbrotli = String::new();
    brotli_decompressor::Decompressor::new(brotli.as_slice(), 4096).read_to_string(&mut unbrotli).unwrap();
    // The same page each time but for what differs per request (the session a new visitor is given).
    for decoded in [&unzipped, &unbrotli] {
        assert!(decoded.contains(r#"name="room""#), "{decoded}");
        assert!(decoded.len().abs_diff(whole.len()) < 64, "{} bytes against {}", decoded.len(), whole.len());
    }
    assert!(brotli.len() * 2 < whole.len(), "{} bytes brotli, {} whole", brotli.len(), whole.len());
}

#[tokio::test]
async fn the_room_page_which_holds_the_visitors_device_link_is_never_compressed() {
    // Compressed beside what others wrote, its size would leak the session token bit by bit (BREACH).
    let (encoding, _, body) = get_encoded("/r/general?name=Ada", "gzip, deflate, br").await;
    assert_eq!(encoding, None);
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("/session/claim?token="), "the page holds the device link: {body}");
}

#[tokio::test]
async fn the_device_link_page_which_holds_the_token_is_never_compressed() {
    let (encoding, _, body) =
        get_encoded("/session/claim?token=ada-session-token-0001&next=%2F", "gzip, deflate, br").await;
    assert_eq!(encoding, None);
    assert!(String::from_utf8(body).unwrap().contains("ada-session-token-0001"));
}

#[tokio::test]
async fn pages_with_a_secret_tell_proxies_not_to_compress_them_either() {
    for uri in ["/r/general?name=Ada", "/session/claim?token=ada-session-token-0001&next=%2F"] {
        let page = get(uri).await;
        assert_eq!(page.cache_control.as_deref(), Some("private, no-store, no-transform"), "{uri}");
    }
    let join = get("/").await;
    assert_eq!(join.cache_control.as_deref(), Some("private, no-store"), "the join page holds no secret");
}
