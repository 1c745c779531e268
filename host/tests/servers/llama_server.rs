//! Trials against a real llama-server (from `LLAMA_SERVER`, see `.ci/install-llama-server`)
//! on the generated tiny model. Each test ends by checking no server outlived it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use ozone::backend::llama_server::LlamaServerSpec;
use ozone::backend::BackendSpec;
use ozone::hardware::process_gpu::{ProcessGpuSource, Recording};
use ozone::record::{FailureKind, Metric, Phase, Stage, Verdict};
use ozone::trial::{TrialRunner, TrialSettings};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn trial_at_4096_measures_five_samples_with_server_counts() {
    let _serial = serial().await;
    let mut runner = TrialRunner::new(backend(&[]), settings(5), sampler(None));
    let run = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config(4096, 1),
            &CancellationToken::new(),
        )
        .await;
    let r = &run.record;
    assert_ne!(
        r.verdict,
        Verdict::Failed,
        "{:?}\n{:#?}",
        r.failure,
        r.server_log_tail
    );
    assert_eq!(r.samples.len(), 5);
    assert_eq!(r.success_rate, 1.0, "{:#?}", r.samples);
    assert_eq!(r.granted_ctx, Some(4096));
    for s in &r.samples {
        // 90 % of 4096, exactly: the prompt is built from the server's own tokens and
        // the count is the server's.
        assert_eq!(s.prompt_tokens, Some(3686), "{s:?}");
        assert_eq!(s.completion_tokens, Some(16), "{s:?}");
        let (ttft, total) = (s.ttft_ms.unwrap_or(0.0), s.total_ms.unwrap_or(0.0));
        assert!(ttft > 0.0 && ttft < total, "{s:?}");
        assert!(s.decode_tps.is_some_and(|t| t > 0.0) && s.prefill_tps.is_some_and(|t| t > 0.0));
    }
    let decode = r.decode_tps.as_ref().expect("decode statistics");
    assert_eq!(decode.n, 5);
    assert!(decode.p50 <= decode.p95 && decode.min <= decode.p50);
    assert!(r.cv.is_some());
    // The sampler watched the server: its memory was measured.
    assert!(
        r.peaks.process_rss_bytes.is_some_and(|b| b > 10 << 20),
        "{:?}",
        r.peaks
    );
    assert!(!run.series.points.is_empty());
    assert_no_servers_left();
}

#[tokio::test]
async fn a_screen_is_one_request_that_fills_the_context() {
    let _serial = serial().await;
    let mut runner = TrialRunner::new(backend(&[]), settings(5), sampler(None));
    let mut heard = Vec::new();
    let run = runner
        .run_reporting(
            1,
            Phase::Context,
            Stage::Screen,
            &config(4096, 1),
            &CancellationToken::new(),
            &mut |s| heard.push(s.clone()),
        )
        .await;
    let r = &run.record;
    assert_eq!(r.verdict, Verdict::Stable, "{:?}", r.failure);
    assert_eq!(r.stage, Stage::Screen);
    assert_eq!(r.samples.len(), 1, "one request, not min_samples");
    assert_eq!(r.samples[0].prompt_tokens, Some(3686), "90 % of 4096");
    assert_eq!(r.stopped_early, None);
    assert!(r.peaks.process_rss_bytes.is_some(), "the guard watched it");
    assert_eq!(heard, r.samples, "the sample was handed out as it finished");
    assert_no_servers_left();
}

/// Early verdict: the server is made to fail every request deterministically (it is
/// asked for more tokens than the context holds, so it stops short), and with 5 samples
/// and an 85 % threshold the first failure settles the verdict.
#[tokio::test]
async fn a_trial_whose_first_sample_fails_ends_before_the_second_request() {
    let _serial = serial().await;
    let mut settings = settings(5);
    settings.n_predict = 4096;
    let mut runner = TrialRunner::new(backend(&[]), settings, sampler(None));
    let mut heard = 0;
    let run = runner
        .run_reporting(
            1,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
            &mut |_| heard += 1,
        )
        .await;
    let r = &run.record;
    assert_eq!(r.verdict, Verdict::Failed, "{:#?}", r.samples);
    assert_eq!(r.samples.len(), 1, "{:#?}", r.samples);
    assert_eq!(heard, 1, "no second request was sent");
    assert!(!r.samples[0].ok);
    assert_eq!(
        r.stopped_early.as_deref(),
        Some("stopped after sample 1 of 5: 1 failure makes 85 % unreachable")
    );
    let failure = r.failure.as_ref().expect("the sample's failure");
    assert_eq!(failure.kind, FailureKind::BadOutput, "{failure:?}");
    assert_no_servers_left();
}

/// A concurrency level is a closed loop: N streams, each sending its next request when
/// the previous one finished, `requests_per_stream` measured after one warm-up each.
#[tokio::test]
async fn concurrency_levels_run_closed_loops_of_streams() {
    let _serial = serial().await;
    let settings = TrialSettings {
        requests_per_stream: 2,
        ..settings(4)
    };
    let mut runner = TrialRunner::new(backend(&[]), settings, sampler(None));
    for (id, c) in [(1, 1u32), (2, 2), (3, 4)] {
        let run = runner
            .run(
                id,
                Phase::Concurrency,
                Stage::Verify,
                &config(2048, c),
                &CancellationToken::new(),
            )
            .await;
        let r = &run.record;
        assert_ne!(
            r.verdict,
            Verdict::Failed,
            "c={c}: {:?}\n{:#?}",
            r.failure,
            r.server_log_tail
        );
        assert_eq!(r.samples.len(), 2 * c as usize, "c={c}");
        assert_eq!(r.success_rate, 1.0, "c={c}: {:#?}", r.samples);
        for stream in 0..c {
            let of = r
                .samples
                .iter()
                .filter(|s| s.stream == Some(stream))
                .count();
            assert_eq!(of, 2, "c={c}: stream {stream}");
        }
        // Every stream got the whole context per slot: 90 % of 2048 each; and the
        // server's own timings of each request are kept beside the client's.
        for s in &r.samples {
            assert_eq!(s.prompt_tokens, Some(1843), "c={c}: {s:#?}");
            let (Some(ttft), Some(prompt_ms)) = (s.ttft_ms, s.server_prompt_ms) else {
                panic!("c={c}: {s:#?}");
            };
            assert!(
                ttft >= prompt_ms,
                "the first token follows the prompt: {s:#?}"
            );
            assert!(s.server_predicted_ms.is_some(), "{s:#?}");
        }
        assert_eq!(r.granted_ctx, Some(2048));
        let f = r.concurrency.as_ref().expect("a level's figures");
        assert_eq!(
            (f.streams, f.requests_per_stream, f.warmup_per_stream),
            (c, 2, 1)
        );
        let l = &f.latency;
        let (p50, p95, p99) = (
            l.ttft_p50_ms.unwrap(),
            l.ttft_p95_ms.unwrap(),
            l.ttft_p99_ms.unwrap(),
        );
        assert!(p50 <= p95 && p95 <= p99, "{l:?}");
        assert!(l.tpot_p50_ms.unwrap() <= l.tpot_p95_ms.unwrap(), "{l:?}");
        // Each request ends after its first token: so does the same rank of each.
        assert!(l.e2e_p95_ms.unwrap() >= p95, "{l:?}");
        let streams = f.stream_decode_tps.as_ref().expect("per-stream throughput");
        assert_eq!(streams.n, c, "one figure per stream");
        // All streams together: every generated token over the measured window.
        let tokens: u32 = r.samples.iter().filter_map(|s| s.completion_tokens).sum();
        let aggregate = f64::from(tokens) / (f.window_ms / 1000.0);
        assert!((f.aggregate_decode_tps.unwrap() - aggregate).abs() < 1e-6);
        assert_eq!(f.slo, None, "the runner does not judge; the driver does");
    }
    assert_no_servers_left();
}

/// A level stops early as any trial does: every request fails (more tokens asked than
/// the context holds), and the first failure — a warm-up's, which counts as a sample —
/// leaves 85 % unreachable, so no measured request is waited for.
#[tokio::test]
async fn a_concurrency_level_that_cannot_be_stable_stops_at_its_first_failure() {
    let _serial = serial().await;
    let settings = TrialSettings {
        requests_per_stream: 2,
        n_predict: 4096,
        ..settings(4)
    };
    let mut runner = TrialRunner::new(backend(&[]), settings, sampler(None));
    let mut heard = 0;
    let run = runner
        .run_reporting(
            1,
            Phase::Concurrency,
            Stage::Verify,
            &config(2048, 2),
            &CancellationToken::new(),
            &mut |_| heard += 1,
        )
        .await;
    let r = &run.record;
    assert_eq!(r.verdict, Verdict::Failed, "{:#?}", r.samples);
    assert_eq!(r.samples.len(), 1, "{:#?}", r.samples);
    assert_eq!(heard, 1);
    let error = r.samples[0].error.as_deref().unwrap_or("");
    assert!(error.starts_with("warm-up request: "), "{error}");
    assert_eq!(
        r.stopped_early.as_deref(),
        Some("stopped after sample 1 of 5: 1 failure makes 85 % unreachable")
    );
    let f = r.concurrency.as_ref().expect("a level's figures");
    assert_eq!(f.latency.ttft_p95_ms, None, "nothing measured");
    assert_no_servers_left();
}

#[tokio::test]
async fn server_memory_over_the_budget_is_a_threshold_breach() {
    let _serial = serial().await;
    // Without flash attention the compute buffers grow with ctx × ubatch: the server
    // peaks about 80 MiB higher at 8192 than at 2048; the budget sits between.
    let budget_mb = budget_over_footprint(
        &llama_spec(llama_server(), &["-fa", "off"]),
        &config(2048, 1),
        40,
    );
    let mut runner = TrialRunner::new(
        backend(&["-fa", "off"]),
        settings(3),
        sampler(Some(budget_mb)),
    );
    let small = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_ne!(small.verdict, Verdict::Failed, "{:?}", small.failure);
    assert!(small.breach.is_none());

    let started = Instant::now();
    let big = runner
        .run(
            2,
            Phase::Context,
            Stage::Verify,
            &config(8192, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_eq!(big.verdict, Verdict::Failed);
    let failure = big.failure.as_ref().expect("a failure");
    assert_eq!(
        failure.kind,
        FailureKind::ThresholdBreach(Metric::ProcessMemory),
        "{failure:?}"
    );
    let breach = big.breach.as_ref().expect("the breach");
    assert!(breach.value > (budget_mb << 20) as f64, "{breach:?}");
    assert!(big
        .peaks
        .process_rss_bytes
        .is_some_and(|p| p > budget_mb << 20));
    // The breach cancelled the in-flight requests: the trial did not run to its end.
    assert!(big.samples.len() < 3, "{:#?}", big.samples);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_no_servers_left();
}

/// CI has no GPU: the server's GPU memory comes from a recorded NVML per-process reading
/// (`nvidia-smi --query-compute-apps` of a llama-server on an RTX 3090, 23342 MiB), its
/// llama-server standing for the one this trial starts. The trial itself is real.
#[tokio::test]
async fn server_gpu_memory_over_the_gpu_budget_is_a_threshold_breach() {
    let _serial = serial().await;
    let recording = ProcessGpuSource::Recorded(
        Recording::from_compute_apps(
            include_str!("../fixtures/hardware/nvidia-smi/compute-apps-rtx3090-llama-server.csv"),
            1_106_871,
        )
        .expect("the recorded llama-server"),
    );
    let recorded = 23_342u64 << 20;
    let with_gpu_budget = |budget_mb: u64| {
        let mut s = sampler(None);
        s.process_gpu = recording.clone();
        if let Some(t) = s.thresholds.as_mut() {
            t.gpu_memory_budget_mb = Some(budget_mb);
        }
        s
    };

    // Within a 24 GiB budget the trial runs and its peak is the recorded figure.
    let mut runner = TrialRunner::new(backend(&[]), settings(2), with_gpu_budget(24_576));
    let within = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_ne!(within.verdict, Verdict::Failed, "{:?}", within.failure);
    assert_eq!(within.peaks.server_gpu_mem_bytes, Some(recorded));

    // Over a 20 GiB budget: a breach as soon as the server is watched, the server killed.
    let started = Instant::now();
    let mut runner = TrialRunner::new(backend(&[]), settings(2), with_gpu_budget(20_480));
    let over = runner
        .run(
            2,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_eq!(over.verdict, Verdict::Failed);
    let failure = over.failure.as_ref().expect("a failure");
    assert_eq!(
        failure.kind,
        FailureKind::ThresholdBreach(Metric::GpuMemoryBudget),
        "{failure:?}"
    );
    assert!(
        failure
            .message
            .starts_with("gpu-memory-budget reached 23342.0 MiB, limit 20480.0 MiB"),
        "{}",
        failure.message
    );
    let json = serde_json::to_value(&over).expect("the record serializes");
    assert_eq!(json["failure"]["kind"], "threshold-breach");
    assert_eq!(json["failure"]["metric"], "gpu-memory-budget");
    assert_eq!(json["peaks"]["server_gpu_mem_bytes"], recorded);
    assert!(over.samples.is_empty(), "{:#?}", over.samples);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_no_servers_left();
}

/// User + system CPU time of a process, from `/proc/PID/stat` (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[tokio::test]
async fn server_killed_mid_trial_is_classified_and_the_next_trial_runs() {
    let _serial = serial().await;
    let mut runner = TrialRunner::new(backend(&[]), settings(6), sampler(None));
    let cancel = CancellationToken::new();
    // Kill the server once it has done real work: its own CPU time, unlike the wall
    // clock, does not depend on how busy the machine is (8192: ~1 s of CPU per sample).
    let killer = tokio::spawn(async {
        let pid = loop {
            if let Some(pid) = ozone::backend::llama_server::live_server_pids().first() {
                break *pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        while cpu_seconds(pid).is_some_and(|s| s < 3.0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // SAFETY: kill(2) on a pid this test's runner started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        pid
    });
    let run = runner
        .run(1, Phase::Context, Stage::Verify, &config(8192, 1), &cancel)
        .await
        .record;
    let pid = killer.await.expect("killer task");
    assert_eq!(run.verdict, Verdict::Failed, "{:#?}", run.samples);
    let failure = run.failure.as_ref().expect("a failure");
    assert_eq!(failure.kind, FailureKind::ServerError, "{failure:?}");
    assert!(failure.message.contains("signal 9"), "{failure:?}");
    assert!(failure.message.starts_with("mid-trial"), "{failure:?}");
    assert!(
        run.samples.iter().any(|s| s.ok),
        "killed before any sample: {:#?}",
        run.samples
    );
    assert!(!run.server_log_tail.is_empty());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/status")).exists(),
        "pid {pid} still exists"
    );

    let next = runner
        .run(
            2,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_ne!(next.verdict, Verdict::Failed, "{:?}", next.failure);
    assert_no_servers_left();
}

/// A model file truncated under a running server (a copy over it, a disk that lost it):
/// the server's next read of the mapped weights is a real SIGBUS, classified as a fault
/// that names the file and what is left of it.
#[tokio::test]
async fn a_model_truncated_under_the_server_is_a_bus_error_naming_the_file() {
    use ozone::backend::llama_server::ManagedServer;
    use ozone::backend::{GenerationRequest, Prompt};
    use ozone::record::ServerFault;
    let _serial = serial().await;
    let model = tiny_model().with_file_name("truncated-under-the-server.gguf");
    std::fs::copy(tiny_model(), &model).expect("copy the model");
    let spec = LlamaServerSpec {
        model: model.clone(),
        ..llama_spec(llama_server(), &[])
    };
    let mut server = ManagedServer::start(
        &spec,
        &config(2048, 1),
        Duration::from_secs(60),
        &CancellationToken::new(),
        &|_| {},
    )
    .await
    .unwrap_or_else(|f| {
        panic!(
            "llama-server did not start: {:?}\n{:#?}",
            f.failure, f.log_tail
        )
    });
    let len = std::fs::metadata(&model).expect("model").len();
    std::fs::File::options()
        .write(true)
        .open(&model)
        .and_then(|f| f.set_len(len / 4))
        .expect("truncate the model");
    let request = GenerationRequest {
        prompt: Prompt::Text("the weights are gone".into()),
        n_predict: 4,
        timeout: Duration::from_secs(30),
    };
    let answered = server.client().complete(&request).await;
    assert!(answered.is_err(), "a server without its weights answered");
    let mut exit = None;
    for _ in 0..50 {
        exit = server.exited().await;
        if exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failure = exit.expect("the server died");
    assert_eq!(failure.fault, Some(ServerFault::BusError), "{failure:?}");
    assert!(
        failure
            .message
            .starts_with("llama-server died of a bus error (SIGBUS)")
            && failure
                .message
                .contains("truncated-under-the-server.gguf is truncated"),
        "{}",
        failure.message
    );
    server.stop().await;
    assert_no_servers_left_for(&model);
}

#[tokio::test]
async fn server_that_never_gets_healthy_times_out() {
    let _serial = serial().await;
    let fake =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake/never-healthy-server");
    let mut settings = settings(1);
    settings.health_timeout_s = 2.0;
    let mut runner = TrialRunner::new(
        BackendSpec::LlamaServer(llama_spec(fake, &[])),
        settings,
        sampler(None),
    );
    let started = Instant::now();
    let run = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_eq!(run.verdict, Verdict::Failed);
    let failure = run.failure.as_ref().expect("a failure");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert!(
        failure.message.contains("healthy within 2 s"),
        "{failure:?}"
    );
    assert!(
        run.server_log_tail
            .iter()
            .any(|l| l.contains("fake server listening")),
        "{:?}",
        run.server_log_tail
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_no_servers_left();
}

#[tokio::test]
async fn cancellation_stops_the_server_and_returns_promptly() {
    let _serial = serial().await;
    let mut runner = TrialRunner::new(backend(&[]), settings(20), sampler(None));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        while ozone::backend::llama_server::live_server_pids().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let run = runner
        .run(1, Phase::Context, Stage::Verify, &config(8192, 1), &cancel)
        .await
        .record;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.verdict, Verdict::Failed);
    assert_eq!(
        run.failure.as_ref().map(|f| f.message.as_str()),
        Some("interrupted")
    );
    assert_no_servers_left();
}

#[tokio::test]
async fn model_facts_come_from_the_gguf_file() {
    let runner = TrialRunner::new(backend(&[]), settings(1), sampler(None));
    let facts = runner.spec().model_metadata().await.expect("facts");
    assert_eq!(facts.trained_context, Some(32768));
    assert_eq!(facts.architecture.as_deref(), Some("llama"));
}

#[tokio::test]
async fn dropping_a_running_trial_kills_its_server() {
    let _serial = serial().await;
    let mut runner = TrialRunner::new(backend(&[]), settings(20), sampler(None));
    let (config, cancel) = (config(8192, 1), CancellationToken::new());
    let run = runner.run(1, Phase::Context, Stage::Verify, &config, &cancel);
    let outcome = tokio::time::timeout(Duration::from_millis(2500), run).await;
    assert!(outcome.is_err(), "the trial should still have been running");
    // SIGKILL is delivered asynchronously: give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_mentioning(&tiny_model().display().to_string()).is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_no_servers_left();
}

/// The OpenAI-compatible path against llama-server's own `/v1/completions`: the prompt
/// length comes from calibrating characters per token on the server's usage counts.
#[tokio::test]
async fn openai_compatible_trial_against_llama_server_v1() {
    use ozone::backend::llama_server::ManagedServer;
    let _serial = serial().await;
    let spec = llama_spec(llama_server(), &[]);
    let mut server = ManagedServer::start(
        &spec,
        &config(4096, 1),
        Duration::from_secs(60),
        &CancellationToken::new(),
        &|_| {},
    )
    .await
    .unwrap_or_else(|f| {
        panic!(
            "llama-server did not start: {:?}\n{:#?}",
            f.failure, f.log_tail
        )
    });
    let backend = BackendSpec::OpenAi {
        base_url: format!("{}/v1", server.client().base_url()),
        model: "tiny".into(),
        api_key: None,
    };
    let mut runner = TrialRunner::new(backend, settings(3), sampler(None));
    let facts = runner.spec().model_metadata().await.expect("/v1/models");
    assert_eq!(facts.trained_context, Some(32768));
    let record = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    server.stop().await;
    assert_ne!(record.verdict, Verdict::Failed, "{:?}", record.failure);
    assert_eq!(record.success_rate, 1.0, "{:#?}", record.samples);
    for s in &record.samples {
        // 90 % of 2048 = 1843 tokens, estimated from the calibration: within a few %.
        let n = s.prompt_tokens.unwrap_or(0);
        assert!((1750..=1950).contains(&n), "{s:?}");
        assert_eq!(s.completion_tokens, Some(16));
    }
    assert_no_servers_left();
}

/// A real allocation failure: llama-server under an address-space limit (RLIMIT_AS via
/// a wrapper script), as on a machine without the memory. One malloc arena keeps the
/// address space predictable (glibc reserves 64 MiB per thread arena otherwise, and a
/// crash under pressure is not what this test is about). The small context fits; the
/// large one cannot allocate its compute buffers at load. Measured peaks of address
/// space (VmPeak, `-fa off`): ~190 MiB at 2048, ~600 MiB at 32768; the cap sits between
/// with room on both sides.
#[tokio::test]
async fn allocation_failure_at_load_is_out_of_memory() {
    let _serial = serial().await;
    let real = llama_server();
    let real_dir = real.parent().expect("binary folder").display().to_string();
    let wrapper = tiny_model().with_file_name("memory-capped-llama-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -v 450000\nexport MALLOC_ARENA_MAX=1\nexport LD_LIBRARY_PATH='{real_dir}'\nexec '{}' \"$@\"\n",
            real.display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let spec =
        BackendSpec::LlamaServer(llama_spec(wrapper, &["-fa", "off", "--threads-http", "2"]));
    let mut runner = TrialRunner::new(spec, settings(1), sampler(None));

    let small = runner
        .run(
            1,
            Phase::Context,
            Stage::Verify,
            &config(2048, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_ne!(
        small.verdict,
        Verdict::Failed,
        "2048 must fit under the cap: {:?}\n{:#?}",
        small.failure,
        small.server_log_tail
    );

    let big = runner
        .run(
            2,
            Phase::Context,
            Stage::Verify,
            &config(32768, 1),
            &CancellationToken::new(),
        )
        .await
        .record;
    assert_eq!(big.verdict, Verdict::Failed);
    let failure = big.failure.as_ref().expect("a failure");
    assert_eq!(
        failure.kind,
        FailureKind::OutOfMemory,
        "{failure:?}\n{:#?}",
        big.server_log_tail
    );
    assert!(
        big.server_log_tail
            .iter()
            .any(|l| l.contains("failed to allocate")),
        "{:#?}",
        big.server_log_tail
    );
    assert_no_servers_left();
}
