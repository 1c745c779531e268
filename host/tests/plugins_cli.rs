//! `ozone plugins list` / `ozone plugins check` as a user runs them.

use std::path::PathBuf;
use std::process::Command;

fn ozone(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ozone"))
        .args(args)
        // Keep the user's cache out of it.
        .env(
            "XDG_CACHE_HOME",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"),
        )
        .output()
        .expect("run ozone");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn guest(file: &str) -> String {
    PathBuf::from(env!("OZONE_GUEST_DIR"))
        .join(file)
        .display()
        .to_string()
}

#[test]
fn list_shows_the_builtins_with_world_and_version_and_no_test_guests() {
    let (code, out, err) = ozone(&["plugins", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("binary-search") && out.contains("context-strategy"),
        "{out}"
    );
    assert!(
        out.contains("batch-scaler") && out.contains("batch-strategy"),
        "{out}"
    );
    assert!(out.contains("0.1.0"), "{out}");
    assert!(!out.contains("misbehaving"), "{out}");
}

#[test]
fn check_drives_a_plugin_file_and_prints_its_decisions() {
    let (code, out, err) = ozone(&["plugins", "check", &guest("memory_model.wasm")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("context-strategy plugin, API 0.1.0"), "{out}");
    assert!(out.contains("trial  2: context   99840 → stable"), "{out}");
    assert!(out.contains("best context: 99840"), "{out}");
}

#[test]
fn check_reports_a_misbehaving_plugin_with_exit_code_4() {
    let (code, _, err) = ozone(&[
        "plugins",
        "check",
        &guest("misbehaving.wasm"),
        "--settings",
        r#"{"mode": "loop"}"#,
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("exceeded its per-call budget"), "{err}");
}

#[test]
fn check_refuses_a_file_that_is_no_component_with_exit_code_2() {
    let (code, _, err) = ozone(&["plugins", "check", "Cargo.toml.wasm"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read plugin Cargo.toml.wasm"), "{err}");
}
