//! Images: sent as Socket.IO binary attachments, checked, stored, and served over HTTP.

use protocol::{
    AckResult, ChatMessage, ClientId, ErrorBody, ErrorCode, ImageKind, MAX_IMAGE_BYTES, MessageAccepted, MessageBody,
    SendImage,
};
use sio_client::{Client, RequestError, Socket, SocketEvent, TransportKind};

use crate::helpers::{PATIENCE, http_request, join, next, refusal, room, spawn_app, within};

/// The start of a PNG file of `width` × `height` pixels: its signature and header chunk, which is all a
/// dimensions check reads (the pixels after it do not matter here).
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

fn image(caption: &str, client_id: Option<&str>) -> SendImage {
    SendImage {
        room: room("general"),
        content_type: ImageKind::Png,
        caption: MessageBody::parse(caption).unwrap(),
        client_id: client_id.map(|id| ClientId::parse(id).unwrap()),
    }
}

/// Sends `bytes` as a PNG and returns the server's refusal.
async fn refused(socket: &Socket, bytes: Vec<u8>) -> ErrorBody {
    match within("the ack", socket.request_with_binary(&image("x", None), bytes, PATIENCE)).await {
        Err(RequestError::Rejected(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_image_reaches_the_room_and_is_served_with_its_type_and_cache_headers() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut inbox = bob.on::<ChatMessage>();

    let bytes = png(640, 480);
    let accepted: MessageAccepted =
        within("the ack", ada.request_with_binary(&image("sunset.png", None), bytes.clone(), PATIENCE)).await.unwrap();
    let reference = accepted.message.image.clone().expect("the message carries its image");
    assert_eq!((reference.width, reference.height, reference.size), (640, 480, bytes.len() as u64));
    assert_eq!(reference.content_type, ImageKind::Png);
    assert_eq!(next("Bob's copy", &mut inbox).await, accepted.message);

    let served = http_request(&app, "GET", &reference.url, &[], "").await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    for header in [
        "content-type: image/png",
        "cache-control: public, max-age=31536000, immutable",
        "x-content-type-options: nosniff",
        &format!("content-length: {}", bytes.len()),
    ] {
        assert!(served.to_lowercase().contains(header), "{header} missing from {served}");
    }
    assert!(!served.to_lowercase().contains("set-cookie"), "a public response carries no session: {served}");

    let etag = format!("\"{}\"", reference.url.trim_start_matches("/media/"));
    let again = http_request(&app, "GET", &reference.url, &[("If-None-Match", &etag)], "").await;
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    let missing = http_request(&app, "GET", "/media/00000000-0000-4000-8000-000000000000", &[], "").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let nonsense = http_request(&app, "GET", "/media/..%2F..%2Fetc%2Fpasswd", &[], "").await;
    assert!(nonsense.starts_with("HTTP/1.1 404"), "{nonsense}");
}

#[tokio::test]
async fn an_image_travels_over_long_polling_too() {
    let app = spawn_app().await;
    let client = Client::builder(app.base_url()).transports(&[TransportKind::Polling]).connect();
    let auth = protocol::ChatAuth { name: protocol::DisplayName::parse("Polly").unwrap(), session: None };
    let polly = client.socket_with_auth(protocol::CHAT_NAMESPACE, &auth).unwrap();
    let mut lifecycle = polly.lifecycle();
    assert!(matches!(next("the connection", &mut lifecycle).await, SocketEvent::Connected { .. }));
    join(&polly, "general").await;

    let accepted: MessageAccepted =
        within("the ack", polly.request_with_binary(&image("over polling", None), png(3, 2), PATIENCE)).await.unwrap();
    assert_eq!(accepted.message.image.map(|i| (i.width, i.height)), Some((3, 2)));
}

#[tokio::test]
async fn a_retried_image_is_stored_once() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let request = image("twice?", Some("img-1"));
    let first: MessageAccepted =
        within("the ack", ada.request_with_binary(&request, png(2, 2), PATIENCE)).await.unwrap();
    let retry: MessageAccepted =
        within("the retry's ack", ada.request_with_binary(&request, png(2, 2), PATIENCE)).await.unwrap();
    assert_eq!(retry.message, first.message);
}

#[tokio::test]
async fn an_image_that_is_not_what_it_claims_too_large_or_missing_is_refused_in_words() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let jpeg = refused(&ada, vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16]).await;
    assert_eq!(jpeg.code, ErrorCode::InvalidPayload);
    assert_eq!(jpeg.message, "That file says it is a PNG image, but its contents are a JPEG image.");

    let script = refused(&ada, b"<svg onload=alert(1)>".to_vec()).await;
    assert!(script.message.contains("not a PNG, JPEG, GIF or WebP image"), "{}", script.message);

    let mut huge = png(100, 100);
    huge.resize(MAX_IMAGE_BYTES + 1, 0);
    let too_large = refused(&ada, huge).await;
    assert!(too_large.message.contains("the limit is 2.0 MB"), "{}", too_large.message);

    let bomb = refused(&ada, png(100_000, 100_000)).await;
    assert!(bomb.message.contains("each side must be between 1 and 16384"), "{}", bomb.message);

    // Each side within the limit, but a gigabyte once decoded.
    let square_bomb = refused(&ada, png(16_384, 16_384)).await;
    assert_eq!(square_bomb.message, "That image is 16384×16384 pixels, 268.4 megapixels; the limit is 40 megapixels.");

    // The details without the bytes: a plain one-argument request.
    let ack: AckResult<MessageAccepted> =
        within("the ack", ada.emit_with_ack(&image("no bytes", None), PATIENCE)).await.unwrap();
    let missing = refusal(ack);
    assert_eq!(missing.code, ErrorCode::InvalidPayload);
    assert!(missing.message.contains("its bytes as a binary attachment"), "{}", missing.message);
}
