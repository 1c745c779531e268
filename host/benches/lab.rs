//! Strategy lab throughput, the comparison on every shipped profile, and a settings sweep.
//!
//! `cargo bench -p ozone --bench lab`
//!
//! Prints, per strategy, how long one full replay takes on a shipped profile (plugin
//! instantiation, context search, batch scaling and concurrency ladder, all answered
//! from the profile) and the replays per second that makes; the comparison table of
//! binary-search, memory-fit, memory-model and linear-sweep on every shipped profile over 20 seeds
//! (`ozone lab run --repeats 20`); and the time of a sweep of a few hundred settings
//! variants of linear-sweep over every shipped profile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ozone::lab::{self, PluginConfig, Profile, Replay, Variant};
use ozone::plugin::{PluginHost, SandboxLimits};

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
        "memory-fit".to_string(),
        ozone_test_artifacts::MEMORY_MODEL.to_string(),
        ozone_test_artifacts::LINEAR_SWEEP.to_string(),
    ];
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-bench-cache");
    let host = PluginHost::new(SandboxLimits::default(), Some(cache)).expect("plugin host");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let user = PluginConfig::default();
    let replay = |profile: &Profile, name: &str, variant: &Variant, seed: u64| -> Replay {
        runtime.block_on(lab::replay(&host, profile, name, variant, &user, seed))
    };

    // Warm up: compiles each component once (then it comes from the cache).
    for strategy in &strategies {
        let (name, profile) = &profiles[0];
        replay(profile, name, &Variant::new(strategy.as_str()), 0);
    }

    let (name, profile) = &profiles[profiles.len() / 2];
    println!("full replays on profile {name} (load + context + batch + concurrency):");
    for strategy in &strategies {
        let variant = Variant::new(strategy.as_str());
        let started = Instant::now();
        let mut runs = 0u64;
        let mut trials = 0;
        while started.elapsed() < Duration::from_secs(1) || runs < 20 {
            let r = replay(profile, name, &variant, runs);
            assert!(r.error.is_none(), "{strategy}: {:?}", r.error);
            trials = r.trials.len();
            runs += 1;
        }
        let per_run = started.elapsed() / runs as u32;
        println!(
            "  {:<14} {:>7.3} ms per replay ({trials} trials)  {:>6.0} replays/s",
            short(strategy),
            per_run.as_secs_f64() * 1e3,
            1.0 / per_run.as_secs_f64()
        );
    }

    let started = Instant::now();
    let mut replays = Vec::new();
    for (name, profile) in &profiles {
        for strategy in &strategies {
            for seed in 0..20 {
                replays.push(replay(
                    profile,
                    name,
                    &Variant::new(strategy.as_str()),
                    seed,
                ));
            }
        }
    }
    println!(
        "\ncomparison, 20 seeds each ({} replays in {:.2} s):\n{}",
        replays.len(),
        started.elapsed().as_secs_f64(),
        lab::render_table(&lab::rows(&replays))
    );

    // A sweep: linear-sweep's step over every multiple of 256 from 512 to 8192, with and
    // without refining, on every profile.
    let variants: Vec<Variant> = (2..=32)
        .flat_map(|k| {
            [true, false].map(|refine| Variant {
                settings: Some(serde_json::json!({"step": k * 256, "refine": refine})),
                ..Variant::new(ozone_test_artifacts::LINEAR_SWEEP)
            })
        })
        .collect();
    let started = Instant::now();
    let mut count = 0;
    for (name, profile) in &profiles {
        for variant in &variants {
            replay(profile, name, variant, 0);
            count += 1;
        }
    }
    println!(
        "settings sweep: {} variants of linear_sweep × {} profiles = {count} replays in {:.2} s",
        variants.len(),
        profiles.len(),
        started.elapsed().as_secs_f64()
    );
}

fn short(strategy: &str) -> String {
    Path::new(strategy)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| strategy.to_string())
}
