use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::TransportError;

/// A small HTTP/1.1 client for long-polling (plain `http://` only).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    /// A response body over this many bytes fails the request (see `ClientBuilder::max_incoming_bytes`).
    max_incoming: usize,
}

impl Http {
    pub fn new(max_incoming: usize) -> Self {
        let mut connector = HttpConnector::new();
        // Nagle off: a poll's small POST goes out at once instead of waiting for the previous segment's ACK.
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector), max_incoming }
    }

    /// `GET url`; the body as text.
    pub fn get(&self, url: String) -> impl Future<Output = Result<String, TransportError>> + Send + 'static {
        let (client, max_incoming) = (self.client.clone(), self.max_incoming);
        async move {
            let uri: hyper::Uri = url.parse().map_err(|e| TransportError(format!("invalid URL {url}: {e}")))?;
            let response = client.get(uri).await.map_err(|e| TransportError(e.to_string()))?;
            read_text(response, max_incoming).await
        }
    }

    /// `POST url` with a text body; the answer's body as text.
    pub fn post(
        &self,
        url: String,
        body: String,
    ) -> impl Future<Output = Result<String, TransportError>> + Send + 'static {
        let (client, max_incoming) = (self.client.clone(), self.max_incoming);
        async move {
            let request = hyper::Request::post(url)
                .header(hyper::header::CONTENT_TYPE, "text/plain; charset=UTF-8")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| TransportError(e.to_string()))?;
            let response = client.request(request).await.map_err(|e| TransportError(e.to_string()))?;
            read_text(response, max_incoming).await
        }
    }
}

async fn read_text(
    response: hyper::Response<hyper::body::Incoming>,
    max_incoming: usize,
) -> Result<String, TransportError> {
    let status = response.status();
    // The body is read up to the limit and no further, so a server that sends without end costs at most that.
    let body = Limited::new(response.into_body(), max_incoming).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            super::too_large(max_incoming)
        } else {
            TransportError(e.to_string())
        }
    })?;
    let body = body.to_bytes();
    let text = String::from_utf8(body.to_vec()).map_err(|_| TransportError("the response is not UTF-8".into()))?;
    if !status.is_success() {
        return Err(TransportError(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
    }
    Ok(text)
}
