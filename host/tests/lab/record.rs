//! `ozone lab record` against `ozone tune` on the same machine, generated model and
//! budget: replayed in the lab, `binary-search` runs the trials the real tune ran and
//! reaches its answer, within noise.
//!
//! Two tunes: proposals screened and `best()` verified (the default), and every
//! proposal verified (`ozone.screen_trials: false`); one recording replayed both ways.
//!
//! Tolerance: a real trial near the edge of the budget can land either side of it (the
//! server's resident memory varies by a few hundred KiB run to run), so the replay's
//! context trials must equal the tune's (configuration and stage) up to the first trial
//! whose verdict the tune and the recording disagree on, and the two answers must lie
//! within one step of the profile (512 tokens) of each other, or both be none. Under
//! this budget the limit lies near 6k tokens, below the trained context. Cost: about a
//! minute of recording (screens every 512 tokens of a model trained for 8192, two
//! measurements per repeated point, no ladders) and two tunes of under a minute.

use crate::common::{self, cli};
use crate::quiet_machine_yaml;
use std::path::Path;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::lab::{self, PluginConfig, Profile, Variant};
use ozone::record::{Phase, Stage, TrialConfig, Verdict};
use serde_json::Value;

/// Headroom over the server's footprint at 2048 tokens (the default tiny model: 512
/// bytes of KV cache a token).
const HEADROOM_MB: u64 = 3;
const STEP: u32 = 512;

/// Memory decides here: the neighbours' noise (CV, machine RAM) is set aside, as in the
/// other real-server tests.
const CONFIG: &str = concat!(
    "search_strategy:
  batch_adaptation:
    enabled: false
testing:
  statistical_validation:
    min_samples_per_config: 2
    variance_tolerance: 10.0
",
    quiet_machine_yaml!(),
    "ozone:
  n_predict: 8
",
);

/// `ozone args` in `dir` (arguments first, as these tests read).
fn ozone(args: &[&str], dir: &Path) -> cli::Ozone {
    cli::ozone(dir, args)
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
    let screened = dir.path().join("ozone.yaml");
    std::fs::write(&screened, CONFIG).expect("config");
    let verified = dir.path().join("verified.yaml");
    std::fs::write(&verified, format!("{CONFIG}  screen_trials: false\n")).expect("config");
    // One budget for the tunes and the recording, measured once.
    let budget = common::budget_over_footprint(
        &common::cli_spec(&model),
        &common::cli_first_trial(),
        HEADROOM_MB,
    )
    .to_string();
    let model = model.display().to_string();
    let profile_path = dir.path().join("demo-8k.profile.json");

    // The real tunes first (proposals screened, as by default; and every proposal
    // verified), then the recording: none warms another's caches.
    let screened_run = tune(dir.path(), &model, &screened, &budget, "screened");
    let verified_run = tune(dir.path(), &model, &verified, &budget, "verified");

    let record = ozone(
        &[
            "lab",
            "record",
            &model,
            "--config",
            screened.to_str().expect("utf-8"),
            "--memory-budget-mb",
            &budget,
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
    .run();
    record.ok();
    let mut profile = Profile::load(&profile_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.granularity, STEP);

    for (mode, real, screen_trials) in [
        ("screened", &screened_run, true),
        ("verified", &verified_run, false),
    ] {
        profile.config.ozone.screen_trials = screen_trials;
        let replay = lab::replay_blocking(
            &ozone_sdk_host(),
            &profile,
            "demo-8k",
            &Variant::new("binary-search"),
            &PluginConfig::default(),
            0,
        )
        .expect("runtime");
        assert_eq!(replay.error, None, "{mode}");
        let replayed: Vec<(TrialConfig, Stage, Verdict)> = replay
            .trials
            .iter()
            .filter(|t| t.phase == Phase::Context)
            .map(|t| (t.config.clone(), t.stage, t.verdict))
            .collect();
        let (real_trials, real_answer) = real;
        for (i, (r, p)) in real_trials.iter().zip(&replayed).enumerate() {
            assert_eq!(
                (&r.0, r.1),
                (&p.0, p.1),
                "{mode}: context trial {i}: real {real_trials:?}, replayed {replayed:?}"
            );
            if r.2 != p.2 {
                break; // noise: the runs may part from here
            }
        }
        let lab_answer = replay.limits.as_ref().and_then(|l| l.max_context);
        eprintln!(
            "{mode}: real {real_answer:?} after {} context trials, lab {lab_answer:?} after {}",
            real_trials.len(),
            replayed.len()
        );
        let agree = match (*real_answer, lab_answer) {
            (Some(r), Some(l)) => r.abs_diff(l) <= STEP,
            (r, l) => r == l,
        };
        assert!(
            agree,
            "{mode}: real {real_answer:?}, lab {lab_answer:?}: real {real_trials:?}, \
             replayed {replayed:?}"
        );
    }
}

/// A real tune of `model` under `config`: its context trials in order (configuration,
/// stage, verdict) and the context it published, if any.
#[allow(clippy::type_complexity)]
fn tune(
    dir: &Path,
    model: &str,
    config: &Path,
    budget_mb: &str,
    name: &str,
) -> (Vec<(TrialConfig, Stage, Verdict)>, Option<u32>) {
    let out = dir.join(name).display().to_string();
    let tune = ozone(
        &[
            "tune",
            model,
            "--config",
            config.to_str().expect("utf-8"),
            "--memory-budget-mb",
            budget_mb,
            "--skip-concurrency",
            "--fresh",
            "--json",
            "-o",
            &out,
        ],
        dir,
    )
    .run();
    // 0: a context was published; 1: none was stable (the summary is printed either way).
    assert!(
        matches!(tune.code, Some(0 | 1)),
        "{name}: {}",
        tune.stderr.clone()
    );
    let summary: Value = serde_json::from_str(&tune.stdout)
        .unwrap_or_else(|e| panic!("{name}: no summary JSON ({e}): {}", tune.stderr.clone()));
    let trials = summary["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .filter(|t| t["phase"] == "context")
        .map(|t| {
            (
                serde_json::from_value(t["config"].clone()).expect("config"),
                serde_json::from_value(t["stage"].clone()).expect("stage"),
                serde_json::from_value(t["verdict"].clone()).expect("verdict"),
            )
        })
        .collect();
    let answer = summary["limits"]["max_context"]["value"]
        .as_u64()
        .map(|c| c as u32);
    (trials, answer)
}

/// A plugin host with a cache of its own.
fn ozone_sdk_host() -> ozone::plugin::PluginHost {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-record-cache");
    ozone::plugin::PluginHost::new(Default::default(), Some(cache)).expect("engine")
}

/// A GPU-memory budget the recording could not enforce is refused before anything is
/// measured, as `ozone tune` refuses it: above the GPU's total (a GPU machine; where no
/// GPU is read, CI, the budget is held at load and nothing is refused).
#[test]
fn a_gpu_budget_this_machine_cannot_enforce_is_refused_before_recording() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("demo-4k.gguf");
    write_tiny_model(&model, &TinyModelSpec::default()).expect("model");
    let Some((budget, why)) = common::unenforceable_gpu_budget() else {
        eprintln!("no GPU reading here: no budget is refused before a recording");
        return;
    };
    let profile = dir.path().join("gpu.profile.json");
    let out = ozone(
        &[
            "lab",
            "record",
            model.to_str().expect("utf-8"),
            "--gpu-memory-budget-mb",
            budget,
            "-o",
            profile.to_str().expect("utf-8"),
        ],
        dir.path(),
    )
    .run();
    out.code(cli::BAD_INPUT)
        .error("--gpu-memory-budget-mb")
        .error(why);
    assert!(!profile.exists(), "nothing recorded");
    common::assert_no_servers_left_for(&model);
}
