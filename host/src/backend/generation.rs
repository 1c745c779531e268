//! One streamed generation request and what was measured about it, common to every
//! backend.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::record::{FailureKind, TrialFailure};

/// What to send: token ids when the server tokenized the prompt for us (exact length),
/// text otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    Tokens(Vec<u32>),
    Text(String),
}

impl Prompt {
    /// Tokens known to be in the prompt (before the server adds BOS), when known.
    pub fn token_len(&self) -> Option<usize> {
        match self {
            Prompt::Tokens(t) => Some(t.len()),
            Prompt::Text(_) => None,
        }
    }
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: Prompt,
    pub n_predict: u32,
    /// Whole-request deadline (the trial's adaptive timeout).
    pub timeout: Duration,
}

/// Figures the server reports about one request, where it reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTimings {
    pub prompt_ms: Option<f64>,
    pub predicted_ms: Option<f64>,
    /// llama-server's `timings.predicted_per_second`.
    pub predicted_per_second: Option<f64>,
}

/// The measured outcome of one successful request.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Request sent → first streamed token.
    pub ttft: Duration,
    /// First streamed token → last streamed token.
    pub decode_span: Duration,
    /// Request sent → end of stream.
    pub total: Duration,
    /// Token-bearing stream events received.
    pub token_events: u32,
    /// Prompt tokens the server processed (its own count).
    pub prompt_tokens: Option<u32>,
    /// Tokens the server generated (its own count).
    pub completion_tokens: Option<u32>,
    pub server: ServerTimings,
}

impl Generation {
    /// Generated tokens per second after the first token: (n − 1) over the span from
    /// the first to the last token, on the client's clock. The first token belongs to
    /// prefill (it is TTFT), so it is not counted as decode.
    pub fn decode_tps(&self) -> Option<f64> {
        let n = self.completion_tokens?;
        let secs = self.decode_span.as_secs_f64();
        (n >= 2 && secs > 0.0).then(|| f64::from(n - 1) / secs)
    }

    /// Prompt tokens per second: the server's prompt time when it reports one, else TTFT.
    pub fn prefill_tps(&self) -> Option<f64> {
        let n = f64::from(self.prompt_tokens?);
        let ms = self
            .server
            .prompt_ms
            .unwrap_or(self.ttft.as_secs_f64() * 1000.0);
        (ms > 0.0).then(|| n / (ms / 1000.0))
    }
}

/// Why a request failed, classified for the trial record.
pub type GenerationError = TrialFailure;

pub(crate) fn failure(kind: FailureKind, message: impl Into<String>) -> GenerationError {
    TrialFailure {
        kind,
        message: message.into(),
        fault: None,
    }
}

/// Client-side clock of a streamed request.
#[derive(Debug)]
pub(crate) struct StreamClock {
    sent: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    pub(crate) token_events: u32,
}

impl StreamClock {
    pub(crate) fn start() -> Self {
        Self {
            sent: Instant::now(),
            first: None,
            last: None,
            token_events: 0,
        }
    }

    /// Marks a stream event that carried a token.
    pub(crate) fn token(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.token_events += 1;
    }

    pub(crate) fn finish(
        &self,
        prompt_tokens: Option<u32>,
        completion_tokens: Option<u32>,
        server: ServerTimings,
    ) -> Result<Generation, GenerationError> {
        let end = Instant::now();
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return Err(failure(
                FailureKind::BadOutput,
                "the stream ended without a single token",
            ));
        };
        Ok(Generation {
            ttft: first - self.sent,
            decode_span: last - first,
            total: end - self.sent,
            token_events: self.token_events,
            prompt_tokens,
            completion_tokens,
            server,
        })
    }
}
