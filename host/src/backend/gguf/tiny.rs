//! A tiny llama-architecture model with random weights, for tests and quick starts.
//!
//! It loads in a stock llama-server, its KV cache and compute buffers grow with `-c`
//! like a real model's, and prefill is cheap enough to fill 16k tokens in seconds on
//! two cores. Its vocabulary is printable ASCII, the newline and the SentencePiece space
//! marker:
//! no byte tokens, so whatever it generates is valid UTF-8 (random weights emitting a
//! lone byte token make llama-server answer 500).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::format::{GgmlType, GgufValue};
use super::writer::GgufWriter;

/// Shape of the generated model. The defaults make a 380 KB file; measured on two
/// cores with the wheel's llama-server, peak RSS after a 90 % prefill is 32 / 36 / 42 /
/// 56 / 82 MiB at `-c` 2k / 4k / 8k / 16k / 32k (flash attention auto), or 51 / 81 / 133 /
/// 237 / 453 MiB with `-fa off` (compute buffers grow with ctx × ubatch); a 16k prefill
/// takes about 2 s (4 s without flash attention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyModelSpec {
    pub embedding_length: u32,
    pub block_count: u32,
    pub head_count: u32,
    pub head_count_kv: u32,
    pub feed_forward_length: u32,
    /// `llama.context_length`: llama-server clamps `-c` to it.
    pub trained_context: u32,
    /// Seed of the weights; the same spec and seed give the same file.
    pub seed: u64,
}

impl Default for TinyModelSpec {
    fn default() -> Self {
        Self {
            embedding_length: 64,
            block_count: 2,
            head_count: 4,
            head_count_kv: 4,
            feed_forward_length: 128,
            trained_context: 32768,
            seed: 0x006f_7a6f_6e65,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TinyModelError {
    #[error("invalid tiny model shape: {0}")]
    InvalidSpec(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The vocabulary: `<unk>`, `<s>`, `</s>`, the space marker, `!`..`~`, then the newline
/// (the quality text has paragraphs: a character the vocabulary lacks has no byte token
/// to fall back on, and llama-server's tokenizer answers 500).
fn vocabulary() -> Vec<(String, i32)> {
    const NORMAL: i32 = 1;
    const UNKNOWN: i32 = 2;
    const CONTROL: i32 = 3;
    let mut v = vec![
        ("<unk>".to_owned(), UNKNOWN),
        ("<s>".to_owned(), CONTROL),
        ("</s>".to_owned(), CONTROL),
        // SentencePiece writes spaces as U+2581; llama-server prints it back as ' '.
        ("\u{2581}".to_owned(), NORMAL),
    ];
    v.extend((b'!'..=b'~').map(|c| (char::from(c).to_string(), NORMAL)));
    v.push(("\n".to_owned(), NORMAL));
    v
}

/// Writes the tiny model to `path`.
pub fn write_tiny_model(path: &Path, spec: &TinyModelSpec) -> Result<(), TinyModelError> {
    let s = spec;
    if s.head_count == 0 || s.head_count_kv == 0 || s.block_count == 0 {
        return Err(TinyModelError::InvalidSpec(
            "head counts and block count must be at least 1".into(),
        ));
    }
    if !s.embedding_length.is_multiple_of(s.head_count)
        || !s.head_count.is_multiple_of(s.head_count_kv)
    {
        return Err(TinyModelError::InvalidSpec(format!(
            "embedding length {} must divide by head count {}, which must divide by KV head count {}",
            s.embedding_length, s.head_count, s.head_count_kv
        )));
    }
    if s.trained_context < 256 || s.feed_forward_length == 0 {
        return Err(TinyModelError::InvalidSpec(
            "trained context must be at least 256 and the feed-forward length at least 1".into(),
        ));
    }

    let vocab = vocabulary();
    let n_vocab = vocab.len() as u64;
    let n_embd = u64::from(s.embedding_length);
    let n_ff = u64::from(s.feed_forward_length);
    let head_dim = n_embd / u64::from(s.head_count);
    let n_embd_kv = head_dim * u64::from(s.head_count_kv);

    let mut w = GgufWriter::new();
    let u32v = GgufValue::U32;
    w.meta("general.architecture", GgufValue::String("llama".into()))
        .meta("general.name", GgufValue::String("ozone-tiny".into()))
        .meta("llama.context_length", u32v(s.trained_context))
        .meta("llama.embedding_length", u32v(s.embedding_length))
        .meta("llama.block_count", u32v(s.block_count))
        .meta("llama.feed_forward_length", u32v(s.feed_forward_length))
        .meta("llama.attention.head_count", u32v(s.head_count))
        .meta("llama.attention.head_count_kv", u32v(s.head_count_kv))
        .meta("llama.rope.dimension_count", u32v(head_dim as u32))
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        )
        .meta("llama.vocab_size", u32v(n_vocab as u32))
        .meta("tokenizer.ggml.model", GgufValue::String("llama".into()))
        .meta(
            "tokenizer.ggml.tokens",
            GgufValue::Array(
                vocab
                    .iter()
                    .map(|(t, _)| GgufValue::String(t.clone()))
                    .collect(),
            ),
        )
        .meta(
            "tokenizer.ggml.scores",
            GgufValue::Array(vocab.iter().map(|_| GgufValue::F32(0.0)).collect()),
        )
        .meta(
            "tokenizer.ggml.token_type",
            GgufValue::Array(vocab.iter().map(|(_, k)| GgufValue::I32(*k)).collect()),
        )
        .meta("tokenizer.ggml.unknown_token_id", u32v(0))
        .meta("tokenizer.ggml.bos_token_id", u32v(1))
        .meta("tokenizer.ggml.eos_token_id", u32v(2))
        .meta("tokenizer.ggml.add_bos_token", GgufValue::Bool(true))
        .meta("tokenizer.ggml.add_space_prefix", GgufValue::Bool(false));

    let mut rng = XorShift(s.seed | 1);
    let mut random = |dims: &[u64]| -> Vec<f32> {
        let n: u64 = dims.iter().product();
        // Small uniform weights keep activations finite through the layers.
        (0..n).map(|_| rng.next_f32() * 0.1 - 0.05).collect()
    };
    let ones = |n: u64| vec![1.0f32; n as usize];

    let f32t = GgmlType::F32;
    w.tensor(
        "token_embd.weight",
        &[n_embd, n_vocab],
        f32t,
        &random(&[n_embd, n_vocab]),
    );
    for i in 0..s.block_count {
        let b = |name: &str| format!("blk.{i}.{name}.weight");
        w.tensor(b("attn_norm"), &[n_embd], f32t, &ones(n_embd));
        for (name, out) in [
            ("attn_q", n_embd),
            ("attn_k", n_embd_kv),
            ("attn_v", n_embd_kv),
        ] {
            w.tensor(b(name), &[n_embd, out], f32t, &random(&[n_embd, out]));
        }
        w.tensor(
            b("attn_output"),
            &[n_embd, n_embd],
            f32t,
            &random(&[n_embd, n_embd]),
        );
        w.tensor(b("ffn_norm"), &[n_embd], f32t, &ones(n_embd));
        w.tensor(
            b("ffn_gate"),
            &[n_embd, n_ff],
            f32t,
            &random(&[n_embd, n_ff]),
        );
        w.tensor(b("ffn_up"), &[n_embd, n_ff], f32t, &random(&[n_embd, n_ff]));
        w.tensor(
            b("ffn_down"),
            &[n_ff, n_embd],
            f32t,
            &random(&[n_ff, n_embd]),
        );
    }
    w.tensor("output_norm.weight", &[n_embd], f32t, &ones(n_embd));
    w.tensor(
        "output.weight",
        &[n_embd, n_vocab],
        f32t,
        &random(&[n_embd, n_vocab]),
    );

    let io = |source| TinyModelError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    w.write_to(&mut out).map_err(io)?;
    out.flush().map_err(io)
}

/// xorshift64*: deterministic weights without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }
}
