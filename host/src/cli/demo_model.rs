//! `ozone demo-model FILE.gguf`: writes a tiny random llama model to try Ozone on, with
//! nothing to download.

use std::path::PathBuf;

use super::{CliError, Exit, ResultExt};
use crate::backend::gguf::{write_tiny_model, TinyModelSpec};

/// The model has random weights and a printable-ASCII vocabulary: its answers are
/// gibberish, but it loads in a stock llama-server, its memory grows with the context
/// like a real model's, and a tune of it takes minutes on two cores.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the model.
    #[arg(value_name = "FILE.gguf")]
    pub output: PathBuf,
    /// Context the model claims it was trained for (llama-server clamps `-c` to it).
    #[arg(long, value_name = "TOKENS", default_value_t = TinyModelSpec::default().trained_context)]
    pub trained_context: u32,
    /// Transformer layers (KV memory per token grows with them).
    #[arg(long, value_name = "N", default_value_t = TinyModelSpec::default().block_count)]
    pub layers: u32,
    /// Embedding width (KV memory per token grows with it).
    #[arg(long, value_name = "N", default_value_t = TinyModelSpec::default().embedding_length)]
    pub embedding: u32,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let spec = TinyModelSpec {
        trained_context: args.trained_context,
        block_count: args.layers,
        embedding_length: args.embedding,
        feed_forward_length: args.embedding * 2,
        ..TinyModelSpec::default()
    };
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
            .exit(Exit::BadInput)?;
    }
    write_tiny_model(&args.output, &spec).exit(Exit::BadInput)?;
    println!("{}", args.output.display());
    Ok(())
}
