//! The strategy lab on the shipped profiles (examples/profiles, recorded by real tunes
//! of the demo model): exact replay, interpolation, the no-failure case, misbehaving
//! strategies, and profile validation.

#[path = "plugin_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ozone::lab::{self, Profile, Replay};
use ozone::record::{FailureKind, Phase, TrialConfig, Verdict};
use ozone::tune::Limits;
use ozone_test_artifacts::{GOLDEN_BATCH, LINEAR_SWEEP, MEMORY_MODEL, MISBEHAVING};

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/profiles")
}

/// Every shipped profile, by name.
fn shipped() -> Vec<(String, Profile)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(profiles_dir())
        .expect("examples/profiles")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".profile.json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "shipped profiles: {files:?}");
    files
        .iter()
        .map(|f| {
            let profile = Profile::load(f).unwrap_or_else(|e| panic!("{e}"));
            (Profile::display_name(f), profile)
        })
        .collect()
}

fn profile(name: &str) -> Profile {
    Profile::load(&profiles_dir().join(format!("{name}.profile.json")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn replay(profile: &Profile, strategy: &str) -> Replay {
    lab::replay_blocking(&common::host(), profile, "test", strategy, None).expect("runtime")
}

#[test]
fn replaying_a_profile_with_its_own_strategies_reproduces_the_recorded_run() {
    for (name, profile) in shipped() {
        let strategy = profile.config.ozone.context_strategy.clone();
        let run = replay(&profile, &strategy);
        assert_eq!(run.error, None, "{name}");
        // Profiles recorded before the concurrency plugin drove its phase logged no
        // decision for it: compare the phases the recording has decisions for.
        let recorded_phases: Vec<Phase> = profile.decisions.iter().map(|d| d.phase).collect();
        let decisions: Vec<_> = run
            .decisions
            .iter()
            .filter(|d| recorded_phases.contains(&d.phase))
            .cloned()
            .collect();
        assert_eq!(decisions, profile.decisions, "{name}: decisions");
        // The values; what bound them only where the recording says (older runs
        // logged bare numbers).
        let (replayed, recorded) = (
            run.limits.clone().expect("limits"),
            profile.recorded_limits.clone().expect("recorded limits"),
        );
        let values = |l: &Limits| (l.max_context, l.best_batch, l.max_concurrency);
        assert_eq!(
            values(&replayed),
            values(&recorded),
            "{name}: the recorded run's limits"
        );
        for (ours, theirs) in [
            (&replayed.bounds.max_context, &recorded.bounds.max_context),
            (&replayed.bounds.best_batch, &recorded.bounds.best_batch),
            (
                &replayed.bounds.max_concurrency,
                &recorded.bounds.max_concurrency,
            ),
        ] {
            if theirs.is_some() {
                assert_eq!(ours, theirs, "{name}: what bound a limit");
            }
        }
        assert_eq!(run.interpolated(), 0, "{name}: {:#?}", run.trials);
        // Every trial the replay ran is a recorded one, in the recorded order.
        let replayed: Vec<&TrialConfig> = run.trials.iter().map(|t| &t.config).collect();
        let recorded: Vec<&TrialConfig> = profile.trials.iter().map(|t| &t.config).collect();
        assert_eq!(replayed, recorded, "{name}");
    }
}

#[test]
fn the_shipped_profile_is_what_ozone_lab_profile_extracts_from_its_log() {
    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lab/demo-16k_20261126_133004.jsonl");
    let extracted = Profile::from_log(&log).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(extracted, profile("demo-16k-48"));
    assert!(extracted.trials.iter().all(|t| t.samples.is_empty()));
}

#[test]
fn unmeasured_configurations_are_answered_from_neighbours_and_flagged() {
    let profile = profile("demo-16k-48");
    let base = profile.trials[0].config.clone();
    let at = |ctx| TrialConfig {
        ctx,
        ..base.clone()
    };
    // The context curve: the trials at the context search's batch and concurrency.
    let curve: Vec<_> = profile
        .trials
        .iter()
        .filter(|t| t.config.batch == base.batch && t.config.concurrency == base.concurrency)
        .collect();
    let stable: Vec<_> = curve
        .iter()
        .filter(|t| t.verdict == Verdict::Stable)
        .collect();
    let smallest_failure = curve
        .iter()
        .filter(|t| t.verdict != Verdict::Stable)
        .min_by_key(|t| t.config.ctx)
        .expect("the 48 MiB run hit a failure");

    // Above the smallest failure: that failure, same kind, flagged.
    let above = profile.answer(&at(smallest_failure.config.ctx + 512));
    assert!(above.interpolated.is_some());
    assert_eq!(above.record.verdict, smallest_failure.verdict);
    assert_eq!(
        above.record.failure.as_ref().map(|f| f.kind),
        smallest_failure.failure.as_ref().map(|f| f.kind)
    );

    // Between two stable contexts: stable, memory between theirs, flagged.
    let (lo, hi) = (stable[0], stable[stable.len() - 1]);
    let (lo, hi) = if lo.config.ctx < hi.config.ctx {
        (lo, hi)
    } else {
        (hi, lo)
    };
    assert!(
        hi.config.ctx - lo.config.ctx > 256,
        "two stable contexts apart"
    );
    let mid_ctx = (lo.config.ctx + hi.config.ctx) / 2 / 256 * 256;
    let mid = profile.answer(&at(mid_ctx));
    assert!(mid.interpolated.is_some());
    assert_eq!(mid.record.verdict, Verdict::Stable);
    let rss = mid
        .record
        .peaks
        .process_rss_bytes
        .expect("interpolated RSS");
    let (a, b) = (
        lo.peaks.process_rss_bytes.expect("recorded"),
        hi.peaks.process_rss_bytes.expect("recorded"),
    );
    assert!(
        (a.min(b)..=a.max(b)).contains(&rss),
        "{rss} not between {a} and {b}"
    );

    // A measured configuration is the record itself.
    let measured = profile.answer(&lo.config);
    assert!(measured.interpolated.is_none());
    assert_eq!(&&measured.record, lo);

    // A strategy that walks its own grid gets flagged answers, counted in its row.
    let run = replay(&profile, LINEAR_SWEEP);
    assert_eq!(run.error, None);
    assert!(run.interpolated() > 0);
    assert_eq!(run.row().interpolated, run.interpolated());
    assert!(run
        .trials
        .iter()
        .filter(|t| profile.trials.iter().all(|r| r.config != t.config))
        .all(|t| t.interpolated.is_some()));
}

#[test]
fn a_profile_with_no_failure_gives_a_finite_answer() {
    let mut profile = profile("demo-16k-48");
    profile.trials.retain(|t| t.verdict == Verdict::Stable);
    let trained = profile.model.trained_context.expect("trained context");
    for strategy in [
        "binary-search".to_string(),
        MEMORY_MODEL.to_string(),
        LINEAR_SWEEP.to_string(),
    ] {
        let run = replay(&profile, &strategy);
        assert_eq!(run.error, None, "{strategy}");
        let answer = run.limits.as_ref().and_then(|l| l.max_context);
        assert!(
            answer.is_some_and(|a| a <= trained && a >= 4096),
            "{strategy}: {answer:?} {:#?}",
            run.trials
        );
        assert!(run.trials.iter().all(|t| t.verdict == Verdict::Stable));
    }
    // linear-sweep walks to the trained context: nothing failed on the way.
    let sweep = replay(&profile, LINEAR_SWEEP);
    assert_eq!(sweep.limits.and_then(|l| l.max_context), Some(trained));
}

#[test]
fn a_strategy_that_breaks_its_sandbox_is_reported_and_the_others_complete() {
    let mut profile = profile("demo-16k-44");
    profile
        .config
        .ozone
        .plugin_settings
        .insert("misbehaving".into(), serde_json::json!({"mode": "loop"}));
    let host = common::host();
    let runs: Vec<Replay> = ["binary-search".to_string(), MISBEHAVING.to_string()]
        .iter()
        .map(|s| lab::replay_blocking(&host, &profile, "p", s, None).expect("runtime"))
        .collect();
    let error = runs[1].error.as_deref().expect("the loop is stopped");
    assert!(
        error.contains("misbehaving.wasm") && error.contains("budget"),
        "{error}"
    );
    assert_eq!(runs[0].error, None);
    assert_eq!(
        runs[0].limits.as_ref().and_then(|l| l.max_context),
        profile.true_limit()
    );
    let table = lab::render_table(&runs.iter().map(Replay::row).collect::<Vec<_>>());
    assert!(
        table.contains("ERROR") && table.contains("binary-search"),
        "{table}"
    );
}

#[test]
fn lab_run_exits_non_zero_on_an_erring_strategy_and_still_shows_the_others() {
    let output = Command::new(env!("CARGO_BIN_EXE_ozone"))
        .args(["lab", "run", "--json", "--strategy", "binary-search"])
        .args(["--strategy", MISBEHAVING])
        .args(["--strategy", LINEAR_SWEEP])
        .arg("--profile")
        .arg(profiles_dir().join("demo-16k-56.profile.json"))
        .output()
        .expect("run ozone");
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["error"].is_null() && rows[0]["answer"].is_u64());
    assert!(rows[1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("proposed context 0")));
    assert!(rows[2]["error"].is_null() && rows[2]["answer"].is_u64());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("misbehaving"), "{stderr}");
}

#[test]
fn bad_profiles_and_logs_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.profile.json");
    std::fs::write(&bad, "{}").expect("write");
    let err = Profile::load(&bad).expect_err("not a profile").to_string();
    assert!(err.contains("bad.profile.json"), "{err}");

    // A real log cut before its first trial finished: nothing to replay.
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lab/demo-16k_20261126_133004.jsonl");
    let text = std::fs::read_to_string(full).expect("fixture");
    let head: String = text
        .lines()
        .take_while(|l| !l.contains(r#""event":"trial""#))
        .map(|l| format!("{l}\n"))
        .collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, head).expect("write");
    let err = Profile::from_log(&cut).expect_err("no trials").to_string();
    assert!(
        err.contains("cut.jsonl") && err.contains("no finished trial"),
        "{err}"
    );

    // And the CLI says so with exit code 2.
    let output = Command::new(env!("CARGO_BIN_EXE_ozone"))
        .args(["lab", "run", "--strategy", "binary-search", "--profile"])
        .arg(&bad)
        .output()
        .expect("run ozone");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.profile.json"));
}

#[test]
fn failure_kinds_are_counted_apart() {
    let profile = profile("demo-16k-48");
    let run = replay(&profile, "binary-search");
    let row = run.row();
    let breaches = run
        .trials
        .iter()
        .filter(|t| matches!(t.failure, Some(FailureKind::ThresholdBreach(_))))
        .count();
    assert_eq!(row.breaches, breaches);
    assert!(row.breaches > 0, "the 48 MiB budget was breached");
    let recorded_ms: u64 = profile.trials.iter().map(|t| t.duration_ms).sum();
    assert!((row.simulated_s - recorded_ms as f64 / 1000.0).abs() < 1e-9);
}

#[test]
fn lab_profile_writes_the_shipped_profile_from_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo-16k-48.profile.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ozone"))
        .args(["lab", "profile"])
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/lab/demo-16k_20261126_133004.jsonl"),
        )
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run ozone");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("largest stable context 10240"), "{stdout}");
    let written = std::fs::read_to_string(&out).expect("written");
    let shipped =
        std::fs::read_to_string(profiles_dir().join("demo-16k-48.profile.json")).expect("shipped");
    assert_eq!(written, shipped);
}

#[test]
fn a_batch_strategy_can_be_swapped_in() {
    let profile = profile("demo-32k-56");
    let golden = GOLDEN_BATCH.to_string();
    let run = lab::replay_blocking(
        &common::host(),
        &profile,
        "demo-32k-56",
        "binary-search",
        Some(&golden),
    )
    .expect("runtime");
    assert_eq!(run.error, None);
    assert_eq!(run.batch_strategy, golden);
    assert!(run
        .decisions
        .iter()
        .any(|d| d.phase == ozone::record::Phase::Batch && d.plugin == golden));
    // The context search is the recorded one; only the batch phase differs.
    let context = |ds: &[lab::Decision]| -> Vec<Option<u32>> {
        ds.iter()
            .filter(|d| d.phase == ozone::record::Phase::Context)
            .map(|d| d.proposed)
            .collect()
    };
    assert_eq!(context(&run.decisions), context(&profile.decisions));
    assert_eq!(run.row().batch_strategy, "golden_batch");
}
