//! The HTTP client every backend uses.

use super::error::error_chain;
use super::generation::{failure, GenerationError};
use super::stream::Lines;
use super::BackendError;
use crate::record::FailureKind;

/// A client that never reuses a connection. Inference servers close idle keep-alive
/// connections on their own schedule, and a request sent on one the server is closing
/// fails with "connection closed before message completed": a failure of the client,
/// not of the configuration under test. A fresh loopback connection per request costs
/// well under a millisecond.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_default()
}

/// Reads a JSON response; a non-2xx status becomes [`BackendError::Http`] with the body
/// as `error_body` renders it (each server words its errors its own way).
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    url: &str,
    response: reqwest::Response,
    error_body: fn(&str) -> String,
) -> Result<T, BackendError> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| BackendError::unreachable(url, &e))?;
    if !status.is_success() {
        return Err(BackendError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            body: error_body(&text),
        });
    }
    serde_json::from_str(&text).map_err(|e| BackendError::protocol(url, e))
}

/// Sends a streaming generation request and hands back its body as lines. A request
/// that does not go through is a server error naming `server`; a non-2xx answer is
/// classified from its body by `classify` (each server words its errors its own way).
pub(crate) async fn open_stream(
    server: &str,
    request: reqwest::RequestBuilder,
    classify: fn(u16, &str) -> GenerationError,
) -> Result<Lines, GenerationError> {
    let response = request.send().await.map_err(|e| {
        failure(
            FailureKind::ServerError,
            format!("{server} request failed: {}", error_chain(&e)),
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(classify(status.as_u16(), &text));
    }
    Ok(Lines::new(response))
}
