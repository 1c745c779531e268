//! The HTTP client every backend uses, with the limits every request is held to: a total
//! deadline on requests that are not generations, and a cap on every body and line.

use std::time::Duration;

use super::error::error_chain;
use super::generation::{failure, GenerationError};
use super::stream::Lines;
use super::BackendError;
use crate::record::FailureKind;

/// How long a request that is not a generation (model facts, `/props`, `/tokenize`,
/// `/api/ps`) may take from connecting to the last byte of its body. A server that
/// accepts the connection and never answers, or drips its answer, fails here instead
/// of hanging the run.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest JSON body read from any endpoint. Real answers are kilobytes (Ollama's
/// `/api/show` without `verbose` is the largest, well under a megabyte).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Largest error body kept: only its beginning goes into a message.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

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

/// Sends a request that is not a generation and reads its JSON answer, all within
/// `timeout`. A non-2xx status becomes [`BackendError::Http`] with the body as
/// `error_body` renders it (each server words its errors its own way).
pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
    error_body: fn(&str) -> String,
) -> Result<T, BackendError> {
    let transport = |e: reqwest::Error| BackendError::transport(url, &e, timeout);
    let response = request.timeout(timeout).send().await.map_err(transport)?;
    let status = response.status();
    let limit = if status.is_success() {
        MAX_BODY_BYTES
    } else {
        MAX_ERROR_BODY_BYTES
    };
    let body = read_capped(response, limit).await;
    let text = match body {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(BodyError::Transport(e)) => return Err(transport(e)),
        // An error answer is only quoted: its beginning is enough.
        Err(BodyError::TooLarge(partial)) if !status.is_success() => {
            String::from_utf8_lossy(&partial).into_owned()
        }
        Err(BodyError::TooLarge(_)) => {
            return Err(BackendError::TooLarge {
                url: url.to_owned(),
                limit_mib: MAX_BODY_BYTES >> 20,
            })
        }
    };
    if !status.is_success() {
        return Err(BackendError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            body: error_body(&text),
        });
    }
    serde_json::from_str(&text).map_err(|e| BackendError::protocol(url, e))
}

enum BodyError {
    Transport(reqwest::Error),
    /// Over the cap; what was read up to it.
    TooLarge(Vec<u8>),
}

/// The body, read chunk by chunk and never past `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(body));
    }
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Err(BodyError::TooLarge(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends a streaming generation request and hands back its body as lines. A request
/// that does not go through is a server error naming `url`; a non-2xx answer is
/// classified from (the beginning of) its body by `classify` (each server words its
/// errors its own way). The caller bounds the whole request in time.
pub(crate) async fn open_stream(
    url: &str,
    request: reqwest::RequestBuilder,
    classify: fn(u16, &str) -> GenerationError,
) -> Result<Lines, GenerationError> {
    let response = request.send().await.map_err(|e| {
        failure(
            FailureKind::ServerError,
            format!("request to {url} failed: {}", error_chain(&e)),
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        let text = match read_capped(response, MAX_ERROR_BODY_BYTES).await {
            Ok(bytes) | Err(BodyError::TooLarge(bytes)) => {
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Err(BodyError::Transport(_)) => String::new(),
        };
        return Err(classify(status.as_u16(), &text));
    }
    Ok(Lines::new(url, response))
}
