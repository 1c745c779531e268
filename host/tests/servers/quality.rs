//! What a quantized KV cache costs in quality, on the real model (`.ci/real-model`) and
//! the real llama-server: the f16 cache measured twice diverges by nothing, and q4_0
//! moves the next-token distribution further from f16's than q8_0 does. Five servers at
//! 2048 tokens, each a prefill of 1024 and 64 single-token steps: about a minute on two
//! cores.

use std::time::{Duration, Instant};

use ozone::backend::llama_server::LlamaServerSpec;
use ozone::record::{FlashAttn, KvCacheType, Variant};
use ozone::trial::quality::{next_token_distributions, QualityError, QualityMeter, QualityProbe};
use tokio_util::sync::CancellationToken;

use crate::common;

const CTX: u32 = 2048;

fn meter() -> QualityMeter {
    let spec = LlamaServerSpec {
        model: common::real_model(),
        ..common::llama_spec(common::llama_server(), &[])
    };
    QualityMeter::new(
        spec,
        QualityProbe::new(CTX),
        Duration::from_secs(120),
        CancellationToken::new(),
    )
}

fn cache(k: KvCacheType, v: KvCacheType) -> Variant {
    Variant {
        cache_type_k: k,
        cache_type_v: v,
        // A quantized V cache needs flash attention; the reference shares it.
        flash_attn: FlashAttn::On,
        ..Variant::default()
    }
}

#[tokio::test]
async fn the_f16_cache_measured_twice_diverges_by_nothing() {
    let _serial = common::serial().await;
    let mut meter = meter();
    let q = meter
        .quality_of(&cache(KvCacheType::F16, KvCacheType::F16))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(q.positions, 64, "{q:?}");
    assert!(q.kld_mean < 1e-9, "{q:?}");
    assert_eq!(q.top1_agreement, 1.0, "{q:?}");
    common::assert_no_servers_left_for(&common::real_model());
}

#[tokio::test]
async fn q4_0_costs_more_than_q8_0() {
    let _serial = common::serial().await;
    let mut meter = meter();
    let started = Instant::now();
    let q8 = meter
        .quality_of(&cache(KvCacheType::Q8_0, KvCacheType::Q8_0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q4 = meter
        .quality_of(&cache(KvCacheType::Q4_0, KvCacheType::Q4_0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "at {CTX} tokens: q8_0 {q8:?}, q4_0 {q4:?} ({:.0} s, the reference once)",
        started.elapsed().as_secs_f64()
    );
    assert!(q8.kld_mean > 0.0, "{q8:?}");
    assert!(q4.kld_mean > q8.kld_mean, "q4_0 {q4:?} against q8_0 {q8:?}");
    common::assert_no_servers_left_for(&common::real_model());
}

/// A measurement that cannot go on stops its server: the text too short for the context
/// (found once the server tokenized it), and an interruption during the prefill.
#[tokio::test]
async fn a_measurement_that_stops_leaves_no_server() {
    let _serial = common::serial().await;
    let model = common::real_model();
    let spec = LlamaServerSpec {
        model: model.clone(),
        ..common::llama_spec(common::llama_server(), &[])
    };
    let variant = cache(KvCacheType::Q8_0, KvCacheType::Q8_0);
    let never = CancellationToken::new();
    let health = Duration::from_secs(120);
    let err = next_token_distributions(&spec, &variant, &QualityProbe::new(8192), health, &never)
        .await
        .expect_err("8192 tokens is more than twice the text");
    assert!(
        matches!(err, QualityError::TextTooShort { max_ctx: 4934, .. }),
        "{err}"
    );
    common::assert_no_servers_left_for(&model);

    let cancel = CancellationToken::new();
    let fire = cancel.clone();
    let started = Instant::now();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        fire.cancel();
    });
    let err = next_token_distributions(&spec, &variant, &QualityProbe::new(4096), health, &cancel)
        .await
        .expect_err("interrupted");
    timer.await.expect("timer");
    assert!(matches!(err, QualityError::Interrupted), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    common::assert_no_servers_left_for(&model);
}
