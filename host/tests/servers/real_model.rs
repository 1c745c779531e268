//! The real quantized model (Gemma 3 270M Q4_K_M, `.ci/real-model`) on the real
//! llama-server `.ci/install-llama-server` checked to run it here: its facts read from
//! its header and held against what llama.cpp allocates, a screen that fills the context
//! in the model's own tokens, and a real tune at small contexts. About 2 minutes on two
//! cores, most of it the tune's prefills (~130 tokens/s).

use std::time::Duration;

use crate::common::{self, cli};

use ozone::backend::gguf::read_model_metadata;
use ozone::backend::layout::LayerKind;
use ozone::backend::llama_server::ManagedServer;
use ozone::backend::BackendSpec;
use ozone::record::{KvCacheType, Phase, Stage, Verdict};
use ozone::trial::TrialRunner;
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1 << 20;

#[test]
fn the_real_model_s_facts_come_from_its_header() {
    let facts = read_model_metadata(&common::real_model()).expect("the real model's header");
    assert_eq!(facts.architecture.as_deref(), Some("gemma3"));
    assert_eq!(facts.trained_context, Some(32_768));
    assert_eq!(facts.block_count, Some(18));
    assert!(
        facts
            .parameter_count
            .is_some_and(|p| (250_000_000..300_000_000).contains(&p)),
        "{:?}",
        facts.parameter_count
    );
    // Five layers of six keep a 512-token window; one KV head of 256 + 256 per layer.
    let kinds: Vec<(LayerKind, u32)> = facts.layers.iter().map(|g| (g.kind, g.count)).collect();
    assert_eq!(
        kinds,
        vec![
            (LayerKind::SlidingWindow { window: 512 }, 15),
            (LayerKind::FullAttention, 3)
        ]
    );
    assert_eq!(
        facts.kv_bytes_per_token(KvCacheType::F16, KvCacheType::F16),
        Some(3 * 1024)
    );
    assert_eq!(facts.experts, None);
}

/// What the model's layers predict for the KV cache is what llama.cpp allocates: its
/// log's `llama_kv_cache: size = …` lines for the full-attention and the sliding-window
/// caches at 8192 tokens, one micro-batch of 512.
#[tokio::test]
async fn the_kv_cache_the_layers_predict_is_what_llama_cpp_allocates() {
    let _serial = common::serial().await;
    let model = common::real_model();
    let facts = read_model_metadata(&model).expect("header");
    let plugin_facts = ozone::plugin::model_facts(
        &facts,
        ozone::plugin::ContextBounds::new(2048, 32_768, 256),
        None,
        &Default::default(),
    );
    let predicted = plugin_facts.kv_cache_bytes(8192, 512).expect("a layout");
    let spec = ozone::backend::llama_server::LlamaServerSpec {
        model: model.clone(),
        ..common::llama_spec(common::llama_server(), &["-lv", "4"])
    };
    let mut server = ManagedServer::start(
        &spec,
        &common::config(8192, 1),
        Duration::from_secs(120),
        &CancellationToken::new(),
        &|_| {},
    )
    .await
    .unwrap_or_else(|f| panic!("{:?}\n{:#?}", f.failure, f.log_tail));
    let allocated: f64 = server
        .log_lines()
        .iter()
        .filter_map(|l| l.split("llama_kv_cache: size =").nth(1))
        .filter_map(|rest| rest.trim().split(' ').next()?.parse::<f64>().ok())
        .sum();
    server.stop().await;
    // 8192 cells × 3 full layers × 1 KiB, and 1024 cells (512 + 512, padded) × 15 layers.
    assert_eq!(predicted, 8192 * 3 * 1024 + 1024 * 15 * 1024);
    assert_eq!(
        (allocated * MIB as f64) as u64,
        predicted,
        "llama.cpp allocated {allocated} MiB"
    );
    common::assert_no_servers_left_for(&model);
}

#[tokio::test]
async fn a_screen_fills_the_context_in_the_model_s_own_tokens() {
    let _serial = common::serial().await;
    let model = common::real_model();
    let spec = BackendSpec::LlamaServer(ozone::backend::llama_server::LlamaServerSpec {
        model: model.clone(),
        ..common::llama_spec(common::llama_server(), &[])
    });
    let mut runner = TrialRunner::new(spec, common::settings(1), common::sampler(None));
    let run = runner
        .run(
            1,
            Phase::Context,
            Stage::Screen,
            &common::config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_eq!(
        run.verdict,
        Verdict::Stable,
        "{:?}\n{:#?}",
        run.failure,
        run.server_log_tail
    );
    let sample = &run.samples[0];
    // 90 % of 2048 in Gemma's own tokens, counted by the server.
    assert_eq!(sample.prompt_tokens, Some(1843), "{sample:?}");
    assert_eq!(sample.completion_tokens, Some(16), "{sample:?}");
    assert!(sample.ttft_ms.is_some_and(|t| t > 0.0), "{sample:?}");
    common::assert_no_servers_left_for(&model);
}

/// A real tune of the real model at small contexts: the smallest context 512, a budget
/// 4 MiB over the server's footprint there (measured first), two samples a trial, no
/// batch or concurrency phase. The cache grows by 18 KiB a token below the sliding
/// windows' 1024 cells and by 3 KiB above them: the limit is memory's, a few thousand
/// tokens up.
#[test]
fn a_real_tune_finds_a_memory_bound_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ozone.yaml");
    std::fs::write(
        &config,
        format!(
            "search_strategy:\n  initial_context_probe: 2048\n  batch_adaptation:\n    enabled: false\n\
             testing:\n  statistical_validation:\n    min_samples_per_config: 2\n    \
             variance_tolerance: 10.0\n{}ozone:\n  min_context: 512\n  n_predict: 8\n  \
             process_memory_headroom_mb: 14\n",
            crate::quiet_machine_yaml!()
        ),
    )
    .expect("config");
    let model = model_beside(dir.path(), "gemma-tune.gguf");
    let config = config.display().to_string();
    let out = cli::ozone(
        dir.path(),
        &[
            "tune",
            model.to_str().expect("utf-8"),
            "--config",
            &config,
            "--skip-concurrency",
            "--json",
            "-o",
            "out",
        ],
    )
    .env("LLAMA_SERVER", common::llama_server())
    .within(Duration::from_secs(900))
    .run();
    out.code(cli::OK).says("server-memory budget");
    let summary = out.json();
    let max = &summary["limits"]["max_context"];
    let ctx = max["value"].as_u64().expect("a published context");
    assert!((768..=8192).contains(&ctx), "{max}");
    assert_eq!(max["bound_by"], "memory", "{max}");
    // The log's model facts carry the layout the plugins were told.
    assert_eq!(
        summary["model"]["layers"][0]["kind"], "sliding-window",
        "{}",
        summary["model"]
    );
    let trials = summary["trials"].as_array().cloned().unwrap_or_default();
    for t in &trials {
        eprintln!(
            "  {} {} {}: {:.1} MiB",
            t["stage"],
            t["config"]["ctx"],
            t["verdict"],
            t["peaks"]["process_rss_bytes"].as_f64().unwrap_or(0.0) / MIB as f64
        );
    }
    eprintln!("real tune: {ctx} tokens, {} trials", trials.len());
    common::assert_no_servers_left_for(&model);
}

/// The configuration frontier on the real model, bounded by the latency a user accepts:
/// `--kv-cache-types f16,q8_0` under `--slo ttft-p95=4000ms` (about 500 tokens of
/// prefill on two cores). Each cache gets its own context search, bound by the
/// objective (`bound_by: slo`, the verified context's TTFT within it), and q8_0's
/// quality cost is measured against f16 on the shipped text (64 positions). About
/// 3 minutes on two cores: short fills, two quality servers at 4096 tokens.
#[test]
fn the_real_model_s_frontier_is_bound_by_a_ttft_objective_and_carries_q8_0_s_quality() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ozone.yaml");
    std::fs::write(
        &config,
        format!(
            "search_strategy:\n  initial_context_probe: 1024\n  batch_adaptation:\n    enabled: false\n\
             testing:\n  statistical_validation:\n    min_samples_per_config: 2\n    \
             variance_tolerance: 10.0\n{}ozone:\n  min_context: 256\n  n_predict: 8\n",
            crate::quiet_machine_yaml!()
        ),
    )
    .expect("config");
    let model = model_beside(dir.path(), "gemma-frontier.gguf");
    let config = config.display().to_string();
    let out = cli::ozone(
        dir.path(),
        &[
            "tune",
            model.to_str().expect("utf-8"),
            "--config",
            &config,
            "--kv-cache-types",
            "f16,q8_0",
            "--slo",
            "ttft-p95=4000ms",
            "--skip-concurrency",
            "--json",
            "-o",
            "out",
        ],
    )
    .env("LLAMA_SERVER", common::llama_server())
    .within(Duration::from_secs(900))
    .run();
    let summary = out.code(cli::OK).json();
    let max = &summary["limits"]["max_context"];
    assert_eq!(max["bound_by"], "slo", "{max}");
    let rows = summary["frontier"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let trials = summary["trials"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        assert_eq!(row["bound"], "slo", "{row}");
        let ctx = row["max_context"].as_u64().expect("a verified context");
        assert!((256..32_768).contains(&ctx), "{row}");
        let verified = trials
            .iter()
            .find(|t| {
                t["stage"] == "verify"
                    && t["verdict"] == "stable"
                    && t["config"]["ctx"] == ctx
                    && t["config"]["kv_cache_type"] == row["variant"]["cache_type_k"]
            })
            .unwrap_or_else(|| panic!("a verification at {ctx}: {row}"));
        let slowest = verified["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ttft_ms"].as_f64())
            .fold(0.0, f64::max);
        assert!(slowest > 0.0 && slowest <= 4000.0, "{verified}");
    }
    let q8 = rows
        .iter()
        .find(|r| r["variant"]["cache_type_k"] == "q8_0")
        .expect("a q8_0 row");
    let quality = &q8["quality"];
    let kld = quality["kld_mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("{q8}"));
    assert!((0.0..0.5).contains(&kld), "{quality}");
    assert!(
        quality["top1_agreement"]
            .as_f64()
            .is_some_and(|a| a > 0.5 && a <= 1.0),
        "{quality}"
    );
    assert_eq!(quality["positions"], 64, "{quality}");
    eprintln!("real frontier: {rows:#?}");
    common::assert_no_servers_left_for(&model);
}

/// The real model linked into `dir` under a name of its own: the other tests of this
/// binary may serve the model meanwhile, and no server of a test's tune may outlive it.
fn model_beside(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let model = dir.join(name);
    std::fs::hard_link(common::real_model(), &model)
        .or_else(|_| std::fs::copy(common::real_model(), &model).map(drop))
        .expect("the model beside the test");
    model
}
