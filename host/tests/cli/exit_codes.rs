//! The same plugin mistake exits with the same code in `ozone tune`, `ozone plugins
//! check` and `ozone lab run` (one mapping, `cli/exit.rs`). No server runs: each mistake
//! stops the command before the first trial.

use crate::common::cli::{ozone, Outcome, BAD_INPUT};
use std::path::{Path, PathBuf};

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};

struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny.gguf");
    write_tiny_model(&model, &TinyModelSpec::default()).expect("write the model");
    Setup { dir, model }
}

/// `ozone tune MODEL --context-strategy STRATEGY` with `config` as its configuration.
fn tune(s: &Setup, strategy: &str, config: &str) -> Outcome {
    let yaml = s.dir.path().join("ozone.yaml");
    std::fs::write(&yaml, config).expect("write the config");
    let model = s.model.display().to_string();
    let yaml = yaml.display().to_string();
    ozone(
        s.dir.path(),
        &[
            "tune",
            &model,
            "--config",
            &yaml,
            "--context-strategy",
            strategy,
            "-o",
            "out",
        ],
    )
    .run()
}

/// `ozone lab run --strategy STRATEGY` on a shipped profile, with `plugin_settings`
/// (JSON) as the recorded run's `ozone.plugin_settings`.
fn lab(s: &Setup, strategy: &str, plugin_settings: &str) -> Outcome {
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/profiles/demo-16k-34.profile.json");
    let mut profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped).expect("shipped profile"))
            .expect("profile JSON");
    profile["config"]["ozone"]["plugin_settings"] =
        serde_json::from_str(plugin_settings).expect("settings JSON");
    let file = s.dir.path().join("edited.profile.json");
    std::fs::write(&file, profile.to_string()).expect("write the profile");
    let file = file.display().to_string();
    ozone(
        s.dir.path(),
        &["lab", "run", "--strategy", strategy, "--profile", &file],
    )
    .run()
}

fn plugins_check(s: &Setup, plugin: &str, settings: &str) -> Outcome {
    ozone(
        s.dir.path(),
        &["plugins", "check", plugin, "--settings", settings],
    )
    .run()
}

#[test]
fn an_unknown_built_in_is_bad_input_everywhere() {
    let s = setup();
    for (command, out) in [
        ("tune", tune(&s, "no-such-strategy", "{}")),
        ("plugins check", plugins_check(&s, "no-such-strategy", "{}")),
        ("lab run", lab(&s, "no-such-strategy", "{}")),
    ] {
        eprintln!("{command}");
        out.code(BAD_INPUT).says("no-such-strategy");
    }
}

#[test]
fn a_file_that_is_no_component_is_bad_input_everywhere() {
    let s = setup();
    let fake = s.dir.path().join("fake.wasm");
    std::fs::write(&fake, b"this is not a component").expect("write the file");
    let fake = fake.display().to_string();
    for (command, out) in [
        ("tune", tune(&s, &fake, "{}")),
        ("plugins check", plugins_check(&s, &fake, "{}")),
        ("lab run", lab(&s, &fake, "{}")),
    ] {
        eprintln!("{command}");
        out.code(BAD_INPUT);
    }
}

/// A batch plugin asked for as the context strategy (`plugins check` drives a plugin in
/// whichever world it is, so the mistake cannot be made there).
#[test]
fn a_plugin_of_the_wrong_world_is_bad_input_in_tune_and_lab() {
    let s = setup();
    for (command, out) in [
        ("tune", tune(&s, "batch-scaler", "{}")),
        ("lab run", lab(&s, "batch-scaler", "{}")),
    ] {
        eprintln!("{command}");
        out.code(BAD_INPUT).says("batch-scaler");
    }
}

/// Settings the plugin's constructor refuses: the user's configuration is at fault.
#[test]
fn settings_a_plugin_rejects_are_bad_input_everywhere() {
    let s = setup();
    let tune_config =
        "ozone:\n  plugin_settings:\n    binary-search:\n      max_binary_iterations: many\n";
    let settings = r#"{"max_binary_iterations": "many"}"#;
    for (command, out) in [
        ("tune", tune(&s, "binary-search", tune_config)),
        (
            "plugins check",
            plugins_check(&s, "binary-search", settings),
        ),
        (
            "lab run",
            lab(
                &s,
                "binary-search",
                &format!(r#"{{"binary-search": {settings}}}"#),
            ),
        ),
    ] {
        eprintln!("{command}");
        out.code(BAD_INPUT).says("binary-search");
    }
}
