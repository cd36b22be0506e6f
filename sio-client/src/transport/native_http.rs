use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::TransportError;

/// A small HTTP/1.1 client for long-polling (plain `http://` only).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        // Nagle off: a poll's small POST goes out at once instead of waiting for the previous segment's ACK.
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// `GET url`; the body as text.
    pub fn get(&self, url: String) -> impl Future<Output = Result<String, TransportError>> + Send + 'static {
        let client = self.client.clone();
        async move {
            let uri: hyper::Uri = url.parse().map_err(|e| TransportError(format!("invalid URL {url}: {e}")))?;
            let response = client.get(uri).await.map_err(|e| TransportError(e.to_string()))?;
            read_text(response).await
        }
    }

    /// `POST url` with a text body; the answer's body as text.
    pub fn post(
        &self,
        url: String,
        body: String,
    ) -> impl Future<Output = Result<String, TransportError>> + Send + 'static {
        let client = self.client.clone();
        async move {
            let request = hyper::Request::post(url)
                .header(hyper::header::CONTENT_TYPE, "text/plain; charset=UTF-8")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| TransportError(e.to_string()))?;
            let response = client.request(request).await.map_err(|e| TransportError(e.to_string()))?;
            read_text(response).await
        }
    }
}

async fn read_text(response: hyper::Response<hyper::body::Incoming>) -> Result<String, TransportError> {
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| TransportError(e.to_string()))?.to_bytes();
    let text = String::from_utf8(body.to_vec()).map_err(|_| TransportError("the response is not UTF-8".into()))?;
    if !status.is_success() {
        return Err(TransportError(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
    }
    Ok(text)
}
