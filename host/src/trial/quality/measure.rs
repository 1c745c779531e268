//! Measuring it on a real server: one llama-server per variant at the probe's context,
//! the text teacher-forced one token at a time from half the context on, the next-token
//! distribution at each position; the f16 reference measured once and held against each
//! candidate.
//!
//! Each request's prompt is the text's tokens up to the position, sent as token ids (BOS
//! once, from the server's own tokenizer: llama-server adds nothing to a prompt of ids),
//! with `cache_prompt`: the slot keeps its KV cache, so after the first request (the
//! prefill of half the context) each one evaluates its one new token against the cache
//! under test. `--swa-full` keeps the whole prefix in the sliding-window layers too
//! (Gemma 3 keeps a 512-token window in five layers of six): without it the server could
//! not reuse a prefix longer than the window and would prefill every request afresh.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use ozone_sdk::Quality;
use tokio_util::sync::CancellationToken;

use super::{compare, Distribution, TEXT};
use crate::backend::llama_server::{LlamaServerSpec, ManagedServer, StartFailure};
use crate::backend::BackendError;
use crate::record::{KvCacheType, TrialConfig, Variant};

/// The largest mean KL divergence from the f16 cache (nats) a preset's KV cache may cost
/// by default: q8_0 keys pass with either value cache, q4_0 keys do not.
///
/// Measured on Gemma 3 270M Q4_K_M (`.ci/real-model`) on the pinned llama-server (CPU,
/// two cores), `-fa on`, 64 positions from half the context of [`TEXT`], the top 20
/// listed (`cargo bench -p ozone --bench kv_quality`): mean ± sample stddev, top-1
/// agreement, wall time of the measurement (server start, prefill, 64 steps).
///
/// | K / V | 4096 tokens | top-1 | wall | 2048 tokens | top-1 |
/// |---|---|---|---|---|---|
/// | f16 / f16, again | 0 | 100 % | 7.3 s | 0 | 100 % |
/// | f16 / f16, `-fa off` | 0.0035 ± 0.0025 | 95.3 % | 9.0 s | 0.0032 ± 0.0034 | 90.6 % |
/// | q8_0 / q8_0 | 0.0046 ± 0.0042 | 93.8 % | 9.3 s | 0.0035 ± 0.0030 | 95.3 % |
/// | q8_0 / q4_0 | 0.0091 ± 0.0087 | 85.9 % | 14.6 s | 0.0057 ± 0.0052 | 93.8 % |
/// | q4_0 / q4_0 | 0.0495 ± 0.0466 | 73.4 % | 13.2 s | 0.0361 ± 0.0341 | 85.9 % |
///
/// A q8_0 cache costs about what a change of attention kernel does (flash attention off,
/// f16 cache); q8_0 keys with q4_0 values twice that; q4_0 keys and values ten times.
/// The gate sits in the gap, near its geometric middle (√(0.0091 × 0.0495) ≈ 0.021): over
/// twice the worst q8_0-key figure and 2.5 times under q4_0's, both many standard errors
/// of a 64-position mean away (stddev / 8: 0.001 and 0.006), so neither side flips on the
/// noise of the text. Top-1 agreement is no gate: on this small model's flat
/// distributions it moves by as much with a change of kernel as with q8_0.
pub const DEFAULT_MAX_KLD: f64 = 0.02;

/// Positions measured by default.
pub const DEFAULT_POSITIONS: u32 = 64;

/// The fewest tokens listed per position: the KL divergence accounts for the unlisted
/// mass as one bucket, which is only fair when the list holds nearly all of it.
pub const MIN_TOP_K: u32 = 20;

/// How long one request may take by default: the first prefills half the context, which
/// a large model on CPU does at a few tokens a second.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Keeps the whole prefix in sliding-window layers, so a cached prefix can be reused.
const SWA_FULL: &str = "--swa-full";

/// Batch and micro-batch of the probe's server (the prefill only).
const BATCH: u32 = 512;

/// Where and how much to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityProbe {
    /// The server's context (`-c`, one slot). The positions start at half of it.
    pub ctx: u32,
    /// Consecutive positions measured (at least 1).
    pub positions: u32,
    /// Tokens listed per position (`n_probs`; at least [`MIN_TOP_K`]).
    pub top_k: u32,
    /// The deadline of each request.
    pub request_timeout: Duration,
}

impl QualityProbe {
    /// At `ctx` tokens, [`DEFAULT_POSITIONS`] positions, the top [`MIN_TOP_K`].
    pub fn new(ctx: u32) -> Self {
        Self {
            ctx,
            positions: DEFAULT_POSITIONS,
            top_k: MIN_TOP_K,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The prompt lengths measured, given the text's length in tokens (BOS included):
    /// `positions` consecutive ones from half the context (rounded up). The longest
    /// prompt leaves the context room for the token predicted, and the text a token after
    /// it (every position predicts a token of the text).
    pub fn prompt_lengths(&self, text_tokens: usize) -> Result<Range<usize>, QualityError> {
        let range = self.context_lengths()?;
        if range.end > text_tokens {
            return Err(QualityError::TextTooShort {
                tokens: text_tokens,
                ctx: self.ctx,
                positions: self.positions(),
                prefix: range.start,
                max_ctx: 2 * text_tokens.saturating_sub(self.positions() as usize),
            });
        }
        Ok(range)
    }

    /// The prompt lengths as far as the context alone decides them.
    fn context_lengths(&self) -> Result<Range<usize>, QualityError> {
        let start = self.ctx.div_ceil(2) as usize;
        let end = start + self.positions() as usize;
        if end > self.ctx as usize {
            return Err(QualityError::ContextTooSmall {
                ctx: self.ctx,
                positions: self.positions(),
            });
        }
        Ok(start..end)
    }

    fn positions(&self) -> u32 {
        self.positions.max(1)
    }

    fn top_k(&self) -> u32 {
        self.top_k.max(MIN_TOP_K)
    }
}

/// What stopped a measurement, with the variant it was measuring.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("quality ({variant}): llama-server did not start: {}", .failure.failure.message)]
    ServerStart {
        variant: String,
        /// The failure, the server's log tail and the command, to reproduce.
        failure: Box<StartFailure>,
    },
    #[error("quality ({variant}): {what} failed: {source}")]
    Request {
        variant: String,
        what: String,
        #[source]
        source: BackendError,
    },
    #[error(
        "quality: the text is {tokens} tokens, too short for {positions} positions after \
         {prefix} (half the context of {ctx}); measure at a context of at most {max_ctx}"
    )]
    TextTooShort {
        tokens: usize,
        ctx: u32,
        positions: u32,
        prefix: usize,
        max_ctx: usize,
    },
    #[error(
        "quality: a context of {ctx} tokens cannot hold {positions} positions after half of it"
    )]
    ContextTooSmall { ctx: u32, positions: u32 },
    #[error(
        "quality ({variant}): llama-server listed no next-token probabilities after \
         {prompt_tokens} tokens"
    )]
    MissingProbabilities {
        variant: String,
        prompt_tokens: usize,
    },
    #[error(
        "quality ({variant}): llama-server evaluated {evaluated} tokens of a prompt of \
         {sent}: it did not use the prompt as given"
    )]
    PromptChanged {
        variant: String,
        sent: usize,
        evaluated: u64,
    },
    #[error("quality: interrupted")]
    Interrupted,
}

/// The next-token distributions of the text at the probe's positions, with `variant`'s
/// cache: one llama-server started at `-c probe.ctx -np 1 --swa-full`, stopped before
/// this returns (killed at once when `cancel` fires).
pub async fn next_token_distributions(
    spec: &LlamaServerSpec,
    variant: &Variant,
    probe: &QualityProbe,
    health_timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Vec<Distribution>, QualityError> {
    let label = describe(variant);
    let planned = probe.context_lengths()?;
    let role = if *variant == reference_of(variant) {
        "f16 reference"
    } else {
        "candidate"
    };
    tracing::info!(
        "quality: {role} ({label}) at {} tokens: {} positions from {}",
        probe.ctx,
        planned.len(),
        planned.start
    );
    let started = Instant::now();
    let mut server = ManagedServer::start(
        &with_swa_full(spec),
        &probe_config(variant, probe),
        health_timeout,
        cancel,
        &|_| {},
    )
    .await
    .map_err(|f| {
        if cancel.is_cancelled() {
            QualityError::Interrupted
        } else {
            QualityError::ServerStart {
                variant: label.clone(),
                failure: Box::new(f),
            }
        }
    })?;
    let result = tokio::select! {
        r = teacher_force(&server, probe, &label) => r,
        () = cancel.cancelled() => Err(QualityError::Interrupted),
    };
    if cancel.is_cancelled() {
        server.kill().await;
    } else {
        server.stop().await;
    }
    if result.is_ok() {
        tracing::info!(
            "quality: {label} measured in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    result
}

/// Tokenizes the text on `server`, then asks for the next-token list at each position.
async fn teacher_force(
    server: &ManagedServer,
    probe: &QualityProbe,
    label: &str,
) -> Result<Vec<Distribution>, QualityError> {
    let client = server.client();
    let request = |what: String| {
        move |source| QualityError::Request {
            variant: label.to_owned(),
            what,
            source,
        }
    };
    let tokens = client
        .tokenize_with_bos(TEXT)
        .await
        .map_err(request("tokenizing the text".into()))?;
    let lengths = probe.prompt_lengths(tokens.len())?;
    let mut out = Vec::with_capacity(lengths.len());
    for len in lengths {
        let body = client
            .next_token_probs(&tokens[..len], probe.top_k(), probe.request_timeout)
            .await
            .map_err(request(format!("the completion after {len} tokens")))?;
        if let Some(evaluated) = body
            .get("tokens_evaluated")
            .and_then(serde_json::Value::as_u64)
        {
            if evaluated != len as u64 {
                return Err(QualityError::PromptChanged {
                    variant: label.to_owned(),
                    sent: len,
                    evaluated,
                });
            }
        }
        let distribution = Distribution::from_completion(&body).ok_or_else(|| {
            QualityError::MissingProbabilities {
                variant: label.to_owned(),
                prompt_tokens: len,
            }
        })?;
        out.push(distribution);
    }
    Ok(out)
}

/// The f16 cache `variant` is held against: everything else the same (flash attention,
/// threads, offload), so what differs is the cache alone.
pub fn reference_of(variant: &Variant) -> Variant {
    Variant {
        cache_type_k: KvCacheType::F16,
        cache_type_v: KvCacheType::F16,
        ..*variant
    }
}

/// The quality of variants against their f16 reference, each reference measured once
/// and kept.
#[derive(Debug)]
pub struct QualityMeter {
    spec: LlamaServerSpec,
    probe: QualityProbe,
    health_timeout: Duration,
    cancel: CancellationToken,
    /// By reference variant ([`reference_of`]).
    references: HashMap<Variant, Vec<Distribution>>,
}

impl QualityMeter {
    /// A meter for `spec`'s model; nothing is measured yet. `cancel` interrupts every
    /// measurement it makes.
    pub fn new(
        spec: LlamaServerSpec,
        probe: QualityProbe,
        health_timeout: Duration,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            spec,
            probe,
            health_timeout,
            cancel,
            references: HashMap::new(),
        }
    }

    pub fn probe(&self) -> &QualityProbe {
        &self.probe
    }

    /// `variant`'s next-token distributions against its f16 reference's (measured first
    /// when this meter has not yet). An f16 variant is measured too: a second run of the
    /// reference, 0 on a deterministic server.
    pub async fn quality_of(&mut self, variant: &Variant) -> Result<Quality, QualityError> {
        let key = reference_of(variant);
        if !self.references.contains_key(&key) {
            let reference = self.distributions(&key).await?;
            self.references.insert(key, reference);
        }
        let candidate = self.distributions(variant).await?;
        let quality = compare(&self.references[&key], &candidate);
        tracing::info!(
            "quality: {}: KLD {:.4} ± {:.4} nats, top-1 agreement {:.1} % over {} positions",
            describe(variant),
            quality.kld_mean,
            quality.kld_stddev,
            quality.top1_agreement * 100.0,
            quality.positions
        );
        Ok(quality)
    }

    async fn distributions(&self, variant: &Variant) -> Result<Vec<Distribution>, QualityError> {
        next_token_distributions(
            &self.spec,
            variant,
            &self.probe,
            self.health_timeout,
            &self.cancel,
        )
        .await
    }
}

/// The server configuration of a probe: its context in one slot.
fn probe_config(variant: &Variant, probe: &QualityProbe) -> TrialConfig {
    TrialConfig {
        ctx: probe.ctx,
        batch: BATCH,
        ubatch: BATCH,
        concurrency: 1,
        variant: *variant,
    }
}

/// `spec` with `--swa-full` among its extra arguments.
fn with_swa_full(spec: &LlamaServerSpec) -> LlamaServerSpec {
    let mut spec = spec.clone();
    if !spec.extra_args.iter().any(|a| a == SWA_FULL) {
        spec.extra_args.push(SWA_FULL.into());
    }
    spec
}

/// `K q8_0 / V q4_0, -fa on` (and `-t`, `-ngl`, `--n-cpu-moe` where set).
fn describe(variant: &Variant) -> String {
    let mut s = format!(
        "K {} / V {}, -fa {}",
        variant.cache_type_k, variant.cache_type_v, variant.flash_attn
    );
    if let Some(t) = variant.threads {
        s.push_str(&format!(", -t {t}"));
    }
    if let Some(n) = variant.gpu_layers {
        s.push_str(&format!(", -ngl {n}"));
    }
    if variant.cpu_moe_layers > 0 {
        s.push_str(&format!(", --n-cpu-moe {}", variant.cpu_moe_layers));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FlashAttn;

    #[test]
    fn positions_start_at_half_the_context_and_fit_it_and_the_text() {
        let probe = QualityProbe::new(4096);
        assert_eq!(probe.prompt_lengths(2531).expect("fits"), 2048..2112);
        // An odd context: the prefix is at least half of it.
        let odd = QualityProbe::new(4097);
        assert_eq!(odd.prompt_lengths(2531).expect("fits"), 2049..2113);
        // The last position predicts the text's last token.
        let exact = QualityProbe::new(2 * (2531 - 64));
        assert_eq!(exact.prompt_lengths(2531).expect("fits").end, 2531);
        match QualityProbe::new(8192).prompt_lengths(2531) {
            Err(QualityError::TextTooShort {
                prefix, max_ctx, ..
            }) => {
                assert_eq!((prefix, max_ctx), (4096, 2 * (2531 - 64)));
                assert!(QualityProbe::new(max_ctx as u32)
                    .prompt_lengths(2531)
                    .is_ok());
            }
            other => panic!("{other:?}"),
        }
        // The context itself holds the positions after its half, with room to predict.
        let small = QualityProbe::new(128);
        assert_eq!(small.prompt_lengths(2531).expect("fits"), 64..128);
        assert!(matches!(
            QualityProbe::new(126).prompt_lengths(2531),
            Err(QualityError::ContextTooSmall {
                ctx: 126,
                positions: 64
            })
        ));
        // At least one position, at least the top 20.
        let degenerate = QualityProbe {
            positions: 0,
            top_k: 3,
            ..QualityProbe::new(16)
        };
        assert_eq!(degenerate.prompt_lengths(100).expect("fits"), 8..9);
        assert_eq!(degenerate.top_k(), MIN_TOP_K);
    }

    #[test]
    fn the_reference_differs_from_the_candidate_in_its_cache_alone() {
        let candidate = Variant {
            cache_type_k: KvCacheType::Q8_0,
            cache_type_v: KvCacheType::Q4_0,
            flash_attn: FlashAttn::On,
            threads: Some(6),
            gpu_layers: Some(12),
            cpu_moe_layers: 3,
        };
        let reference = reference_of(&candidate);
        assert_eq!(
            reference,
            Variant {
                cache_type_k: KvCacheType::F16,
                cache_type_v: KvCacheType::F16,
                ..candidate
            }
        );
        assert_eq!(reference_of(&reference), reference);
        assert_eq!(
            describe(&candidate),
            "K q8_0 / V q4_0, -fa on, -t 6, -ngl 12, --n-cpu-moe 3"
        );
    }

    #[test]
    fn the_probe_s_server_keeps_the_whole_prefix_in_one_slot() {
        let spec = LlamaServerSpec {
            binary: "llama-server".into(),
            model: "m.gguf".into(),
            extra_args: vec!["--no-warmup".into()],
        };
        let variant = Variant {
            flash_attn: FlashAttn::On,
            ..Variant::default()
        };
        let spec = with_swa_full(&with_swa_full(&spec));
        let line = crate::backend::llama_server::command_line(
            &spec,
            &probe_config(&variant, &QualityProbe::new(4096)),
        )
        .join(" ");
        assert_eq!(
            line,
            "llama-server -m m.gguf -c 4096 -b 512 -ub 512 -np 1 -kvu -ctk f16 -ctv f16 -ngl 99 \
             -fa on -fit off --cache-ram 0 --metrics --no-warmup --swa-full"
        );
    }
}
