//! Which server a tune measures, and what it says about the model.

use serde::{Deserialize, Serialize};

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

/// Which kind of server, as the log records it (`"backend": "llama-server"`), so that
/// `--resume` starts the same kind again: a name this build does not know is an error,
/// never another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackendKind {
    #[serde(rename = "llama-server")]
    LlamaServer,
    #[serde(rename = "ollama")]
    Ollama,
    #[serde(rename = "openai")]
    OpenAi,
}

impl BackendKind {
    /// The name in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::LlamaServer => "llama-server",
            BackendKind::Ollama => "ollama",
            BackendKind::OpenAi => "openai",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BackendSpec {
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendSpec::LlamaServer(_) => BackendKind::LlamaServer,
            BackendSpec::Ollama { .. } => BackendKind::Ollama,
            BackendSpec::OpenAi { .. } => BackendKind::OpenAi,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_names_each_kind_and_refuses_one_it_does_not_know() {
        for kind in [
            BackendKind::LlamaServer,
            BackendKind::Ollama,
            BackendKind::OpenAi,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<BackendKind>(&json).unwrap(), kind);
        }
        assert!(serde_json::from_str::<BackendKind>("\"vllm\"").is_err());
    }
}
