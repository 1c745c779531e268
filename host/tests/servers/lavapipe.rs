//! llama-server on a real GPU device: lavapipe, Mesa's software Vulkan device
//! (`common::lavapipe`). Layers split between it and the CPU, llama.cpp's memory
//! breakdown recorded per trial (and standing for the server's GPU memory, which nothing
//! reads live here), and llama.cpp's fit deciding the offload at a context.
//!
//! lavapipe compiles its shaders at a server's first request (about 12 s on the tiny
//! model, 35 s on the 8 × 512 one, on two cores): one trial sends requests; the fit
//! starts only load (under a second each).

use std::time::Duration;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::llama_server::{fit_offload, FitOffloadRequest, LlamaServerSpec};
use ozone::backend::BackendSpec;
use ozone::record::{
    FitOffload, FitOffloadSource, Phase, ServerGpuSource, Stage, TrialConfig, Variant, Verdict,
};
use ozone::trial::TrialRunner;
use ozone_sdk::Offload;
use tokio_util::sync::CancellationToken;

use crate::common::lavapipe::lavapipe_spec;
use crate::common::{assert_no_servers_left_for, sampler, serial, settings, wide_model_spec};

const MIB: u64 = 1024 * 1024;

/// A small trial on lavapipe, `gpu_layers` on the device (all of them: `None`).
fn small(ctx: u32, gpu_layers: Option<u32>) -> TrialConfig {
    TrialConfig {
        ctx,
        batch: 64,
        ubatch: 64,
        concurrency: 1,
        variant: Variant {
            gpu_layers,
            threads: Some(2),
            ..Variant::default()
        },
    }
}

#[tokio::test]
async fn a_split_trial_on_lavapipe_records_llama_cpps_breakdown_as_the_servers_gpu_memory() {
    let _serial = serial().await;
    // 4 blocks × 256 wide (the tiny model's buffers round to 0 MiB): 5 offloadable
    // layers, 3 on the device, two blocks on the CPU.
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("split.gguf");
    write_tiny_model(&model, &wide_model_spec(32_768)).expect("write the model");
    let spec = lavapipe_spec(&model);
    let mut slow = settings(1);
    slow.health_timeout_s = 120.0;
    let mut runner = TrialRunner::new(BackendSpec::LlamaServer(spec), slow, sampler(None));
    let run = runner
        .run(
            1,
            Phase::Context,
            Stage::Screen,
            &small(256, Some(3)),
            &CancellationToken::new(),
        )
        .await;
    let r = &run.record;
    assert_eq!(
        r.verdict,
        Verdict::Stable,
        "{:?}\n{:#?}",
        r.failure,
        r.server_log_tail
    );
    let breakdown = r.memory_breakdown.as_ref().expect("a breakdown at exit");
    let vulkan = breakdown.device("Vulkan0").expect("the lavapipe device");
    assert!(
        vulkan
            .description
            .as_deref()
            .is_some_and(|d| d.contains("llvmpipe")),
        "{vulkan:?}"
    );
    assert_eq!(vulkan.total_mib, 2048);
    assert!(vulkan.model_mib > 0 && vulkan.self_mib > 0, "{vulkan:?}");
    // One block stayed on the CPU: the host holds model weights too.
    assert!(
        breakdown.host.iter().any(|h| h.name == "Host"),
        "{breakdown:?}"
    );
    // Nothing reads a process's GPU memory here (no NVML, no amdgpu): the breakdown's
    // device figure stands for it, and the record says so.
    assert_eq!(
        r.peaks.server_gpu_mem_bytes,
        Some(vulkan.self_mib * MIB),
        "{:?}",
        r.peaks
    );
    assert_eq!(r.server_gpu_source(), Some(ServerGpuSource::Breakdown));
    assert_no_servers_left_for(&model);

    // The same trial on the CPU (no device in its environment): llama-server prints no
    // device, and the record has neither a breakdown device nor a GPU figure.
    let mut cpu = TrialRunner::new(crate::common::backend(&[]), settings(1), sampler(None));
    let run = cpu
        .run(
            2,
            Phase::Context,
            Stage::Screen,
            &small(256, None),
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(
        run.record.verdict,
        Verdict::Stable,
        "{:?}",
        run.record.failure
    );
    assert!(
        run.record
            .memory_breakdown
            .as_ref()
            .is_none_or(|b| b.devices.is_empty()),
        "{:?}",
        run.record.memory_breakdown
    );
    assert_eq!(run.record.peaks.server_gpu_mem_bytes, None);
}

#[tokio::test]
async fn llama_cpps_fit_at_a_context_keeps_fewer_layers_on_lavapipe_as_the_context_grows() {
    let _serial = serial().await;
    // 8 blocks × 512 wide: 80 MiB of weights, 16 KiB of KV cache a token. A 1950 MiB
    // margin on lavapipe's 2048 MiB leaves fit 98 MiB to fill: everything fits at 512
    // tokens, not at 4096.
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("offload.gguf");
    write_tiny_model(
        &model,
        &TinyModelSpec {
            embedding_length: 512,
            block_count: 8,
            trained_context: 65_536,
            ..TinyModelSpec::default()
        },
    )
    .expect("write the model");
    let spec = lavapipe_spec(&model);
    let request = |ctx| FitOffloadRequest {
        config: TrialConfig {
            ctx,
            batch: 512,
            ubatch: 512,
            concurrency: 1,
            // What `ozone tune` passes; fit must be free to choose, so it is left out.
            variant: Variant {
                gpu_layers: Some(99),
                threads: Some(2),
                ..Variant::default()
            },
        },
        margin_mib: 1950,
        sampler: sampler(None),
        health_timeout: Duration::from_secs(120),
    };
    let cancel = CancellationToken::new();

    let small = fit_offload(&spec, &request(512), &cancel).await;
    assert_eq!(
        small.offload(),
        Some(Offload {
            gpu_layers: 9,
            cpu_moe_layers: 0
        }),
        "{small:#?}"
    );

    let large = fit_offload(&spec, &request(4096), &cancel).await;
    let FitOffload::Chosen {
        offload,
        layers,
        projected_mib,
        source,
        memory,
        command,
        ..
    } = &large
    else {
        panic!("fit chose nothing: {large:#?}");
    };
    assert!(
        offload.gpu_layers < 9 && offload.gpu_layers > 0,
        "{offload:?}"
    );
    assert_eq!(offload.cpu_moe_layers, 0, "a dense model");
    assert_eq!(*layers, Some(9));
    assert_eq!(*source, FitOffloadSource::Loaded);
    assert!(!command.iter().any(|a| a == "-ngl"), "{command:?}");
    assert!(
        command.windows(2).any(|w| w == ["-c", "4096"]),
        "{command:?}"
    );
    // What the server took on the device when it stopped, against fit's projection and
    // its target (2048 − 1950 MiB).
    let device = memory
        .as_ref()
        .and_then(|m| m.device("Vulkan0"))
        .expect("the breakdown at exit");
    let projected = projected_mib.expect("fit's projection");
    assert!(
        device.self_mib.abs_diff(projected) <= 2,
        "{device:?} vs {projected}"
    );
    assert!(device.self_mib <= 98, "{device:?}");

    // `-ngl` set by the user to more than fits: fit gives up, in its words (the server
    // then loads what it was told, which is not fit's choice).
    let fixed = LlamaServerSpec {
        extra_args: vec!["-ngl".into(), "9".into()],
        ..spec.clone()
    };
    let refused = fit_offload(&fixed, &request(4096), &cancel).await;
    assert!(
        refused
            .why_not()
            .is_some_and(|w| w.contains("n_gpu_layers already set by user")),
        "{refused:#?}"
    );
    assert_no_servers_left_for(&model);
}

/// `ozone tune` on lavapipe under a GPU-memory budget the model does not fit with every
/// layer on the device: the offload phase finds, by screens and one verification, the
/// most layers that fit at the context the run wanted (a verified `-ngl` below the
/// layer count, one more failed), llama.cpp's fit at that context beside it, and the
/// deploy files carry that `-ngl`. 4 blocks × 256 wide (`ozone demo-model --layers 4
/// --embedding 256`), trained for 512 tokens: about 12.7 MiB on the device with every
/// layer, 8 MiB allowed. About 30 s on an idle machine (five trials).
#[tokio::test]
async fn a_tune_on_lavapipe_offloads_the_layers_that_fit_a_gpu_budget_beside_fits_choice() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("offload.gguf");
    write_tiny_model(
        &model,
        &TinyModelSpec {
            embedding_length: 256,
            feed_forward_length: 512,
            block_count: 4,
            trained_context: 512,
            ..TinyModelSpec::default()
        },
    )
    .expect("write the model");
    let server = crate::common::lavapipe::lavapipe_llama_server();
    let out = dir.path().join("out");
    let run = crate::common::cli::ozone(
        dir.path(),
        &[
            "tune",
            model.to_str().expect("utf-8"),
            "--llama-server",
            server.to_str().expect("utf-8"),
            "--gpu-memory-budget-mb",
            "8",
            "--min-context",
            "256",
            "--samples",
            "2",
            "--threads",
            "2",
            "--skip-concurrency",
            "-o",
            out.to_str().expect("utf-8"),
        ],
    )
    // About 30 s on an idle 2-core machine; a busy one (noise: decode spreads measured
    // again, a noise floor) has taken over 4 minutes.
    .within(Duration::from_secs(480))
    .run();
    let stdout = run.ok().to_owned();
    let summary_path = std::fs::read_dir(out.join("summaries"))
        .expect("summaries")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("a summary");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("read")).expect("json");
    let search = &summary["offload"]["search"];
    assert_eq!(search["ctx"], 512, "{search:#}\n{stdout}\n{}", run.stderr);
    assert_eq!(search["layers"], 5, "4 blocks and the output layer");
    let ngl = search["offload"]["gpu_layers"]
        .as_u64()
        .expect("an offload fits");
    assert!(ngl > 0 && ngl < 5, "{search:#}");
    // Verified: the trial behind it is a stable verification at that -ngl.
    let trials = summary["trials"].as_array().expect("trials");
    let verified = trials
        .iter()
        .find(|t| t["id"] == search["trial_id"])
        .expect("its verification");
    assert_eq!(verified["stage"], "verify");
    assert_eq!(verified["verdict"], "stable");
    assert_eq!(verified["config"]["gpu_layers"], ngl);
    // One more layer on the device failed for the budget, as llama.cpp's own account of
    // its device buffers at load says.
    let next = &search["next_failed"];
    assert_eq!(next["offload"]["gpu_layers"], ngl + 1, "{search:#}");
    let failed = trials
        .iter()
        .find(|t| t["id"] == next["trial_id"])
        .expect("the failed step");
    assert_eq!(failed["breach"]["metric"], "gpu-memory-budget");
    assert_eq!(failed["breach"]["device"]["name"], "Vulkan0");
    // llama.cpp's fit at the same context, aiming at the same budget (margin = free −
    // budget), was the first proposal and is shown beside the answer.
    let fit = &search["fit"];
    assert_eq!(fit["status"], "chosen", "{fit:#}");
    assert_eq!(fit["margin_mib"], 2048 - 8);
    let first = trials
        .iter()
        .find(|t| t["phase"] == "offload")
        .expect("an offload trial");
    assert_eq!(
        first["config"]["gpu_layers"], fit["offload"]["gpu_layers"],
        "fit's choice is the first proposal"
    );
    assert!(stdout.contains("offload          512: "), "{stdout}");
    assert!(stdout.contains("llama.cpp's fit: "), "{stdout}");
    assert!(stdout.contains("bound by GPU memory"), "{stdout}");
    // The deploy files carry the -ngl (and the Modelfile num_gpu).
    let deploy = out.join("deploy");
    let script = std::fs::read_to_string(deploy.join("offload.llama-server.sh")).expect("script");
    assert!(script.contains(&format!("-ngl {ngl} ")), "{script}");
    let modelfile = std::fs::read_to_string(deploy.join("offload.Modelfile")).expect("Modelfile");
    assert!(
        modelfile.contains(&format!("PARAMETER num_gpu {ngl}")),
        "{modelfile}"
    );
    let html = std::fs::read_dir(out.join("report"))
        .expect("report")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).expect("read"))
        .next()
        .expect("a report");
    assert!(html.contains("<h2>GPU offload</h2>"), "no offload section");
    assert_no_servers_left_for(&model);
}
