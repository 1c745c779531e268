//! `ozone plugins list` / `ozone plugins check` as a user runs them.

use crate::common::cli::{self, Outcome, BAD_INPUT, OK, PLUGIN};
use ozone_test_artifacts::{GOLDEN_BATCH, LEGACY_V0_2, LINEAR_SWEEP, MEMORY_MODEL, MISBEHAVING};

/// `ozone args` in a folder of its own.
fn ozone(args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    cli::ozone(dir.path(), args).run()
}

#[test]
fn list_shows_the_builtins_with_world_and_version_and_no_test_guests() {
    let run = ozone(&["plugins", "list"]);
    run.code(OK);
    let out = &run.stdout;
    assert!(
        out.contains("binary-search") && out.contains("context-strategy"),
        "{out}"
    );
    assert!(out.contains("memory-fit"), "{out}");
    assert!(
        out.contains("batch-scaler") && out.contains("batch-strategy"),
        "{out}"
    );
    assert!(
        out.contains("concurrency-ladder") && out.contains("concurrency-strategy"),
        "{out}"
    );
    assert!(out.contains("0.3.0"), "{out}");
    assert!(
        out.contains("variant-frontier") && out.contains("variant-strategy"),
        "{out}"
    );
    assert!(
        out.contains("offload-bisect") && out.contains("offload-strategy"),
        "{out}"
    );
    assert!(!out.contains("misbehaving"), "{out}");
}

#[test]
fn check_drives_a_plugin_file_and_prints_its_decisions() {
    let run = ozone(&["plugins", "check", MEMORY_MODEL]);
    run.code(OK);
    let out = &run.stdout;
    assert!(out.contains("context-strategy plugin, API 0.3.0"), "{out}");
    assert!(out.contains("trial  2: context   99840 → stable"), "{out}");
    assert!(out.contains("best context: 99840"), "{out}");
}

#[test]
fn check_reports_a_misbehaving_plugin_with_exit_code_4() {
    let run = ozone(&[
        "plugins",
        "check",
        MISBEHAVING,
        "--settings",
        r#"{"mode": "loop"}"#,
    ]);
    run.code(PLUGIN);
    let (_, err) = (&run.stdout, &run.stderr);
    assert!(err.contains("exceeded its per-call budget"), "{err}");
}

#[test]
fn check_refuses_a_file_that_is_no_component_with_exit_code_2() {
    let run = ozone(&["plugins", "check", "Cargo.toml.wasm"]);
    run.code(BAD_INPUT);
    let (_, err) = (&run.stdout, &run.stderr);
    assert!(err.contains("cannot read plugin Cargo.toml.wasm"), "{err}");
}

/// golden-batch once proposed 416 against the host's 256: it now takes its bounds from
/// the host, so its own README's command passes — as every example's does.
#[test]
fn check_passes_every_example_within_the_hosts_bounds() {
    let run = ozone(&["plugins", "check", GOLDEN_BATCH]);
    run.code(OK);
    let out = &run.stdout;
    assert!(
        out.contains("batch bounds 1..=256, micro-batch up to 512, initial 32/32"),
        "{out}"
    );
    assert!(out.contains("best batch: 128/128"), "{out}");
    for example in [MEMORY_MODEL, LINEAR_SWEEP] {
        let run = ozone(&["plugins", "check", example]);
        run.code(OK);
        let out = &run.stdout;
        assert!(out.contains("best context: "), "{out}");
    }
}

#[test]
fn check_drives_a_concurrency_plugin_through_the_ladder() {
    let run = ozone(&["plugins", "check", "concurrency-ladder"]);
    run.code(OK);
    let out = &run.stdout;
    assert!(
        out.contains("concurrency-strategy plugin, API 0.3.0"),
        "{out}"
    );
    for (n, level) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
        assert!(
            out.contains(&format!("trial  {n}: concurrency {level:>7} → stable")),
            "{out}"
        );
    }
    assert!(out.contains("best concurrency: 8"), "{out}");
}

/// The ladder's decision table: p95 TTFT 1000 ms at 4 streams, 2000 at 8, 1500 at 6,
/// 1750 at 7: doubling misses at 8, bisection ends at 6.
#[test]
fn check_hands_a_concurrency_plugin_the_objective() {
    let run = ozone(&[
        "plugins",
        "check",
        "concurrency-ladder",
        "--slo",
        "ttft-p95=1.6s",
    ]);
    run.code(OK);
    let out = &run.stdout;
    assert!(out.contains("SLO ttft-p95=1600ms"), "{out}");
    let proposed: Vec<u32> = out
        .lines()
        .filter_map(|l| l.split("concurrency ").nth(1)?.split('→').next())
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert_eq!(proposed, [1, 2, 4, 8, 6, 7], "{out}");
    assert!(out.contains("SLO missed"), "{out}");
    assert!(out.contains("best concurrency: 6"), "{out}");

    let run = ozone(&["plugins", "check", "concurrency-ladder", "--slo", "p95=1s"]);
    run.code(BAD_INPUT);
    let (_, err) = (&run.stdout, &run.stderr);
    assert!(err.contains("unknown metric `p95`"), "{err}");
}

#[test]
fn check_refuses_a_plugin_built_for_api_0_2_0_with_exit_code_2() {
    let run = ozone(&["plugins", "check", LEGACY_V0_2]);
    run.code(BAD_INPUT);
    let (_, err) = (&run.stdout, &run.stderr);
    assert!(
        err.contains("is built for plugin API 0.2.0; this ozone speaks 0.3.0")
            && err.contains("update its ozone-sdk dependency to 0.3 and rebuild it"),
        "{err}"
    );
}

#[test]
fn check_drives_variant_and_offload_plugins_on_simulated_machines() {
    let run = ozone(&["plugins", "check", "variant-frontier"]);
    run.code(OK);
    let out = &run.stdout;
    assert!(out.contains("variant-strategy plugin, API 0.3.0"), "{out}");
    assert!(
        out.contains("variant  1: kv f16/f16 fa auto → max context"),
        "{out}"
    );
    assert!(out.contains("KLD"), "{out}");
    let run = ozone(&["plugins", "check", "offload-bisect"]);
    run.code(OK);
    let out = &run.stdout;
    assert!(out.contains("trial  1: offload ngl 49 cpu-moe 24"), "{out}");
    assert!(out.contains("best offload: ngl 49 cpu-moe 18"), "{out}");
}

#[test]
fn check_takes_the_sandbox_and_settings_of_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ozone.yaml");
    let config = config.to_str().expect("utf-8 path");
    // Too little fuel for even a built-in: the error names the key to raise.
    std::fs::write(config, "ozone:\n  sandbox:\n    fuel_per_call: 1000\n").expect("write");
    let run = ozone(&["plugins", "check", "binary-search", "--config", config]);
    run.code(PLUGIN);
    let (out, err) = (&run.stdout, &run.stderr);
    assert!(out.contains("sandbox 1000 fuel per call"), "{out}");
    assert!(err.contains("raise ozone.sandbox.fuel_per_call"), "{err}");
    // Raised, and the plugin's settings from the same file.
    std::fs::write(
        config,
        "ozone:\n  sandbox:\n    fuel_per_call: 200000000\n  plugin_settings:\n    \
         linear_sweep:\n      step: 8192\n      refine: false\n",
    )
    .expect("write");
    let run = ozone(&["plugins", "check", LINEAR_SWEEP, "--config", config]);
    run.code(OK);
    let out = &run.stdout;
    assert!(out.contains("trial  1: context    8192"), "{out}");
    assert!(out.contains("best context: 98304"), "{out}");
}

#[test]
fn new_refuses_a_bad_name_and_a_folder_in_use_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::write(target.join("notes.txt"), "mine").expect("write");
    let target = target.to_str().expect("utf-8 path");
    let run = ozone(&["plugins", "new", "fine", "--kind", "batch", "--dir", target]);
    run.code(BAD_INPUT);
    let (_, err) = (&run.stdout, &run.stderr);
    assert!(err.contains("already exists"), "{err}");
    let run = ozone(&["plugins", "new", "Bad Name", "--kind", "context"]);
    run.code(BAD_INPUT);
    let (_, err) = (&run.stdout, &run.stderr);
    assert!(err.contains("lowercase"), "{err}");
}
