//! Ollama's native API: `/api/version`, `/api/show` (model facts), streamed
//! `/api/generate` (NDJSON), `/api/ps` (memory of the loaded model).
//!
//! Ollama manages its own runner: changing `num_ctx`, `num_batch` or `num_gpu` reloads
//! the model, `num_ctx` is clamped to the trained context, and a prompt longer than the
//! context is truncated silently — the runner detects that from `prompt_eval_count`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::generation::{failure, Generation, GenerationError, ServerTimings, StreamClock};
use super::http::{fetch_json, open_stream, DEFAULT_REQUEST_TIMEOUT};
use super::layout::{layout, Header, HeaderValue};
use super::stream::looks_like_oom;
use super::{BackendError, ModelMetadata, SizeClass};
use crate::record::FailureKind;

/// Base URL when neither `--ollama-url` nor `OLLAMA_HOST` says otherwise.
pub const DEFAULT_OLLAMA_URL: &str = "http://127.0.0.1:11434";

/// Normalises `OLLAMA_HOST`-style values (`host:port`, `0.0.0.0`, full URLs) to a URL.
pub fn normalize_base_url(value: &str) -> String {
    let v = value.trim().trim_end_matches('/');
    // `0.0.0.0` is where a server listens, not where a client connects.
    let v = v.replace("0.0.0.0", "127.0.0.1");
    if v.contains("://") {
        // As Ollama does: an explicit scheme brings its own default port.
        return v;
    }
    if v.contains(':') {
        format!("http://{v}")
    } else {
        format!("http://{v}:11434")
    }
}

/// `options` of `/api/generate` Ozone sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OllamaOptions {
    pub num_ctx: u32,
    pub num_batch: u32,
    pub num_predict: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_thread: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_gpu: Option<u32>,
}

/// A model loaded in Ollama, from `/api/ps`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LoadedModel {
    pub name: String,
    pub size: u64,
    #[serde(default)]
    pub size_vram: u64,
    pub context_length: Option<u32>,
}

/// A client for one Ollama server and model.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base: String,
    model: String,
    /// Deadline of every request but generations.
    request_timeout: Duration,
}

impl OllamaClient {
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            http: super::http::client(),
            base: normalize_base_url(base_url),
            model: model.to_owned(),
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

    /// `GET /api/version`: also the "is Ollama there" check.
    pub async fn version(&self) -> Result<String, BackendError> {
        #[derive(Deserialize)]
        struct Version {
            version: String,
        }
        let url = format!("{}/api/version", self.base);
        let request = self.http.get(&url);
        let version: Version = fetch_json(request, &url, self.request_timeout, error_text).await?;
        Ok(version.version)
    }

    /// `POST /api/show` → model facts.
    pub async fn model_metadata(&self) -> Result<ModelMetadata, BackendError> {
        let url = format!("{}/api/show", self.base);
        let request = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "model": self.model }));
        let show: Value = fetch_json(request, &url, self.request_timeout, error_text).await?;
        metadata_from_show(&self.model, &show)
            .map_err(|detail| BackendError::protocol(&url, detail))
    }

    /// `GET /api/ps`: the loaded copy of this client's model, if any.
    pub async fn loaded(&self) -> Result<Option<LoadedModel>, BackendError> {
        #[derive(Deserialize)]
        struct Ps {
            models: Vec<LoadedModel>,
        }
        let url = format!("{}/api/ps", self.base);
        let request = self.http.get(&url);
        let ps: Ps = fetch_json(request, &url, self.request_timeout, error_text).await?;
        let wanted = with_tag(&self.model);
        Ok(ps.models.into_iter().find(|m| with_tag(&m.name) == wanted))
    }

    /// Streams one `/api/generate`. `keep_alive` keeps the model loaded between samples.
    pub async fn generate(
        &self,
        prompt: &str,
        options: &OllamaOptions,
        keep_alive: &str,
    ) -> Result<Generation, GenerationError> {
        let url = format!("{}/api/generate", self.base);
        let body = serde_json::json!({
            "model": self.model,
            "prompt": prompt,
            "raw": true,
            "stream": true,
            "keep_alive": keep_alive,
            "options": options,
        });
        let mut clock = StreamClock::start();
        let request = self.http.post(&url).json(&body);
        let mut lines = open_stream(&url, request, classify_error).await?;
        loop {
            let line = lines.next_line().await.map_err(|e| {
                failure(
                    FailureKind::ServerError,
                    format!("Ollama stream broke: {e}"),
                )
            })?;
            let Some(line) = line else {
                return Err(failure(
                    FailureKind::BadOutput,
                    "Ollama stream ended without a final chunk",
                ));
            };
            if line.trim().is_empty() {
                continue;
            }
            match parse_chunk(&line) {
                Chunk::Token => clock.token(),
                Chunk::Empty => {}
                Chunk::Error(text) => return Err(classify_error(200, &text)),
                Chunk::Final(fin) => {
                    return clock.finish(
                        fin.prompt_eval_count,
                        fin.eval_count,
                        ServerTimings {
                            prompt_ms: fin.prompt_eval_duration.map(ns_to_ms),
                            predicted_ms: fin.eval_duration.map(ns_to_ms),
                            predicted_per_second: match (fin.eval_count, fin.eval_duration) {
                                (Some(n), Some(ns)) if ns > 0 => {
                                    Some(f64::from(n) / (ns as f64 / 1e9))
                                }
                                _ => None,
                            },
                        },
                    );
                }
                Chunk::Invalid(detail) => {
                    return Err(failure(
                        FailureKind::BadOutput,
                        format!("invalid Ollama chunk: {detail}"),
                    ))
                }
            }
        }
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// `llama3` and `llama3:latest` name the same model.
fn with_tag(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// The `error` field of an Ollama error body, else the body itself (shortened).
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// An Ollama error body or mid-stream error line, classified.
pub(crate) fn classify_error(status: u16, body: &str) -> GenerationError {
    let text = error_text(body);
    let kind = if looks_like_oom(&text) {
        FailureKind::OutOfMemory
    } else {
        FailureKind::ServerError
    };
    let prefix = if status == 200 {
        "Ollama failed mid-stream".to_owned()
    } else {
        format!("Ollama answered {status}")
    };
    failure(kind, format!("{prefix}: {text}"))
}

#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct FinalChunk {
    pub prompt_eval_count: Option<u32>,
    pub prompt_eval_duration: Option<u64>,
    pub eval_count: Option<u32>,
    pub eval_duration: Option<u64>,
    pub load_duration: Option<u64>,
    pub done_reason: Option<String>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Chunk {
    /// A chunk with generated text.
    Token,
    /// A chunk with no text (thinking models, keep-alives).
    Empty,
    Final(FinalChunk),
    Error(String),
    Invalid(String),
}

pub(crate) fn parse_chunk(line: &str) -> Chunk {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Chunk::Invalid(format!(
                "{e}: {}",
                line.chars().take(200).collect::<String>()
            ))
        }
    };
    if value.get("error").is_some() {
        return Chunk::Error(line.to_owned());
    }
    if value.get("done").and_then(Value::as_bool) == Some(true) {
        return match serde_json::from_value(value) {
            Ok(fin) => Chunk::Final(fin),
            Err(e) => Chunk::Invalid(e.to_string()),
        };
    }
    match value.get("response").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => Chunk::Token,
        _ => Chunk::Empty,
    }
}

/// Model facts from an `/api/show` body: `model_info` keys are GGUF metadata keys.
pub(crate) fn metadata_from_show(model: &str, show: &Value) -> Result<ModelMetadata, String> {
    let info = show
        .get("model_info")
        .and_then(Value::as_object)
        .ok_or("no model_info in the /api/show answer")?;
    let arch = info
        .get("general.architecture")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let prefix = arch.clone().unwrap_or_else(|| "llama".to_owned());
    let num = |key: &str| -> Option<u64> {
        match info.get(&format!("{prefix}.{key}"))? {
            Value::Array(items) => items.iter().filter_map(Value::as_u64).max(),
            v => v.as_u64(),
        }
    };
    let num32 = |key: &str| num(key).and_then(|v| u32::try_from(v).ok());
    let params = info.get("general.parameter_count").and_then(Value::as_u64);
    let embedding = num32("embedding_length");
    let heads = num32("attention.head_count");
    let per_head = match (embedding, heads) {
        (Some(e), Some(h)) if h > 0 => Some(e / h),
        _ => None,
    };
    let size_class = params.map_or(SizeClass::Small, SizeClass::from_params);
    let keys = ShowKeys {
        info,
        arch: &prefix,
    };
    let (layers, experts) = layout(&prefix, &keys);
    Ok(ModelMetadata {
        name: model.to_owned(),
        architecture: arch,
        parameter_count: params,
        size_class,
        trained_context: num32("context_length"),
        block_count: num32("block_count"),
        head_count: heads,
        head_count_kv: num32("attention.head_count_kv").or(heads),
        embedding_length: embedding,
        key_length: num32("attention.key_length").or(per_head),
        value_length: num32("attention.value_length").or(per_head),
        layers,
        experts,
        weights_bytes: None,
        digest: show
            .get("digest")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The architecture's keys in `/api/show`'s `model_info`: the GGUF header's, as JSON.
struct ShowKeys<'a> {
    info: &'a serde_json::Map<String, Value>,
    arch: &'a str,
}

impl Header for ShowKeys<'_> {
    fn value(&self, suffix: &str) -> Option<HeaderValue> {
        match self.info.get(&format!("{}.{suffix}", self.arch))? {
            Value::Array(items) if items.iter().all(Value::is_boolean) => Some(HeaderValue::Flags(
                items.iter().map(|i| i.as_bool() == Some(true)).collect(),
            )),
            Value::Array(items) => Some(HeaderValue::Numbers(
                items.iter().filter_map(Value::as_u64).collect(),
            )),
            v => v.as_u64().map(HeaderValue::Number),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ollama");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}"))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    #[test]
    fn stream_chunks_then_final_statistics() {
        let chunks: Vec<Chunk> = fixture("generate_stream.ndjson")
            .lines()
            .map(parse_chunk)
            .collect();
        assert_eq!(chunks.iter().filter(|c| **c == Chunk::Token).count(), 4);
        let Some(Chunk::Final(fin)) = chunks.last() else {
            panic!("no final chunk: {chunks:?}")
        };
        assert_eq!(fin.prompt_eval_count, Some(3686));
        assert_eq!(fin.eval_count, Some(4));
        assert_eq!(fin.prompt_eval_duration, Some(325_441_000));
        assert_eq!(fin.eval_duration, Some(49_768_000));
        assert_eq!(fin.load_duration, Some(812_345_678));
        assert_eq!(fin.done_reason.as_deref(), Some("length"));
    }

    #[test]
    fn midstream_error_line_is_out_of_memory() {
        let text = fixture("generate_midstream_error.ndjson");
        let mut lines = text.lines();
        assert_eq!(lines.next().map(parse_chunk), Some(Chunk::Token));
        let Some(Chunk::Error(err)) = lines.next().map(parse_chunk) else {
            panic!("second line is not an error")
        };
        let f = classify_error(200, &err);
        assert_eq!(f.kind, FailureKind::OutOfMemory);
        assert!(f.message.contains("mid-stream"), "{}", f.message);
    }

    #[test]
    fn http_500_bodies_are_out_of_memory() {
        for name in ["generate_oom_500.json", "generate_system_memory_500.json"] {
            let f = classify_error(500, &fixture(name));
            assert_eq!(f.kind, FailureKind::OutOfMemory, "{name}: {}", f.message);
        }
        let f = classify_error(404, r#"{"error":"model 'nope' not found"}"#);
        assert_eq!(f.kind, FailureKind::ServerError);
        assert!(f.message.contains("not found"));
    }

    #[test]
    fn show_gives_model_facts() {
        let show: Value = serde_json::from_str(&fixture("show.json")).expect("fixture is JSON");
        let facts = metadata_from_show("llama3.2:1b", &show).expect("facts");
        assert_eq!(facts.architecture.as_deref(), Some("llama"));
        assert_eq!(facts.parameter_count, Some(1_235_814_432));
        assert_eq!(facts.size_class, SizeClass::Small);
        assert_eq!(facts.trained_context, Some(131_072));
        assert_eq!(facts.block_count, Some(16));
        assert_eq!(facts.head_count_kv, Some(8));
        assert_eq!(facts.key_length, Some(64));
        // 16 layers × 8 KV heads × (64 + 64) × 2 bytes = 32 KiB per token in f16.
        let kv = facts.kv_bytes_per_token(
            crate::record::KvCacheType::F16,
            crate::record::KvCacheType::F16,
        );
        assert_eq!(kv, Some(32_768));
    }

    #[test]
    fn ps_gives_memory_of_the_loaded_model() {
        #[derive(Deserialize)]
        struct Ps {
            models: Vec<LoadedModel>,
        }
        let ps: Ps = serde_json::from_str(&fixture("ps.json")).expect("fixture is JSON");
        assert_eq!(ps.models[0].size_vram, 2_098_164_736);
        assert_eq!(ps.models[0].context_length, Some(8192));
        assert_eq!(with_tag(&ps.models[0].name), with_tag("llama3.2:1b"));
    }

    #[test]
    fn ollama_host_values_become_urls() {
        assert_eq!(normalize_base_url("0.0.0.0"), "http://127.0.0.1:11434");
        assert_eq!(normalize_base_url("gpu-box:8080"), "http://gpu-box:8080");
        assert_eq!(
            normalize_base_url("https://ollama.example/"),
            "https://ollama.example"
        );
        assert_eq!(normalize_base_url(DEFAULT_OLLAMA_URL), DEFAULT_OLLAMA_URL);
    }
}
