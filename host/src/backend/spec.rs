//! Which server a tune measures, and what it says about the model.

use super::llama_server::LlamaServerSpec;
use super::ollama::OllamaClient;
use super::openai::OpenAiClient;
use super::{gguf, BackendError, ModelMetadata};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// Ozone starts llama-server itself for every configuration.
    LlamaServer(LlamaServerSpec),
    /// A running Ollama; the model is reloaded with each configuration's options.
    Ollama { base_url: String, model: String },
    /// A running OpenAI-compatible server: its context is fixed at its start, so only
    /// the prompt length exercises it.
    OpenAi {
        base_url: String,
        model: String,
        api_key: Option<String>,
    },
}

impl BackendSpec {
    /// Short name for logs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendSpec::LlamaServer(_) => "llama-server",
            BackendSpec::Ollama { .. } => "ollama",
            BackendSpec::OpenAi { .. } => "openai",
        }
    }

    /// The model's facts: from the GGUF file with its sha256 (llama-server),
    /// `/api/show` (Ollama), or `/v1/models` (OpenAI-compatible: little more than the
    /// context). An unreachable server or unreadable model is an error here.
    pub async fn model_metadata(&self) -> Result<ModelMetadata, BackendError> {
        match self {
            BackendSpec::LlamaServer(spec) => {
                let path = spec.model.clone();
                let read = move || -> Result<ModelMetadata, gguf::GgufError> {
                    let mut facts = gguf::read_model_metadata(&path)?;
                    facts.digest = Some(gguf::file_digest(&path)?);
                    Ok(facts)
                };
                tokio::task::spawn_blocking(read)
                    .await
                    .map_err(|e| BackendError::Client(format!("GGUF reader task failed: {e}")))?
                    .map_err(BackendError::from)
            }
            BackendSpec::Ollama { base_url, model } => {
                OllamaClient::new(base_url, model).model_metadata().await
            }
            BackendSpec::OpenAi {
                base_url,
                model,
                api_key,
            } => {
                OpenAiClient::new(base_url, model, api_key.clone())
                    .model_metadata()
                    .await
            }
        }
    }
}
