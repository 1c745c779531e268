//! What quantizing the KV cache costs in quality: the model's next-token distributions
//! with a quantized cache against the f16 cache's at the same positions of the same
//! natural text, teacher-forced (every position sees the text's own tokens before it).
//!
//! The text (`text.txt`) is in the public domain: the Declaration of Independence
//! (1776), Lincoln's Gettysburg Address (1863) and his Second Inaugural Address (1865).
//! 2,531 tokens for Gemma 3 with its BOS (so a probe's context is at most 4,934 tokens:
//! 64 positions from half of it); the server tokenizes it. `measure` runs the servers.

mod divergence;
mod measure;

pub use divergence::{compare, kl_divergence, top1_agrees, Distribution};
pub use measure::{
    next_token_distributions, reference_of, QualityError, QualityMeter, QualityProbe,
    DEFAULT_MAX_KLD, DEFAULT_POSITIONS, DEFAULT_REQUEST_TIMEOUT, MIN_TOP_K,
};

/// The natural text positions are measured in.
pub const TEXT: &str = include_str!("text.txt");
