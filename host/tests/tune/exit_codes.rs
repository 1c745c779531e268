//! Every documented exit code of `ozone tune` (`ozone --help`) from the real command,
//! at its cheapest, named by what failed: 0, 1, 2, 3 and 4 here; 130 and 143 (Ctrl-C,
//! SIGTERM) in `stops`, which also times them. Each has its subject's own tests besides:
//! 3 in `cannot_start`, 1 for the output files in `outputs`, 2 in `cli::inputs`, the
//! plugin codes in `cli::exit_codes` and `concurrency`.

use std::path::Path;

use crate::common::cli::{ozone, Ozone, BAD_INPUT, INTERNAL, NO_SERVER, OK, PLUGIN};
use crate::common::{self, log_events, the_log};
use crate::{one_trial_config, small_model};

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

/// A full disk while the trials are logged: not a plugin's fault (it once exited 4), not
/// the user's. The file-size limit stops the log after its start line, as a disk that
/// fills up mid-run does: the first finished trial cannot be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_the_trial_log_cannot_be_written() {
    let _serial = common::serial().await;
    // How much a run writes before its first trial: its start and fit-baseline lines.
    let first = tempfile::tempdir().unwrap();
    one_trial(first.path(), &[]).run().code(OK);
    let log = the_log(first.path()).expect("the first run's log");
    let text = std::fs::read_to_string(&log).unwrap();
    let head: usize = text.lines().take(2).map(|l| l.len() + 1).sum();

    let dir = tempfile::tempdir().unwrap();
    let mut full = one_trial(dir.path(), &[]);
    limit_file_size(&mut full, head as u64 + 300);
    let out = full.run();
    out.code(INTERNAL).error("cannot write the trial log");
    let log = the_log(dir.path()).expect("the log");
    assert!(out.stderr.contains("ozone tune --resume"), "{}", out.stderr);
    let events = log_events_up_to_torn(&log);
    assert_eq!(
        events[0]["event"], "run_started",
        "the start line was written"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "trial"),
        "no trial line fits"
    );
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

/// Every file `ozone` writes is limited to `bytes` (`EFBIG` past it, as a full disk
/// stops a write half-way).
fn limit_file_size(ozone: &mut Ozone, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        ozone.command().pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// The log's whole lines: a write cut short leaves its last line torn.
fn log_events_up_to_torn(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let cut = log.with_extension("whole.jsonl");
    std::fs::write(&cut, whole).unwrap();
    log_events(&cut)
}
