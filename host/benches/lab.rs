//! Strategy lab throughput and the comparison on every shipped profile.
//!
//! `cargo bench -p ozone --bench lab`
//!
//! Prints, per strategy, how long one full replay takes on a shipped profile (plugin
//! instantiation, context search, batch scaling and concurrency ladder, all answered
//! from the profile) and the evaluations per second that makes; then the comparison
//! table of binary-search, memory-model and linear-sweep on every shipped profile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ozone::lab::{self, Profile};
use ozone::plugin::{self, ContextBounds, PluginHost, PluginRef, SandboxLimits};
use ozone::tune::CONTEXT_GRANULARITY;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/profiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/profiles")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".profile.json"))
        .collect();
    files.sort();
    let profiles: Vec<(String, Profile)> = files
        .iter()
        .map(|f| {
            let profile = Profile::load(f).unwrap_or_else(|e| panic!("{e}"));
            (Profile::display_name(f), profile)
        })
        .collect();
    let strategies = [
        "binary-search".to_string(),
        ozone_test_artifacts::MEMORY_MODEL.to_string(),
        ozone_test_artifacts::LINEAR_SWEEP.to_string(),
    ];
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-bench-cache");
    let host = PluginHost::new(SandboxLimits::default(), Some(cache)).expect("plugin host");

    // Warm up: compiles each component once (then it comes from the cache).
    for strategy in &strategies {
        let (name, profile) = &profiles[0];
        lab::replay_blocking(&host, profile, name, strategy, None).expect("runtime");
    }

    let (name, profile) = profiles
        .iter()
        .find(|(n, _)| n == "demo-16k-48")
        .unwrap_or(&profiles[0]);
    println!("full replays on profile {name} (load + context + batch + concurrency):");
    for strategy in &strategies {
        let (per_run, trials) = time_replays(&host, profile, name, strategy);
        let load = time_load(&host, profile, strategy);
        println!(
            "  {:<14} {:>7.3} ms per full search ({trials} trials; loading the plugin {:.3} ms)  {:>6.0} evaluations/s",
            short(strategy),
            per_run.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            1.0 / per_run.as_secs_f64()
        );
    }

    let mut rows = Vec::new();
    for (name, profile) in &profiles {
        for strategy in &strategies {
            let replay =
                lab::replay_blocking(&host, profile, name, strategy, None).expect("runtime");
            rows.push(replay.row());
        }
    }
    println!("\n{}", lab::render_table(&rows));
}

/// Mean time of one full replay, over at least 1 s of runs.
fn time_replays(
    host: &PluginHost,
    profile: &Profile,
    name: &str,
    strategy: &str,
) -> (Duration, usize) {
    let started = Instant::now();
    let mut runs = 0u32;
    let mut trials = 0;
    while started.elapsed() < Duration::from_secs(1) || runs < 20 {
        let replay = lab::replay_blocking(host, profile, name, strategy, None).expect("runtime");
        assert!(replay.error.is_none(), "{strategy}: {:?}", replay.error);
        trials = replay.trials.len();
        runs += 1;
    }
    (started.elapsed() / runs, trials)
}

/// Mean time to instantiate the context plugin alone (from the compiled cache), the
/// fixed part of every replay.
fn time_load(host: &PluginHost, profile: &Profile, strategy: &str) -> Duration {
    let plugin: PluginRef = strategy.parse().expect("plugin ref");
    let trained = profile.model.trained_context.expect("trained context");
    let bounds = ContextBounds::new(
        profile.config.ozone.min_context,
        trained,
        CONTEXT_GRANULARITY,
    );
    let model = plugin::model_facts(&profile.model, bounds, None);
    let hardware = plugin::hardware_facts(&profile.hardware, &profile.thresholds());
    let runs = 50;
    let started = Instant::now();
    for _ in 0..runs {
        host.load_context(&plugin, "{}", &hardware, &model)
            .expect("load");
    }
    started.elapsed() / runs
}

fn short(strategy: &str) -> String {
    Path::new(strategy)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| strategy.to_string())
}
