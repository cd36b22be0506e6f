//! The server-rendered pages, requested straight from the router (no JavaScript involved).

use axum::body::Body;
use http::{Request, StatusCode, header};
use leptos::config::LeptosOptions;
use tower::ServiceExt as _;

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

async fn get(uri: &str) -> Page {
    let options = LeptosOptions::builder().output_name("causerie").build();
    let router = server::startup::router(options, &server::Config::default());
    // Browsers announce HTML for navigations; Leptos answers redirects with a real 302 only then.
    let request = Request::get(uri).header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let response = router.oneshot(request).await.expect("the router answers");
    let status = response.status();
    let location = response.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body is readable");
    Page { status, location, body: String::from_utf8_lossy(&bytes).into_owned() }
}

#[tokio::test]
async fn the_join_page_is_a_get_form_with_name_and_room_fields() {
    let page = get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"method="GET""#) && page.body.contains(r#"action="/""#), "{}", page.body);
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
