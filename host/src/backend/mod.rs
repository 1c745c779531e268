//! Inference servers: llama-server (managed), Ollama, OpenAI-compatible; model facts.

mod facts;
pub mod gguf;

pub use facts::{ModelFacts, SizeClass};
