//! OpenAI-compatible servers (vLLM, LM Studio, SGLang, llama-server's `/v1`): streamed
//! `/v1/completions` with usage. Ozone cannot set the context of such a server: the
//! context is exercised by prompt length only.

use serde_json::{json, Value};

use super::generation::{failure, Generation, GenerationError, ServerTimings, StreamClock};
use std::time::Duration;

use super::http::{fetch_json, open_stream, DEFAULT_REQUEST_TIMEOUT};
use super::stream::{looks_like_oom, parse_sse_line, SseLine};
use super::{BackendError, ModelMetadata, SizeClass};
use crate::record::FailureKind;

/// A client for one OpenAI-compatible server and model.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base: String,
    model: String,
    api_key: Option<String>,
    /// Deadline of every request but generations.
    request_timeout: Duration,
}

impl OpenAiClient {
    /// `base_url` may end in `/v1` or not.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Self {
        let base = base_url.trim().trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base).to_owned();
        Self {
            http: super::http::client(),
            base,
            model: model.to_owned(),
            api_key,
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

    /// What `/v1/models` says about the model: its context (`max_model_len` on vLLM,
    /// `meta.n_ctx_train` on llama-server) and parameter count where given.
    pub async fn model_metadata(&self) -> Result<ModelMetadata, BackendError> {
        let url = format!("{}/v1/models", self.base);
        let mut request = self.http.get(&url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let models: Value = fetch_json(request, &url, self.request_timeout, |body| {
            body.chars().take(300).collect()
        })
        .await?;
        Ok(metadata_from_models(&self.model, &models))
    }

    /// Streams one completion of `max_tokens` tokens, asking for usage in the last event.
    pub async fn complete(
        &self,
        prompt: &str,
        max_tokens: u32,
    ) -> Result<Generation, GenerationError> {
        let url = format!("{}/v1/completions", self.base);
        let body = json!({
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
            "ignore_eos": true,
        });
        let mut request = self.http.post(&url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let mut clock = StreamClock::start();
        let mut lines = open_stream(&url, request, classify_error).await?;
        let mut usage = None;
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| failure(FailureKind::ServerError, format!("stream broke: {e}")))?;
            let data = match line.as_deref().map(parse_sse_line) {
                None | Some(SseLine::Done) => break,
                Some(SseLine::Data(d)) => d.to_owned(),
                Some(SseLine::Error(e)) => return Err(classify_error(200, e)),
                Some(SseLine::Other) => continue,
            };
            match parse_event(&data) {
                Event::Text => clock.token(),
                Event::Nothing => {}
                Event::Usage(u) => usage = Some(u),
                Event::TextAndUsage(u) => {
                    clock.token();
                    usage = Some(u);
                }
                Event::Error(text) => return Err(classify_error(200, &text)),
            }
        }
        let Some(usage) = usage else {
            return Err(failure(
                FailureKind::BadOutput,
                format!("{url} sent no usage: it cannot be measured honestly without token counts"),
            ));
        };
        clock.finish(
            Some(usage.prompt_tokens),
            Some(usage.completion_tokens),
            ServerTimings::default(),
        )
    }
}

/// Facts from a `/v1/models` body: the entry named `model`, else the only entry.
pub(crate) fn metadata_from_models(model: &str, models: &Value) -> ModelMetadata {
    let entries = models
        .get("data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let entry = entries
        .iter()
        .find(|e| e.get("id").and_then(Value::as_str) == Some(model))
        .or(if entries.len() == 1 {
            entries.first()
        } else {
            None
        });
    let num = |pointer: &str| entry?.pointer(pointer)?.as_u64();
    let to_u32 = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
    let params = num("/meta/n_params");
    ModelMetadata {
        name: model.to_owned(),
        architecture: None,
        parameter_count: params,
        size_class: params.map_or(SizeClass::Small, SizeClass::from_params),
        trained_context: to_u32(num("/max_model_len").or(num("/meta/n_ctx_train"))),
        block_count: None,
        head_count: None,
        head_count_kv: None,
        embedding_length: to_u32(num("/meta/n_embd")),
        key_length: None,
        value_length: None,
        layers: Vec::new(),
        experts: None,
        weights_bytes: num("/meta/size"),
        digest: None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Event {
    Text,
    Nothing,
    Usage(Usage),
    TextAndUsage(Usage),
    Error(String),
}

pub(crate) fn parse_event(data: &str) -> Event {
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return Event::Error(format!(
            "invalid event: {}",
            data.chars().take(200).collect::<String>()
        ));
    };
    if value.get("error").is_some() {
        return Event::Error(data.to_owned());
    }
    let text = value
        .pointer("/choices/0/text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let usage = value.get("usage").filter(|u| !u.is_null()).and_then(|u| {
        Some(Usage {
            prompt_tokens: u32::try_from(u.get("prompt_tokens")?.as_u64()?).ok()?,
            completion_tokens: u32::try_from(u.get("completion_tokens")?.as_u64()?).ok()?,
        })
    });
    match (text, usage) {
        (true, Some(u)) => Event::TextAndUsage(u),
        (true, None) => Event::Text,
        (false, Some(u)) => Event::Usage(u),
        (false, None) => Event::Nothing,
    }
}

fn classify_error(status: u16, body: &str) -> GenerationError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(
                e.get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_owned),
            )
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    let kind = if looks_like_oom(&message) {
        FailureKind::OutOfMemory
    } else {
        FailureKind::ServerError
    };
    failure(kind, format!("server answered {status}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = include_str!("../../tests/fixtures/openai/completions_stream.txt");

    #[test]
    fn captured_stream_has_three_tokens_and_usage() {
        let events: Vec<Event> = STREAM
            .lines()
            .filter_map(|l| match parse_sse_line(l) {
                SseLine::Data(d) => Some(parse_event(d)),
                _ => None,
            })
            .collect();
        assert_eq!(events.iter().filter(|e| **e == Event::Text).count(), 3);
        assert_eq!(
            events.last(),
            Some(&Event::Usage(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            }))
        );
    }

    #[test]
    fn models_listing_gives_the_context() {
        let vllm: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/openai/models_vllm.json"))
                .expect("fixture");
        let facts = metadata_from_models("Qwen/Qwen2.5-1.5B-Instruct", &vllm);
        assert_eq!(facts.trained_context, Some(32768));
        let llama: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/openai/models_llama_server.json"
        ))
        .expect("fixture");
        // One model served: it is the one, whatever name the user gave.
        let facts = metadata_from_models("tiny", &llama);
        assert_eq!(facts.trained_context, Some(32768));
        assert_eq!(facts.parameter_count, Some(94784));
    }

    #[test]
    fn base_url_accepts_v1_suffix() {
        let c = OpenAiClient::new("http://localhost:8000/v1/", "m", None);
        assert_eq!(c.base_url(), "http://localhost:8000");
    }

    #[test]
    fn oom_error_body_is_out_of_memory() {
        let f = classify_error(
            500,
            r#"{"error":{"message":"CUDA out of memory. Tried to allocate 2.00 GiB","type":"InternalServerError","code":500}}"#,
        );
        assert_eq!(f.kind, FailureKind::OutOfMemory);
    }
}
