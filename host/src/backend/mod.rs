//! Inference servers: llama-server (managed), Ollama, OpenAI-compatible; model facts.

mod facts;

pub use facts::{ModelFacts, SizeClass};
