use gloo_net::http::Request;

use super::TransportError;

/// Long-polling requests through the browser's `fetch`.
#[derive(Clone)]
pub struct Http {
    /// A response body over this many bytes fails the request, once it has arrived (`fetch` has no limit).
    max_incoming: usize,
}

// The request futures own their inputs and do not borrow `self`, because the polling transport stores them
// across `select!` iterations: hence `impl Future + 'static`, not `async fn`.
#[allow(clippy::manual_async_fn)]
impl Http {
    pub fn new(max_incoming: usize) -> Self {
        Self { max_incoming }
    }

    /// `GET url`; the body as text.
    pub fn get(&self, url: String) -> impl Future<Output = Result<String, TransportError>> + 'static {
        let max_incoming = self.max_incoming;
        async move {
            let response = Request::get(&url).send().await.map_err(|e| TransportError(e.to_string()))?;
            read_text(response, max_incoming).await
        }
    }

    /// `POST url` with a text body; the answer's body as text.
    pub fn post(&self, url: String, body: String) -> impl Future<Output = Result<String, TransportError>> + 'static {
        let max_incoming = self.max_incoming;
        async move {
            let response = Request::post(&url)
                .header("Content-Type", "text/plain; charset=UTF-8")
                .body(body)
                .map_err(|e| TransportError(e.to_string()))?
                .send()
                .await
                .map_err(|e| TransportError(e.to_string()))?;
            read_text(response, max_incoming).await
        }
    }
}

async fn read_text(response: gloo_net::http::Response, max_incoming: usize) -> Result<String, TransportError> {
    let status = response.status();
    let text = response.text().await.map_err(|e| TransportError(e.to_string()))?;
    if text.len() > max_incoming {
        return Err(super::too_large(max_incoming));
    }
    if !(200..300).contains(&status) {
        return Err(TransportError(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
    }
    Ok(text)
}
