//! One generation request, sent to whichever backend is being measured.

use super::llama_server::LlamaClient;
use super::ollama::{OllamaClient, OllamaOptions};
use super::openai::OpenAiClient;
use super::{Generation, GenerationError, GenerationRequest, Prompt};

/// A cloneable handle that sends one generation request (each concurrent stream of a
/// trial runs on its own task with its own clone).
#[derive(Debug, Clone)]
pub enum Requester {
    Llama(LlamaClient),
    Ollama(OllamaClient, OllamaOptions),
    OpenAi(OpenAiClient),
}

/// Ollama keeps the model loaded this long between samples.
const OLLAMA_KEEP_ALIVE: &str = "5m";

impl Requester {
    pub async fn generate(
        &self,
        request: &GenerationRequest,
    ) -> Result<Generation, GenerationError> {
        match (self, &request.prompt) {
            (Requester::Llama(client), _) => client.complete(request).await,
            (Requester::Ollama(client, options), prompt) => {
                let options = OllamaOptions {
                    num_predict: request.n_predict,
                    ..options.clone()
                };
                client
                    .generate(text_of(prompt), &options, OLLAMA_KEEP_ALIVE)
                    .await
            }
            (Requester::OpenAi(client), prompt) => {
                client.complete(text_of(prompt), request.n_predict).await
            }
        }
    }
}

fn text_of(prompt: &Prompt) -> &str {
    match prompt {
        Prompt::Text(t) => t,
        // Token prompts are only built for llama-server.
        Prompt::Tokens(_) => "",
    }
}
