//! The servers Ozone drives, and trials against them: a real llama-server on generated
//! models (`llama_server`), the sampler that watches it (`sampler`), no server
//! outliving Ozone (`lifetime`), the clients against a hostile fake server
//! (`hostile`), a real GPU device, lavapipe: layers split, llama.cpp's memory breakdown
//! and its fit at a context (`lavapipe`), Ollama's documented bodies and, where one runs, a live Ollama
//! (`ollama`, `ollama_live`), the real quantized model (`real_model`) and what quantizing
//! its KV cache costs in quality (`quality`).

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod lavapipe;
mod lifetime;
mod llama_server;
mod ollama;
mod ollama_live;
mod quality;
mod real_model;
mod sampler;
