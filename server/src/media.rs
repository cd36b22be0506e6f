//! Stored images over HTTP, at `GET /media/<id>`. An image never changes once stored, so it is served with its
//! content type, an `ETag`, and a year of caching; browsers and proxies keep it, and a revalidation is a 304.

use std::sync::Arc;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::store::MessageStore;

/// Serves the image stored under `id`.
pub async fn serve(store: Arc<dyn MessageStore>, Path(id): Path<String>, request: HeaderMap) -> Response {
    // Ids are UUIDs: anything else names no image, and never reaches the database.
    if uuid::Uuid::parse_str(&id).is_err() {
        return not_found();
    }
    let etag = format!("\"{id}\"");
    if request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, cache_headers(&etag)).into_response();
    }
    match store.image(id.clone()).await {
        Ok(Some(image)) => {
            let mut headers = cache_headers(&etag);
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(image.kind.content_type()));
            (StatusCode::OK, headers, image.bytes).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => {
            tracing::error!(error = %e, %id, "image not read");
            (StatusCode::INTERNAL_SERVER_ERROR, "The image could not be read. Try again in a moment.").into_response()
        }
    }
}

fn cache_headers(etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    // Shown as what it says it is, never sniffed into something a browser would run.
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "No such image.").into_response()
}
