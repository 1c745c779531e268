//! Every documented exit code of `ozone tune` (`ozone --help`) from the real command,
//! at its cheapest, named by what failed: 0, 1, 2, 3 and 4 here; 130 and 143 (Ctrl-C,
//! SIGTERM) in `stops`, which also times them. Each has its subject's own tests besides:
//! 3 in `cannot_start`, 1 for the output files in `outputs`, 2 in `cli::inputs`, the
//! plugin codes in `cli::exit_codes` and `concurrency`.

use std::path::Path;

use crate::common::cli::{ozone, Ozone, BAD_INPUT, INTERNAL, NO_SERVER, OK, PLUGIN, RUN_ENDS};
use crate::common::{self, log_events, the_log};
use crate::{one_trial_config, small_model, FullDisk};

/// `ozone tune` of a small model in `dir`: one real trial, no batch or concurrency phase.
fn one_trial(dir: &Path, extra: &[&str]) -> Ozone {
    let model = dir.join("m.gguf");
    small_model(&model);
    let config = one_trial_config(dir);
    let mut args = vec!["tune", model.to_str().unwrap(), "--config", &config];
    args.extend_from_slice(extra);
    ozone(dir, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_a_tune_that_measured_to_the_end() {
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    one_trial(dir.path(), &[]).run().code(OK);
}

/// A disk that fills up while the trials are logged: not a plugin's fault (it once
/// exited 4), not the user's. The trials' servers wait (a wrapper script) until the
/// disk is full, so the first finished trial is what cannot be written. Needs a tmpfs
/// (root, as CI runs): a file-size limit cannot stand in, the plugins' memory needs room
/// to grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_the_trial_log_cannot_be_written() {
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = FullDisk::mount(&dir.path().join("ozone_results"));
    if !disk.mounted() {
        eprintln!("SKIPPED: no tmpfs can be mounted here (not root)");
        return;
    }
    let full = dir.path().join("disk-is-full");
    let server = dir.path().join("llama-server-when-full");
    std::fs::write(
        &server,
        format!(
            "#!/bin/sh\n# The fit baseline (-fit on) runs at once; a trial waits for the full disk.\n\
             case \"$*\" in *'-fit on'*) ;; *) while [ ! -e '{}' ]; do sleep 0.1; done ;; esac\n\
             exec '{}' \"$@\"\n",
            full.display(),
            common::llama_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&server, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = one_trial(dir.path(), &["--llama-server", server.to_str().unwrap()]).start();
    common::wait_until("the fit baseline logged", RUN_ENDS, || {
        the_log(dir.path()).is_some_and(|log| {
            std::fs::read_to_string(log).is_ok_and(|t| t.contains("\"event\":\"fit_baseline\""))
        })
    });
    disk.fill(&mut std::process::Command::new("true"));
    disk.take_the_slack_of(&the_log(dir.path()).expect("the log"));
    std::fs::write(&full, "").unwrap();
    let out = run.finish();
    disk.empty();
    out.code(INTERNAL).error("cannot write the trial log");
    out.says("ozone tune --resume");
    let log = the_log(dir.path()).expect("the log");
    let events = log_events_up_to_torn(&log);
    assert_eq!(events[0]["event"], "run_started");
    assert!(
        !events.iter().any(|e| e["event"] == "trial"),
        "no trial line was written"
    );
    common::assert_no_servers_left_for(&dir.path().join("m.gguf"));
}

#[test]
fn two_a_model_file_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    ozone(dir.path(), &["tune", "no-such-model.gguf"])
        .run()
        .code(BAD_INPUT)
        .error("model file no-such-model.gguf does not exist");
}

#[test]
fn three_no_llama_server() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    small_model(&model);
    ozone(
        dir.path(),
        &[
            "tune",
            model.to_str().unwrap(),
            "--llama-server",
            "/no/such/llama-server",
        ],
    )
    .run()
    .code(NO_SERVER)
    .error("/no/such/llama-server");
}

/// A context plugin that traps on its first proposal: it broke its sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_a_plugin_that_traps() {
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("trap.yaml");
    std::fs::write(
        &settings,
        format!(
            "{}  plugin_settings:\n    misbehaving: {{mode: panic, value: 0}}\n",
            common::QUICK_CONFIG
        ),
    )
    .unwrap();
    let model = dir.path().join("m.gguf");
    small_model(&model);
    ozone(
        dir.path(),
        &[
            "tune",
            model.to_str().unwrap(),
            "--config",
            settings.to_str().unwrap(),
            "--context-strategy",
            ozone_test_artifacts::MISBEHAVING,
        ],
    )
    .run()
    .code(PLUGIN)
    .error("trapped in propose");
}

/// The log's whole lines: a write cut short leaves its last line torn.
fn log_events_up_to_torn(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let cut = log.with_extension("whole.jsonl");
    std::fs::write(&cut, whole).unwrap();
    log_events(&cut)
}
