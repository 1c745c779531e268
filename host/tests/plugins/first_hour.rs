//! The first hour of a plugin author, run as they would run it, in a fresh temporary
//! folder: `ozone plugins new` (each kind) → `cargo test` → `cargo build --target
//! wasm32-wasip2 --release` → `ozone plugins check` → `ozone lab run`; the SDK README's
//! crate pasted together as written; and every command in every example's README.
//!
//! Cost: these builds share one target folder, `target/plugin-crates` (each new crate
//! gets the workspace's Cargo.lock, so the same dependency versions compile once). On a
//! fresh CI machine the first wasm build compiles wit-bindgen and serde (about 90 s on two
//! cores); each crate after that takes seconds. Building offline: every dependency is
//! one the workspace already fetched.

use crate::common::{self, cli::ozone};
use crate::quiet_machine_yaml;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The target folder the plugin crates of these tests share (not the workspace's own:
/// the outer `cargo test` holds its lock).
fn shared_target() -> PathBuf {
    workspace().join("target/plugin-crates")
}

fn cargo(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        // The outer build's flags are for the host target.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_new_plugin_of_each_kind_builds_out_of_tree_checks_and_runs_in_the_lab() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, kind) in [
        ("first-search", "context"),
        ("first-scaler", "batch"),
        ("first-streams", "concurrency"),
    ] {
        let out = ozone(dir.path(), &["plugins", "new", name, "--kind", kind])
            .run()
            .ok()
            .to_string();
        let crate_dir = dir.path().join(name);
        let wasm_name = format!("{}.wasm", name.replace('-', "_"));
        assert!(
            out.contains("cargo build --target wasm32-wasip2 --release")
                && out.contains(&wasm_name),
            "{out}"
        );
        // The same dependency versions as the workspace: compiled once for all crates.
        std::fs::copy(workspace().join("Cargo.lock"), crate_dir.join("Cargo.lock"))
            .expect("copy Cargo.lock");
        ok(
            cargo(&["test", "--offline"], &crate_dir)
                .output()
                .expect("cargo test"),
            &format!("{name}: cargo test"),
        );
        ok(
            cargo(
                &[
                    "build",
                    "--offline",
                    "--target",
                    "wasm32-wasip2",
                    "--release",
                ],
                &crate_dir,
            )
            .output()
            .expect("cargo build"),
            &format!("{name}: cargo build"),
        );
        let wasm = shared_target()
            .join("wasm32-wasip2/release")
            .join(&wasm_name);
        let wasm = wasm.to_str().expect("utf-8 path");
        let check = ozone(dir.path(), &["plugins", "check", wasm])
            .run()
            .ok()
            .to_string();
        assert!(
            check.contains(&format!("{kind}-strategy plugin")),
            "{check}"
        );
        let profiles = workspace().join("examples/profiles");
        let profiles = profiles.to_str().expect("utf-8 path");
        let lab = match kind {
            "context" => Some(vec!["--strategy", "binary-search", "--strategy", wasm]),
            "batch" => Some(vec![
                "--strategy",
                "binary-search",
                "--batch-strategy",
                wasm,
            ]),
            _ => None,
        };
        if let Some(mut args) = lab {
            let mut full = vec!["lab", "run", "--json", "--profile", profiles];
            full.append(&mut args);
            let out = ozone(dir.path(), &full).run().ok().to_string();
            let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            let rows = json["rows"].as_array().expect("rows");
            assert!(rows.iter().all(|r| r["error"].is_null()), "{rows:?}");
        }
    }
}

#[test]
fn the_sdk_readme_crate_pasted_as_written_passes_its_test() {
    let readme = std::fs::read_to_string(workspace().join("sdk/README.md")).expect("README");
    let block = |lang: &str| -> String {
        let start = readme
            .find(&format!("```{lang}\n[package]"))
            .or_else(|| readme.find(&format!("```{lang}\nuse ozone_sdk")))
            .unwrap_or_else(|| panic!("the README's ```{lang} crate block"));
        let body = &readme[start + lang.len() + 4..];
        body[..body.find("```").expect("block end")].to_string()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sdk = workspace().join("sdk");
    let manifest = block("toml").replace(
        "path = \"../ozone/sdk\"",
        &format!("path = {:?}", sdk.display().to_string()),
    );
    assert!(manifest.contains(&sdk.display().to_string()), "{manifest}");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!("{manifest}\n[workspace]\n"),
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("src")).expect("src");
    std::fs::write(dir.path().join("src/lib.rs"), block("rust")).expect("write");
    std::fs::copy(
        workspace().join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .expect("lock");
    let out = ok(
        cargo(&["test", "--offline"], dir.path())
            .output()
            .expect("cargo test"),
        "the README's crate: cargo test",
    );
    assert!(out.contains("halves_until_stable ... ok"), "{out}");
}

/// A README's commands: indented lines starting with `cargo ` or `ozone `, joined over
/// trailing backslashes.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        let Some(code) = line.strip_prefix("    ") else {
            continue;
        };
        let code = code.trim();
        let text = match current.take() {
            Some(mut c) => {
                c.push(' ');
                c.push_str(code.trim_end_matches('\\').trim());
                c
            }
            None if code.starts_with("cargo ") || code.starts_with("ozone ") => {
                code.trim_end_matches('\\').trim().to_string()
            }
            None => continue,
        };
        if code.ends_with('\\') {
            current = Some(text);
        } else {
            commands.push(text);
        }
    }
    commands
}

#[test]
fn every_example_passes_the_commands_of_its_readme() {
    let examples = workspace().join("examples");
    let mut readmes: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path().join("README.md")))
        .filter(|p| p.is_file() && !p.starts_with(examples.join("profiles")))
        .collect();
    readmes.sort();
    assert!(readmes.len() >= 3, "{readmes:?}");
    let scratch = tempfile::tempdir().expect("tempdir");
    let model = scratch.path().join("demo.gguf");
    ozone::backend::gguf::write_tiny_model(
        &model,
        &ozone::backend::gguf::TinyModelSpec {
            trained_context: 4096,
            ..Default::default()
        },
    )
    .expect("demo model");
    // The tunes judge memory and the plugin, not the neighbours: throughput variation
    // and machine-wide RAM/CPU readings on a shared CI machine are set aside, as in the
    // other real-server tests.
    let config = scratch.path().join("ozone.yaml");
    std::fs::write(
        &config,
        concat!(
            "testing:\n  statistical_validation:\n    variance_tolerance: 10.0\n",
            quiet_machine_yaml!()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let target = shared_target();
    let mut ran = 0;
    for readme in &readmes {
        let text = std::fs::read_to_string(readme).expect("README");
        let commands = readme_commands(&text);
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("ozone plugins check")),
            "{} shows no `ozone plugins check`",
            readme.display()
        );
        for command in commands {
            // The README's paths are the workspace's `target/`; the build goes to the
            // shared folder; MODEL is the demo model, tuned briefly in a scratch folder.
            let command = command.replace(
                "target/wasm32-wasip2/",
                &format!("{}/wasm32-wasip2/", target.display()),
            );
            let words: Vec<String> = command
                .split_whitespace()
                .map(|w| w.replace("MODEL", &model.display().to_string()))
                .collect();
            let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
            eprintln!("{}: `{command}`", readme.display());
            if words[0] == "cargo" {
                let mut args = args.clone();
                args.push("--offline");
                let output = cargo(&args, &workspace()).output().expect("run cargo");
                ok(output, &format!("{}: `{command}`", readme.display()));
            } else if args.first() == Some(&"tune") {
                let out = scratch.path().join(format!("tune-{ran}"));
                let mut args = args.clone();
                let out = out.display().to_string();
                args.extend([
                    "--skip-concurrency",
                    "--samples",
                    "2",
                    "--fresh",
                    "--config",
                    &config,
                    "-o",
                    &out,
                ]);
                ozone(scratch.path(), &args)
                    .env("LLAMA_SERVER", common::llama_server())
                    .run()
                    .ok();
            } else {
                ozone(scratch.path(), &args).cwd(&workspace()).run().ok();
            }
            ran += 1;
        }
    }
    assert!(ran >= 9, "ran {ran} commands");
}
