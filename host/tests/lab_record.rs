//! `ozone lab record` against `ozone tune` on the same machine, generated model and
//! budget: replayed in the lab, `binary-search` runs the trials the real tune ran and
//! reaches its answer, within noise.
//!
//! Tolerance: a real trial near the edge of the budget can land either side of it (the
//! server's resident memory varies by a few hundred KiB run to run), so the replay's
//! context trials must equal the tune's up to the first trial whose verdict the tune
//! and the recording disagree on, and the two answers must lie within one step of the
//! profile (512 tokens) of each other. Cost: about a minute of recording (screens every
//! 512 tokens of a model trained for 8192, two measurements per repeated point, no
//! ladders) and a tune of six trials.

mod common;

use std::path::Path;
use std::process::Command;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::lab::{self, PluginConfig, Profile, Variant};
use ozone::record::{Phase, TrialConfig, Verdict};
use serde_json::Value;

const BUDGET_MB: &str = "38";
const STEP: u32 = 512;

/// Memory decides here: the neighbours' noise (CV, machine RAM) is set aside, as in the
/// other real-server tests.
const CONFIG: &str = "testing:
  statistical_validation:
    min_samples_per_config: 2
    variance_tolerance: 10.0
hardware_monitoring:
  safety_thresholds:
    max_ram_percent: 100
    max_cpu_percent: 100
  resource_headroom:
    ram_reserve_mb: 0
search_strategy:
  batch_adaptation:
    enabled: false
learning_system:
  configuration_learning:
    hardware_profiles:
      store_results: false
      reuse_learned_configs: false
ozone:
  n_predict: 8
";

fn ozone(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ozone"));
    cmd.args(args)
        .current_dir(dir)
        .env("LLAMA_SERVER", common::llama_server())
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("HOME", dir);
    cmd
}

#[test]
fn a_recorded_profile_replays_the_real_tune_it_stands_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("demo-8k.gguf");
    write_tiny_model(
        &model,
        &TinyModelSpec {
            trained_context: 8192,
            ..TinyModelSpec::default()
        },
    )
    .expect("model");
    let config = dir.path().join("ozone.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let (model, config) = (model.display().to_string(), config.display().to_string());
    let profile_path = dir.path().join("demo-8k.profile.json");

    // The real tune first, then the recording: neither warms the other's caches.
    let out = dir.path().join("tune").display().to_string();
    let tune = ozone(
        &[
            "tune",
            &model,
            "--config",
            &config,
            "--memory-budget-mb",
            BUDGET_MB,
            "--skip-concurrency",
            "--fresh",
            "--json",
            "-o",
            &out,
        ],
        dir.path(),
    )
    .output()
    .expect("ozone tune");
    assert!(
        tune.status.success(),
        "{}",
        String::from_utf8_lossy(&tune.stderr)
    );
    let summary: Value = serde_json::from_slice(&tune.stdout).expect("summary JSON");

    let record = ozone(
        &[
            "lab",
            "record",
            &model,
            "--config",
            &config,
            "--memory-budget-mb",
            BUDGET_MB,
            "--step",
            "512",
            "--repeats",
            "2",
            "--skip-batch",
            "--skip-concurrency",
            "-o",
            profile_path.to_str().expect("utf-8"),
        ],
        dir.path(),
    )
    .output()
    .expect("ozone lab record");
    assert!(
        record.status.success(),
        "{}",
        String::from_utf8_lossy(&record.stderr)
    );
    let profile = Profile::load(&profile_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.granularity, STEP);

    let replay = lab::replay_blocking(
        &ozone_sdk_host(),
        &profile,
        "demo-8k",
        &Variant::new("binary-search"),
        &PluginConfig::default(),
        0,
    )
    .expect("runtime");
    assert_eq!(replay.error, None);

    // The tune's context trials, in order, with their verdicts.
    let real: Vec<(TrialConfig, Verdict)> = summary["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .filter(|t| t["phase"] == "context")
        .map(|t| {
            (
                serde_json::from_value(t["config"].clone()).expect("config"),
                serde_json::from_value(t["verdict"].clone()).expect("verdict"),
            )
        })
        .collect();
    let replayed: Vec<(TrialConfig, Verdict)> = replay
        .trials
        .iter()
        .filter(|t| t.phase == Phase::Context)
        .map(|t| (t.config.clone(), t.verdict))
        .collect();
    for (i, (r, p)) in real.iter().zip(&replayed).enumerate() {
        assert_eq!(
            r.0, p.0,
            "context trial {i}: real {real:?}, replayed {replayed:?}"
        );
        if r.1 != p.1 {
            break; // noise: the runs may part from here
        }
    }
    let real_answer = summary["limits"]["max_context"]["value"]
        .as_u64()
        .or_else(|| summary["limits"]["max_context"].as_u64())
        .expect("the tune found a context") as u32;
    let lab_answer = replay
        .limits
        .as_ref()
        .and_then(|l| l.max_context)
        .expect("the replay found a context");
    assert!(
        real_answer.abs_diff(lab_answer) <= STEP,
        "real {real_answer}, lab {lab_answer}: real {real:?}, replayed {replayed:?}"
    );
}

/// A plugin host with a cache of its own.
fn ozone_sdk_host() -> ozone::plugin::PluginHost {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-record-cache");
    ozone::plugin::PluginHost::new(Default::default(), Some(cache)).expect("engine")
}
