//! Inference servers: llama-server (managed), Ollama, OpenAI-compatible; model facts.

mod error;
mod generation;
pub mod gguf;
mod http;
pub mod layout;
pub mod llama_server;
mod metadata;
pub mod ollama;
mod open;
pub mod openai;
mod prompt;
mod requester;
mod spec;
mod stream;

pub use error::BackendError;
pub use generation::{Generation, GenerationError, GenerationRequest, Prompt, ServerTimings};
pub use http::{DEFAULT_REQUEST_TIMEOUT, MAX_BODY_BYTES};
pub use metadata::{ModelMetadata, SizeClass};
pub use open::{
    interrupted, timeout_failure, OpenFailure, OpenOptions, OpenServer, Prompts, ServerOpener,
};
pub use requester::Requester;
pub use spec::{BackendKind, BackendSpec};
pub use stream::MAX_LINE_BYTES;
