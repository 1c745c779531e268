//! What quantizing the KV cache costs in quality: the model's next-token distributions
//! with a quantized cache against the f16 cache's at the same positions of the same
//! natural text, teacher-forced (every position sees the text's own tokens before it).
//!
//! The text (`text.txt`) is in the public domain: the Declaration of Independence
//! (1776), Lincoln's Gettysburg Address (1863) and his Second Inaugural Address (1865).
//! About 2,800 tokens for Gemma 3; the server tokenizes it.

mod divergence;

pub use divergence::{compare, kl_divergence, top1_agrees, Distribution};

/// The natural text positions are measured in.
pub const TEXT: &str = include_str!("text.txt");
