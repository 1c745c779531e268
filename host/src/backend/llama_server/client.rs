//! llama-server's HTTP API: `/health`, `/props`, `/tokenize`, streamed `/completion`, and
//! one greedy token's next-token probabilities (`n_probs`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::backend::generation::{
    failure, Generation, GenerationError, GenerationRequest, ServerTimings, StreamClock,
};
use crate::backend::http::{fetch_json, open_stream, DEFAULT_REQUEST_TIMEOUT};
use crate::backend::stream::{looks_like_oom, parse_sse_line, SseLine};
use crate::backend::BackendError;
use crate::record::FailureKind;

/// A client for one llama-server.
#[derive(Debug, Clone)]
pub struct LlamaClient {
    http: reqwest::Client,
    base: String,
    /// Deadline of every request but generations and health checks.
    request_timeout: Duration,
}

impl LlamaClient {
    pub fn new(base_url: String) -> Self {
        Self {
            http: crate::backend::http::client(),
            base: base_url.trim_end_matches('/').to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Sets how long a request that is not a generation may take.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /health` answered 200 (503 while the model loads).
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/health", self.base);
        let answer = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        answer.is_ok_and(|r| r.status().is_success())
    }

    /// Context per slot granted: `/props` `default_generation_settings.n_ctx`.
    pub async fn granted_ctx(&self) -> Result<u32, BackendError> {
        #[derive(Deserialize)]
        struct Props {
            default_generation_settings: Settings,
        }
        #[derive(Deserialize)]
        struct Settings {
            n_ctx: u32,
        }
        let props: Props = self.get_json("/props").await?;
        Ok(props.default_generation_settings.n_ctx)
    }

    /// The model's own tokens for `text` (no BOS).
    pub async fn tokenize(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        self.tokenize_as(text, false).await
    }

    /// The tokens of `text` as the server would prompt with it: the model's special
    /// tokens added (`add_special`: BOS first where the model's header asks for one, as
    /// Gemma's does). A prompt sent as token ids is used as given, nothing added, so
    /// this is how such a prompt gets its BOS exactly once.
    pub async fn tokenize_with_bos(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        self.tokenize_as(text, true).await
    }

    async fn tokenize_as(&self, text: &str, add_special: bool) -> Result<Vec<u32>, BackendError> {
        #[derive(Deserialize)]
        struct Tokens {
            tokens: Vec<u32>,
        }
        let url = format!("{}/tokenize", self.base);
        let request = self
            .http
            .post(&url)
            .json(&json!({ "content": text, "add_special": add_special }));
        let tokens: Tokens = fetch_json(request, &url, self.request_timeout, first_500).await?;
        Ok(tokens.tokens)
    }

    /// One non-streamed `/completion` of a single greedy token after `prompt` (token
    /// ids, used as given: no BOS is added), listing the `n_probs` most likely next
    /// tokens of the model's whole distribution (`post_sampling_probs: false`: softmax
    /// of the logits, before any sampler). `cache_prompt` keeps the slot's KV cache, so a
    /// prompt that extends the previous one by a token prefills that token only. The
    /// answer's body, within `timeout`.
    pub async fn next_token_probs(
        &self,
        prompt: &[u32],
        n_probs: u32,
        timeout: Duration,
    ) -> Result<serde_json::Value, BackendError> {
        let url = format!("{}/completion", self.base);
        let body = json!({
            "prompt": prompt,
            "n_predict": 1,
            "n_probs": n_probs,
            "post_sampling_probs": false,
            "temperature": 0.0,
            "cache_prompt": true,
            "stream": false,
        });
        fetch_json(self.http.post(&url).json(&body), &url, timeout, first_500).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, BackendError> {
        let url = format!("{}{path}", self.base);
        fetch_json(self.http.get(&url), &url, self.request_timeout, first_500).await
    }

    /// Streams one `/completion` with prompt caching off (every request prefills for
    /// real) and EOS ignored (exactly `n_predict` tokens). No timeout here: the caller
    /// bounds the whole request.
    pub async fn complete(
        &self,
        request: &GenerationRequest,
    ) -> Result<Generation, GenerationError> {
        let url = format!("{}/completion", self.base);
        let body = json!({
            "prompt": request.prompt,
            "n_predict": request.n_predict,
            "stream": true,
            "cache_prompt": false,
            "ignore_eos": true,
        });
        let mut clock = StreamClock::start();
        let request = self.http.post(&url).json(&body);
        let mut lines = open_stream(&url, request, classify_http_error).await?;
        loop {
            let line = lines.next_line().await.map_err(|e| {
                failure(
                    FailureKind::ServerError,
                    format!(
                        "llama-server stream broke after {} tokens: {e}",
                        clock.token_events
                    ),
                )
            })?;
            let Some(line) = line else {
                return Err(failure(
                    FailureKind::BadOutput,
                    format!(
                        "llama-server stream ended without a final event after {} tokens",
                        clock.token_events
                    ),
                ));
            };
            let data = match parse_sse_line(&line) {
                SseLine::Data(d) => d,
                SseLine::Error(e) => return Err(classify_http_error(500, e)),
                SseLine::Done | SseLine::Other => continue,
            };
            match parse_event(data) {
                Event::Token => clock.token(),
                Event::Error(text) => return Err(classify_http_error(500, &text)),
                Event::Final(fin) => {
                    if fin.truncated {
                        return Err(failure(
                            FailureKind::BadOutput,
                            format!(
                                "llama-server truncated the prompt ({} tokens evaluated)",
                                fin.prompt_tokens.unwrap_or(0)
                            ),
                        ));
                    }
                    return clock.finish(fin.prompt_tokens, fin.completion_tokens, fin.timings);
                }
                Event::Invalid(detail) => {
                    return Err(failure(
                        FailureKind::BadOutput,
                        format!("invalid llama-server event: {detail}"),
                    ))
                }
            }
        }
    }
}

/// An error body, shortened for messages.
fn first_500(body: &str) -> String {
    body.chars().take(500).collect()
}

/// An HTTP error or error event: out of memory by its text, a prompt over the context
/// as bad output (the context was not really granted), anything else a server error.
pub(crate) fn classify_http_error(status: u16, body: &str) -> GenerationError {
    let message: String = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(
                e.get("message")
                    .and_then(|m| m.as_str())
                    .map_or_else(|| e.to_string(), str::to_owned),
            )
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    let kind = if looks_like_oom(&message) {
        FailureKind::OutOfMemory
    } else if message.contains("exceeds the available context size") {
        FailureKind::BadOutput
    } else {
        FailureKind::ServerError
    };
    failure(kind, format!("llama-server answered {status}: {message}"))
}

#[derive(Debug, PartialEq)]
pub(crate) struct Final {
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub truncated: bool,
    pub timings: ServerTimings,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    Token,
    Final(Final),
    Error(String),
    Invalid(String),
}

/// One `/completion` stream event: every event before `stop: true` carries one token.
pub(crate) fn parse_event(data: &str) -> Event {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        stop: bool,
        tokens_predicted: Option<u32>,
        tokens_evaluated: Option<u32>,
        #[serde(default)]
        truncated: bool,
        timings: Option<RawTimings>,
        error: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct RawTimings {
        prompt_ms: Option<f64>,
        predicted_ms: Option<f64>,
        predicted_per_second: Option<f64>,
    }
    let raw: Raw = match serde_json::from_str(data) {
        Ok(raw) => raw,
        Err(e) => {
            return Event::Invalid(format!(
                "{e}: {}",
                data.chars().take(200).collect::<String>()
            ))
        }
    };
    if let Some(err) = raw.error {
        return Event::Error(json!({ "error": err }).to_string());
    }
    if !raw.stop {
        return Event::Token;
    }
    let timings = raw
        .timings
        .map_or_else(ServerTimings::default, |t| ServerTimings {
            prompt_ms: t.prompt_ms,
            predicted_ms: t.predicted_ms,
            predicted_per_second: t.predicted_per_second,
        });
    Event::Final(Final {
        prompt_tokens: raw.tokens_evaluated,
        completion_tokens: raw.tokens_predicted,
        truncated: raw.truncated,
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = include_str!("../../../tests/fixtures/llama_server/completion_stream.txt");

    #[test]
    fn captured_stream_parses_into_tokens_and_final_counts() {
        let events: Vec<Event> = STREAM
            .lines()
            .filter_map(|l| match parse_sse_line(l) {
                SseLine::Data(d) => Some(parse_event(d)),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 4);
        assert!(events[..3].iter().all(|e| *e == Event::Token));
        let Event::Final(fin) = &events[3] else {
            panic!("last event is not final: {:?}", events[3]);
        };
        assert_eq!(fin.completion_tokens, Some(3));
        assert_eq!(fin.prompt_tokens, Some(12));
        assert!(!fin.truncated);
        assert!(fin.timings.prompt_ms.is_some_and(|ms| ms > 0.0));
        assert!(fin.timings.predicted_per_second.is_some_and(|t| t > 0.0));
    }

    #[test]
    fn context_overflow_is_bad_output() {
        let body = include_str!("../../../tests/fixtures/llama_server/exceed_context.json");
        let f = classify_http_error(400, body);
        assert_eq!(f.kind, FailureKind::BadOutput);
        assert!(f.message.contains("5001 tokens"), "{}", f.message);
    }

    #[test]
    fn error_event_is_recognised() {
        let e = parse_event(
            r#"{"error":{"code":500,"message":"failed to allocate compute buffer","type":"server_error"}}"#,
        );
        let Event::Error(text) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            classify_http_error(500, &text).kind,
            FailureKind::OutOfMemory
        );
    }
}
