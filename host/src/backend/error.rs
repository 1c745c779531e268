//! Errors of the backend layer that are not trial outcomes: a missing binary, an
//! unreadable model, an unreachable or misbehaving server when asking for facts.

use std::path::PathBuf;
use std::time::Duration;

use super::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(
        "llama-server not found: pass --llama-server PATH, set LLAMA_SERVER, or put llama-server \
         on PATH (CI and tests: `export LLAMA_SERVER=$(.ci/install-llama-server)`)"
    )]
    LlamaServerNotFound,
    #[error("llama-server binary {path} (from {origin}) does not exist or is not executable")]
    LlamaServerNotExecutable { path: PathBuf, origin: &'static str },
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "{url} did not answer within {secs} s: the server takes connections but does not \
         respond (is it stuck, or not an inference server?)"
    )]
    Timeout { url: String, secs: u64 },
    #[error(
        "{url} sent more than {limit_mib} MiB: not an answer this endpoint gives (is the URL \
         an inference server?)"
    )]
    TooLarge { url: String, limit_mib: usize },
    #[error("{url} answered HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} sent an unexpected response: {detail}")]
    Protocol { url: String, detail: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl BackendError {
    /// A request that failed on the way: a deadline of `timeout` that passed, or a
    /// connection that could not be made or broke.
    pub(crate) fn transport(url: &str, err: &reqwest::Error, timeout: Duration) -> Self {
        if err.is_timeout() {
            BackendError::Timeout {
                url: url.to_owned(),
                secs: timeout.as_secs_f64().ceil() as u64,
            }
        } else {
            BackendError::Unreachable {
                url: url.to_owned(),
                detail: error_chain(err),
            }
        }
    }

    pub(crate) fn protocol(url: &str, detail: impl std::fmt::Display) -> Self {
        BackendError::Protocol {
            url: url.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// An error with its sources, one line (`reqwest` hides the useful part in `source()`).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
