//! Inference servers: llama-server (managed), Ollama, OpenAI-compatible; model facts.

mod error;
mod facts;
mod generation;
pub mod gguf;
mod http;
pub mod llama_server;
pub mod ollama;
pub mod openai;
mod spec;
mod stream;

pub use error::BackendError;
pub use facts::{ModelFacts, SizeClass};
pub use generation::{Generation, GenerationError, GenerationRequest, Prompt, ServerTimings};
pub use http::{DEFAULT_REQUEST_TIMEOUT, MAX_BODY_BYTES};
pub use spec::BackendSpec;
pub use stream::MAX_LINE_BYTES;
