//! Input a user gets wrong, or that is built to hurt: configurations nested to blow the
//! stack, sandbox settings out of range, models that are folders, not GGUF or cannot
//! load, output folders that cannot take files, plugin files that do not exist. Each is
//! found before anything runs, with one line saying where, and exit 2.

use std::time::Duration;

use crate::common::cli::{ozone, BAD_INPUT, OK};

// Configs built to hurt: found at load, with the file's line and column.

#[test]
fn a_deeply_nested_config_is_refused_at_once_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    let depth = 100_000;
    std::fs::write(
        &path,
        format!(
            "ozone:\n  sandbox: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    )
    .unwrap();
    let out = ozone(
        dir.path(),
        &["config", "show", "--config", path.to_str().unwrap()],
    )
    .within(Duration::from_secs(20))
    .run();
    out.code(BAD_INPUT);
    assert_eq!(
        out.errors(),
        [format!(
            "error: {}:2:76: nested more than 64 levels deep; Ozone's settings nest five",
            path.display()
        )]
    );
}

#[test]
fn sandbox_settings_are_checked_at_load_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let zero = write("zero.yaml", "ozone:\n  sandbox:\n    stack_kb: 0\n");
    let model = dir.path().join("m.gguf");
    ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
    let out = ozone(
        dir.path(),
        &["tune", model.to_str().unwrap(), "--config", &zero],
    )
    .within(Duration::from_secs(60))
    .run();
    out.code(BAD_INPUT);
    assert_eq!(
        out.errors(),
        [format!(
            "error: {zero}:3:15: ozone.sandbox.stack_kb: must be in 1..=1024 KiB (a plugin runs \
             on a host thread's stack), got 0"
        )]
    );

    let typed = write("typed.yaml", "ozone:\n  sandbox:\n    memory_mb: lots\n");
    let out = ozone(dir.path(), &["config", "show", "--config", &typed])
        .within(Duration::from_secs(20))
        .run();
    out.code(BAD_INPUT);
    let errors = out.errors();
    assert!(
        errors.len() == 1 && errors[0].starts_with(&format!("error: {typed}:3:16: ")),
        "{errors:?}"
    );

    let unknown = write(
        "unknown.yaml",
        "ozone:\n  sandbox:\n    fuel: 5\n  plugin_settings:\n    nobody: {x: 1}\n",
    );
    let out = ozone(dir.path(), &["config", "show", "--config", &unknown])
        .within(Duration::from_secs(20))
        .run();
    out.code(OK);
    assert!(
        out.stderr.contains(&format!(
            "{unknown}:3:11: unknown key `ozone.sandbox.fuel` ignored"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "{unknown}:5:13: `ozone.plugin_settings.nobody` ignored"
        )),
        "{}",
        out.stderr
    );
}

// Smaller ones: each one line and exit 2.

#[test]
fn bad_models_and_output_dirs_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let folder = cwd.join("models");
    std::fs::create_dir(&folder).unwrap();
    let out = ozone(cwd, &["tune", folder.to_str().unwrap()])
        .within(Duration::from_secs(30))
        .run();
    out.code(BAD_INPUT);
    assert_eq!(
        out.errors(),
        [format!(
            "error: model {} is a directory: give the .gguf file in it (or, for an Ollama \
             model of that name, --backend ollama)",
            folder.display()
        )]
    );

    let model = cwd.join("m.gguf");
    ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
    let blocker = cwd.join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let out_dir = blocker.join("results");
    let out = ozone(
        cwd,
        &[
            "tune",
            model.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
    )
    .within(Duration::from_secs(30))
    .run();
    out.code(BAD_INPUT);
    let errors = out.errors();
    assert!(
        errors.len() == 1
            && errors[0].starts_with(&format!("error: --output-dir {}: ", out_dir.display())),
        "{errors:?}"
    );

    // No architecture key: llama-server could not load it; refused before any trial.
    let bytes = std::fs::read(&model).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + key.len()].copy_from_slice(b"general.architectur_");
    let no_arch = cwd.join("no-arch.gguf");
    std::fs::write(&no_arch, renamed).unwrap();
    let out = ozone(cwd, &["tune", no_arch.to_str().unwrap()])
        .within(Duration::from_secs(30))
        .run();
    out.code(BAD_INPUT);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert_eq!(
        errors[0].matches(no_arch.to_str().unwrap()).count(),
        1,
        "the path once: {}",
        errors[0]
    );
    assert!(
        errors[0].contains("no general.architecture"),
        "{}",
        errors[0]
    );
    assert!(!out.stderr.contains("caused by"), "{}", out.stderr);
    assert!(!cwd.join("ozone_results/logs").exists(), "no trial ran");
}

#[test]
fn a_plugin_file_missing_names_where_it_was_set() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
    let config = dir.path().join("ozone.yaml");
    std::fs::write(&config, "ozone:\n  context_strategy: ./gone.wasm\n").unwrap();
    let out = ozone(
        dir.path(),
        &[
            "tune",
            model.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .within(Duration::from_secs(30))
    .run();
    out.code(BAD_INPUT);
    assert_eq!(
        out.errors(),
        [format!(
            "error: {}: ozone.context_strategy: plugin file ./gone.wasm does not exist",
            config.display()
        )]
    );
}
