use std::path::{Path, PathBuf};

use super::*;

const EXAMPLE: &str = include_str!("../../ozone.example.yaml");

fn parse_text(text: &str) -> Result<LoadedConfig, ConfigError> {
    parse(text, Path::new("ozone.yaml"))
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.search_strategy.initial_context_probe, 65536);
    assert_eq!(c.search_strategy.binary_search_factor, 1.3);
    assert_eq!(c.search_strategy.max_binary_iterations, 7);
    let b = &c.search_strategy.batch_adaptation;
    assert_eq!(
        (
            b.initial_batch_large,
            b.initial_batch_medium,
            b.initial_batch_small
        ),
        (16, 32, 64)
    );
    assert_eq!((b.scale_up_factor, b.max_batch), (2.0, 256));
    assert_eq!(
        c.preset_categories.balanced.target_context_range,
        [8192, 12288]
    );
    assert_eq!(c.preset_categories.fast_response.target_context_min, 4096);
    assert_eq!(c.testing.concurrency_progression.levels, vec![1, 2, 4, 8]);
    assert_eq!(
        c.hardware_monitoring.peak_detection.sampling_interval_ms,
        100
    );
    assert_eq!(c.ozone.min_context, 2048);
    // The converters hand over the same defaults as the skeleton types carry.
    assert_eq!(c.thresholds(), crate::guard::Thresholds::default());
    assert_eq!(c.trial_settings(), crate::trial::TrialSettings::default());
    assert!(c.reuse_learned_configs());
    assert_eq!(c.sampling_interval(), std::time::Duration::from_millis(100));
}

#[test]
fn example_file_in_the_original_layout_loads_to_the_defaults_without_warnings() {
    let loaded = parse_text(EXAMPLE).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let mut expected = Config::default();
    // The unused sections are kept as written; everything else equals the defaults.
    let c = &loaded.config;
    expected.objectives = c.objectives.clone();
    expected.ai_guidance = c.ai_guidance.clone();
    expected.model_intelligence = c.model_intelligence.clone();
    expected.fine_tuning = c.fine_tuning.clone();
    expected.quality_assurance = c.quality_assurance.clone();
    expected.deployment = c.deployment.clone();
    expected.hardware_monitoring.gpu_handling = c.hardware_monitoring.gpu_handling.clone();
    expected.learning_system.prediction_model = c.learning_system.prediction_model.clone();
    expected.learning_system.auto_improvement = c.learning_system.auto_improvement.clone();
    assert!(c.objectives.is_some() && c.hardware_monitoring.gpu_handling.is_some());
    assert_eq!(c, &expected);
}

#[test]
fn effective_config_round_trips_through_yaml() {
    let mut loaded = parse_text(EXAMPLE).unwrap();
    loaded
        .set_override("ozone.process_memory_budget_mb", 1536, "--memory-budget")
        .unwrap();
    let text = serde_yaml::to_string(&loaded.config).unwrap();
    let again = parse_text(&text).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.config, loaded.config);
}

#[test]
fn original_file_values_are_read() {
    let text = "\
---
# the original starts with a document marker and has emoji comments 🎯
search_strategy:
  context_discovery: binary_search
  initial_context_probe: 32768
  batch_adaptation:
    max_batch: 512
testing:
  concurrency_progression:
    levels: [1, 3, 9]
model_intelligence:
  size_categories:
    large: { min_params: 20e9, context_start: 4096 }
";
    let loaded = parse_text(text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.search_strategy.initial_context_probe, 32768);
    assert_eq!(
        loaded.config.search_strategy.batch_adaptation.max_batch,
        512
    );
    assert_eq!(
        loaded.config.trial_settings().concurrency_levels,
        vec![1, 3, 9]
    );
    // Untouched keys keep their defaults.
    assert_eq!(loaded.config.search_strategy.binary_search_factor, 1.3);
}

#[test]
fn empty_file_means_defaults() {
    let loaded = parse_text("# nothing but a comment\n").unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.provenance("ozone.min_context"), Provenance::Default);
}

#[test]
fn unknown_keys_warn_with_their_path_and_position() {
    let text = "\
search_strategy:
  initial_context_probe: 4096
  turbo_mode: true
ozone:
  sandbox:
    fuel: 1000000
  plugin_settings:
    binary-search: { anything: 1 }
mystery_section:
  a: 1
";
    let loaded = parse_text(text).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "ozone.yaml:3:15: unknown key `search_strategy.turbo_mode` ignored".to_string(),
            "ozone.yaml:6:11: unknown key `ozone.sandbox.fuel` ignored".to_string(),
            "ozone.yaml:9:1: unknown key `mystery_section` ignored".to_string(),
        ]
    );
    assert_eq!(loaded.config.search_strategy.initial_context_probe, 4096);
}

#[test]
fn wrong_type_is_an_error_with_line_and_column() {
    let text = "\
search_strategy:
  initial_context_probe: 65536
  max_binary_iterations: seven
";
    let err = parse_text(text).unwrap_err();
    assert_eq!(err.position(), Some((3, 26)), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("ozone.yaml:3:26: "), "{msg}");
    assert!(msg.contains("max_binary_iterations"), "{msg}");
    assert!(!msg.contains("at line"), "{msg}");
}

#[test]
fn negative_reserve_is_a_type_error_with_position() {
    let text = "hardware_monitoring:\n  resource_headroom:\n    ram_reserve_mb: -4096\n";
    let err = parse_text(text).unwrap_err();
    assert_eq!(err.position(), Some((3, 21)), "{err}");
}

#[test]
fn malformed_yaml_is_an_error_with_position() {
    let text = "testing:\n  levels: [1, 2\n  other: 3\n";
    let err = parse_text(text).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.position().is_some());
}

#[test]
fn out_of_range_values_point_at_their_key() {
    let cases: &[(&str, &str, (usize, usize))] = &[
        (
            "hardware_monitoring:\n  safety_thresholds:\n    max_vram_percent: 120\n",
            "hardware_monitoring.safety_thresholds.max_vram_percent",
            (3, 23),
        ),
        (
            "ozone:\n  min_context: 1024\n  fill_ratio: 1.5   # too much\n",
            "ozone.fill_ratio",
            (3, 15),
        ),
        (
            "preset_categories:\n  balanced:\n    throughput_weight: -0.1\n",
            "preset_categories.balanced.throughput_weight",
            (3, 24),
        ),
        (
            // min > max: only max is written, so the error points at it.
            "testing:\n  adaptive_timeouts:\n    max_timeout: 10\n",
            "testing.adaptive_timeouts.min_timeout",
            (3, 18),
        ),
        (
            "preset_categories:\n  balanced:\n    target_context_range: [12288, 8192]\n",
            "preset_categories.balanced.target_context_range",
            (3, 27),
        ),
        (
            "testing:\n  statistical_validation:\n    confidence_threshold: 85\n",
            "testing.statistical_validation.confidence_threshold",
            (3, 27),
        ),
        (
            "ozone:\n  gpu_memory_budget_mb: 0\n",
            "ozone.gpu_memory_budget_mb",
            (2, 25),
        ),
    ];
    for (text, key, pos) in cases {
        let err = parse_text(text).unwrap_err();
        match &err {
            ConfigError::OutOfRange { key: k, .. } => assert_eq!(k, key, "{text}"),
            other => panic!("expected out of range for {key}, got {other}"),
        }
        assert_eq!(err.position(), Some(*pos), "{key}: {err}");
    }
}

#[test]
fn the_gpu_memory_budget_reaches_the_guard_from_file_or_flag() {
    let mut loaded = parse_text("ozone:\n  gpu_memory_budget_mb: 40960\n").unwrap();
    assert_eq!(loaded.config.thresholds().gpu_memory_budget_mb, Some(40960));
    assert_eq!(Config::default().thresholds().gpu_memory_budget_mb, None);
    loaded
        .set_override("ozone.gpu_memory_budget_mb", 8192, "--gpu-memory-budget-mb")
        .unwrap();
    assert_eq!(loaded.config.thresholds().gpu_memory_budget_mb, Some(8192));
    assert_eq!(
        loaded.provenance("ozone.gpu_memory_budget_mb"),
        Provenance::Flag("--gpu-memory-budget-mb".into())
    );
    let err = loaded
        .set_override("ozone.gpu_memory_budget_mb", 0, "--gpu-memory-budget-mb")
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("--gpu-memory-budget-mb") && message.contains("at least 1"),
        "{message}"
    );
}

#[test]
fn overrides_record_their_flag_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ozone.yaml");
    std::fs::write(&file, "ozone:\n  min_context: 4096\n  n_predict: 32\n").unwrap();
    let mut loaded = load(Some(&file)).unwrap();
    loaded
        .set_override("ozone.n_predict", 16, "--n-predict")
        .unwrap();
    assert_eq!(loaded.config.ozone.n_predict, 16);
    assert_eq!(
        loaded.provenance("ozone.n_predict"),
        Provenance::Flag("--n-predict".into())
    );
    assert_eq!(
        loaded.provenance("ozone.min_context"),
        Provenance::File(file.clone())
    );
    assert_eq!(loaded.provenance("ozone.fill_ratio"), Provenance::Default);

    let wrong_type = loaded
        .set_override("ozone.n_predict", "many", "--n-predict")
        .unwrap_err();
    assert!(
        wrong_type.to_string().starts_with("--n-predict: "),
        "{wrong_type}"
    );
    let out_of_range = loaded
        .set_override("ozone.fill_ratio", 2.0, "--fill-ratio")
        .unwrap_err();
    assert!(
        out_of_range.to_string().contains("fill_ratio"),
        "{out_of_range}"
    );
    let unknown = loaded.set_override("ozone.nope", 1, "--nope").unwrap_err();
    assert!(unknown.to_string().contains("ozone.nope"), "{unknown}");
    // Failed overrides change nothing.
    assert_eq!(loaded.config.ozone.fill_ratio, 0.9);
}

#[test]
fn entries_carry_provenance_and_usage() {
    let mut loaded = parse_text(EXAMPLE).unwrap();
    loaded
        .set_override("ozone.min_context", 1024, "--min-context")
        .unwrap();
    let entries = loaded.entries();
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap().clone();
    let probe = get("search_strategy.initial_context_probe");
    assert_eq!(
        probe.provenance,
        Provenance::File(PathBuf::from("ozone.yaml"))
    );
    assert_eq!(probe.usage, Usage::Used);
    assert_eq!(probe.value, serde_json::json!(65536));
    assert_eq!(
        get("ozone.min_context").provenance,
        Provenance::Flag("--min-context".into())
    );
    assert_eq!(get("objectives.ttft_priority").usage, Usage::NotUsed);
    assert!(matches!(
        get("preset_categories.max_context.target_context_percentile").usage,
        Usage::Informational(_)
    ));
    // The commented-out budget is not in the file: it is a default.
    assert_eq!(
        get("ozone.process_memory_budget_mb").provenance,
        Provenance::Default
    );
}

#[test]
fn search_order_prefers_explicit_then_first_existing_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.yaml");
    let user = dir.path().join("user.yaml");
    std::fs::write(&user, "ozone:\n  n_predict: 8\n").unwrap();
    let missing = dir.path().join("missing.yaml");

    let none = load_searching(None, std::slice::from_ref(&missing)).unwrap();
    assert_eq!(none.source, None);
    assert_eq!(none.config, Config::default());

    let from_user = load_searching(None, &[local.clone(), user.clone()]).unwrap();
    assert_eq!(from_user.source.as_deref(), Some(user.as_path()));
    assert_eq!(from_user.config.ozone.n_predict, 8);

    std::fs::write(&local, "ozone:\n  n_predict: 4\n").unwrap();
    let from_local = load_searching(None, &[local.clone(), user.clone()]).unwrap();
    assert_eq!(from_local.config.ozone.n_predict, 4);

    let explicit_missing = load_searching(Some(&missing), &[local]).unwrap_err();
    assert!(matches!(explicit_missing, ConfigError::Read { .. }));
    assert!(explicit_missing.to_string().contains("missing.yaml"));
}

#[test]
fn plugin_settings_merge_over_the_original_keys() {
    let text = "\
search_strategy:
  initial_context_probe: 16384
ozone:
  context_strategy: ./plugins/memory-model.wasm
  plugin_settings:
    memory-model:
      initial_context_probe: 8192
      safety: 0.8
    batch-scaler:
      max_batch: 64
";
    let loaded = parse_text(text).unwrap();
    let ctx: serde_json::Value =
        serde_json::from_str(&loaded.context_plugin_settings_json()).unwrap();
    assert_eq!(ctx["initial_context_probe"], 8192);
    assert_eq!(ctx["safety"], 0.8);
    assert_eq!(ctx["binary_search_factor"], 1.3);
    assert_eq!(ctx["context_discovery"], "binary_search");
    assert_eq!(ctx["min_context"], 2048);
    let batch: serde_json::Value =
        serde_json::from_str(&loaded.batch_plugin_settings_json()).unwrap();
    // The plugin's own key passes through; the host's batch bounds are not settings.
    assert_eq!(batch["max_batch"], 64);
    assert_eq!(batch["scale_up_factor"], 2.0);
    assert!(batch.get("initial_batch_small").is_none());
    assert_eq!(plugin_name("binary-search"), "binary-search");
    // Files by PluginRef's rule: a `.wasm` name, or any path.
    assert_eq!(plugin_name("./strategies/my-search.wasm"), "my-search");
    assert_eq!(plugin_name("strategies/my-search"), "my-search");
}

#[test]
fn positions_are_dropped_from_messages() {
    assert_eq!(
        strip_location("did not find expected ',' or ']' at line 3 column 4, while parsing a flow sequence at line 2 column 11"),
        "did not find expected ',' or ']', while parsing a flow sequence"
    );
    assert_eq!(
        strip_location("x: invalid type at line 2 column 26"),
        "x: invalid type"
    );
    assert_eq!(
        strip_location("look at line of sight"),
        "look at line of sight"
    );
}

#[test]
fn unused_sections_with_odd_keys_still_serialise_to_json() {
    let text =
        "model_intelligence:\n  1: one\n  ? [a, b]\n  : pair\n  inf: .inf\n  tagged: !custom 3\n";
    let mut loaded = parse_text(text).unwrap();
    let json = serde_json::to_value(&loaded.config).unwrap();
    assert_eq!(json["model_intelligence"]["1"], "one");
    assert_eq!(json["model_intelligence"]["inf"], serde_json::Value::Null);
    assert_eq!(json["model_intelligence"]["tagged"], 3);
    // Overrides go through JSON too.
    loaded
        .set_override("ozone.n_predict", 8, "--n-predict")
        .unwrap();
}

#[test]
fn the_objective_and_the_concurrency_keys_are_read_and_handed_on() {
    let text = "\
testing:
  concurrency_progression:
    levels: [1, 3, 9]
    max_concurrency: 16
    requests_per_stream: 2
ozone:
  concurrency_strategy: ./plugins/my-ladder.wasm
  slo: ttft-p95=2s, decode-min=10
  plugin_settings:
    my-ladder:
      step: 3
";
    let loaded = parse_text(text).unwrap();
    let c = &loaded.config;
    assert_eq!(slo_text(&c.ozone.slo), "ttft-p95=2000ms,decode-min=10tok/s");
    assert_eq!(c.testing.concurrency_progression.max_concurrency, 16);
    assert_eq!(c.trial_settings().requests_per_stream, 2);
    let settings: serde_json::Value =
        serde_json::from_str(&c.concurrency_plugin_settings_json()).unwrap();
    assert_eq!(
        settings,
        serde_json::json!({"levels": [1, 3, 9], "step": 3})
    );
    // Written back as the text users write, and read again the same.
    let yaml = serde_yaml::to_string(c).unwrap();
    assert!(
        yaml.contains("slo: ttft-p95=2000ms,decode-min=10tok/s"),
        "{yaml}"
    );
    assert_eq!(&parse_text(&yaml).unwrap().config, c);
    assert!(Config::default().ozone.slo.is_empty());
    assert_eq!(
        Config::default()
            .testing
            .concurrency_progression
            .max_concurrency,
        64
    );
}

#[test]
fn sandbox_is_checked_at_load_with_the_files_position() {
    let err = parse_text("ozone:\n  sandbox:\n    memory_mb: lots\n").unwrap_err();
    assert_eq!(err.position(), Some((3, 16)), "{err}");
    assert!(err.to_string().contains("memory_mb"), "{err}");

    let err = parse_text("ozone:\n  sandbox:\n    stack_kb: 0\n").unwrap_err();
    assert_eq!(err.position(), Some((3, 15)), "{err}");
    assert!(
        err.to_string()
            .contains("ozone.sandbox.stack_kb: must be in 1..=1024"),
        "{err}"
    );

    let loaded = parse_text("ozone:\n  sandbox:\n    fuel_per_call: 5000\n").unwrap();
    assert_eq!(loaded.config.ozone.sandbox.fuel_per_call, 5000);
    assert_eq!(
        loaded.config.ozone.sandbox.memory_mb, 64,
        "missing keys default"
    );
}

#[test]
fn a_bad_objective_is_one_line_naming_the_part_in_the_file_and_the_flag() {
    let err = parse_text("ozone:\n  slo: ttft-p95=2s,tpot-p90=50ms\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("ozone.yaml:2:"), "{msg}");
    assert!(msg.contains("unknown metric `tpot-p90`"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    let mut loaded = LoadedConfig::defaults();
    let err = loaded
        .set_override("ozone.slo", "ttft-p95=2000us", "--slo")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("--slo: "), "{err}");
    assert!(err.contains("bad unit `us`"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    loaded
        .set_override("ozone.slo", "e2e-p95=30s", "--slo")
        .unwrap();
    assert_eq!(loaded.config.ozone.slo.bounds[0].value, 30_000.0);
    assert_eq!(
        loaded.provenance("ozone.slo"),
        Provenance::Flag("--slo".into())
    );
}

#[test]
fn plugin_settings_for_no_configured_plugin_are_warned_until_a_flag_names_it() {
    let text = "\
ozone:
  plugin_settings:
    binary-search: { step: 512 }
    my-search:
      depth: 3
";
    let mut loaded = parse_text(text).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "ozone.yaml:4:5: `ozone.plugin_settings.my-search` ignored: no configured plugin is \
             named my-search (context: binary-search, batch: batch-scaler, concurrency: \
             concurrency-ladder, variant: variant-frontier)"
                .to_string()
        ]
    );
    loaded
        .set_override(
            "ozone.context_strategy",
            "plugins/my-search.wasm",
            "--context-strategy",
        )
        .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].contains("binary-search"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn deep_nesting_is_refused_at_its_line_before_parsing() {
    // 100 000 levels took minutes to parse: the time grows with the square of the depth.
    let depth = 100_000;
    let text = format!(
        "ozone:\n  sandbox: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let started = std::time::Instant::now();
    let err = parse_text(&text).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.position(), Some((2, 12 + 64)), "{err}");
    assert!(
        err.to_string().contains("nested more than 64 levels"),
        "{err}"
    );
}

#[test]
fn a_file_over_a_mebibyte_is_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    std::fs::write(&path, "#".repeat(3 << 20)).unwrap();
    let err = load_file(&path).unwrap_err();
    assert!(
        matches!(err, ConfigError::TooLarge { .. }) && err.to_string().contains("huge.yaml"),
        "{err}"
    );
}

#[test]
fn the_offload_strategy_and_its_settings_are_read_and_handed_on() {
    assert_eq!(Config::default().ozone.offload_strategy, "offload-bisect");
    let text = "\
ozone:
  offload_strategy: ./plugins/my-offload.wasm
  plugin_settings:
    my-offload:
      max_trials: 4
";
    let loaded = parse_text(text).unwrap();
    let c = &loaded.config;
    assert_eq!(c.ozone.offload_strategy, "./plugins/my-offload.wasm");
    let settings: serde_json::Value =
        serde_json::from_str(&c.offload_plugin_settings_json()).unwrap();
    assert_eq!(settings, serde_json::json!({"max_trials": 4}));
    // Its section is read: no warning that it is for no plugin of the run.
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("my-offload")),
        "{:?}",
        loaded.warnings
    );
    let empty = parse_text("ozone:\n  offload_strategy: \"\"\n").unwrap_err();
    assert!(
        empty.to_string().contains("ozone.offload_strategy"),
        "{empty}"
    );
}
