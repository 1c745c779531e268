//! Which server a tune measures.

use super::llama_server::LlamaServerSpec;

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
}
